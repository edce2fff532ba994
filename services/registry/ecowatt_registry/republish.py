"""Re-publish every archive snapshot: `python -m ecowatt_registry.republish [--publish]`.

Writes every entity's current snapshot to the outbox (in order with concurrent changes); the
running registry's relay publishes them, or `--publish` publishes them here on Kafka. Use it
to rebuild a consumer from scratch. Admins can do the same with `POST /admin/republish`.
"""

from __future__ import annotations

import argparse
import asyncio

from ecowatt_kernel.settings import settings_or_exit

from ecowatt_registry.archive import republish_all
from ecowatt_registry.cli import database, drain_outbox
from ecowatt_registry.settings import RegistrySettings


async def run(*, publish: bool) -> tuple[int, int | None]:
    settings = settings_or_exit(RegistrySettings)
    async with database(settings) as db:
        async with db.transaction() as session:
            count = await republish_all(session, actor="system:republish-cli")
        published = await drain_outbox(settings, db) if publish else None
    return count, published


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--publish", action="store_true", help="publish the outbox on Kafka here")
    args = parser.parse_args()
    count, published = asyncio.run(run(publish=args.publish))
    print(
        f"{count} snapshots written to the outbox"
        + (f"; {published} published" if published is not None else "")
    )


if __name__ == "__main__":
    main()
