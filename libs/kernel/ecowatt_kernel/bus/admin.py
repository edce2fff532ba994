"""Create EcoWatt's topics on a broker: `python -m ecowatt_kernel.bus.admin ensure-topics`."""

from __future__ import annotations

import argparse
import asyncio

from ecowatt_kernel.bus.kafka import KafkaBus, KafkaConnection
from ecowatt_kernel.contracts.topics import TOPICS


async def ensure_topics(*, bootstrap: str, replication_factor: int) -> None:
    """Create every registered topic and its DLQ that the broker does not have yet."""
    bus = KafkaBus(
        KafkaConnection(bootstrap_servers=bootstrap, client_id="ecowatt-admin"),
        replication_factor=replication_factor,
    )
    await bus.ensure_topics(TOPICS.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["ensure-topics"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--replication-factor", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(ensure_topics(bootstrap=args.bootstrap, replication_factor=args.replication_factor))
    print(f"topics ensured on {args.bootstrap}: {len(TOPICS)} topics and their DLQs")


if __name__ == "__main__":
    main()
