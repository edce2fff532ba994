"""Generate the synthetic city: `python -m ecowatt_registry.synthetic --enterprises N --seed S`.

Writes into the registry database of `ECOWATT_DATABASE_URL` (migrating it first). The
snapshots go to the outbox; the running registry's relay publishes them, or `--publish`
publishes them here on the configured Kafka bus.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from ecowatt_kernel.settings import settings_or_exit

from ecowatt_registry.cli import database, drain_outbox
from ecowatt_registry.settings import RegistrySettings
from ecowatt_registry.synthetic.generator import CityOptions
from ecowatt_registry.synthetic.service import archive_is_empty, recorded_city, seed_city


async def run(options: CityOptions, *, publish: bool, force: bool) -> dict[str, object]:
    settings = settings_or_exit(RegistrySettings)
    async with database(settings) as db:
        started = time.perf_counter()
        async with db.transaction() as session:
            recorded = await recorded_city(session)
            same = recorded is not None and recorded.get("seed") == options.seed
            if not (force or same or await archive_is_empty(session)):
                raise SystemExit("the archive is not empty (use --force to add the city anyway)")
            summary = await seed_city(session, options)
        summary["seconds"] = round(time.perf_counter() - started, 1)
        if publish:
            summary["published"] = await drain_outbox(settings, db)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--enterprises", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20241)
    parser.add_argument("--defect-share", type=float, default=0.05)
    parser.add_argument("--publish", action="store_true", help="publish the outbox on Kafka here")
    parser.add_argument("--force", action="store_true", help="add to a non-empty archive")
    args = parser.parse_args()
    options = CityOptions(
        enterprises=args.enterprises, seed=args.seed, defect_share=args.defect_share
    )
    summary = asyncio.run(run(options, publish=args.publish, force=args.force))
    print(json.dumps(summary, ensure_ascii=False, indent=2, default=str))


if __name__ == "__main__":
    main()
