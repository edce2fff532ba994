"""Bus administration.

python -m ecowatt_kernel.bus.admin ensure-topics --bootstrap HOST:PORT   # Kafka topics
python -m ecowatt_kernel.bus.admin log FOLDER [--topic T]   # what a DiskBus journal holds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from ecowatt_kernel.bus.kafka import KafkaBus, KafkaConnection
from ecowatt_kernel.bus.segment import describe
from ecowatt_kernel.contracts.topics import TOPICS


async def ensure_topics(*, bootstrap: str, replication_factor: int) -> None:
    """Create every registered topic and its DLQ that the broker does not have yet."""
    bus = KafkaBus(
        KafkaConnection(bootstrap_servers=bootstrap, client_id="ecowatt-admin"),
        replication_factor=replication_factor,
    )
    await bus.ensure_topics(TOPICS.values())


def main() -> None:
    parser = argparse.ArgumentParser(description="EcoWatt bus administration")
    commands = parser.add_subparsers(dest="command", required=True)
    topics = commands.add_parser("ensure-topics", help="create the registered Kafka topics")
    topics.add_argument("--bootstrap", required=True)
    topics.add_argument("--replication-factor", type=int, default=1)
    log = commands.add_parser("log", help="summary of a DiskBus journal folder (JSON lines)")
    log.add_argument("folder", type=Path)
    log.add_argument("--topic", help="also print this topic's records, one JSON line each")
    args = parser.parse_args()
    if args.command == "log":
        for line in describe(args.folder, topic=args.topic):
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        return
    asyncio.run(ensure_topics(bootstrap=args.bootstrap, replication_factor=args.replication_factor))
    print(f"topics ensured on {args.bootstrap}: {len(TOPICS)} topics and their DLQs")


if __name__ == "__main__":
    main()
