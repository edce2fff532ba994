"""Run the validation service on its own: `python -m ecowatt_validation` (distributed mode).

`python -m ecowatt_validation run-day 2026-11-25` re-runs the day-close rules for a past day
against the configured database and bus (the findings it changes are published on
`quality.findings` before it exits), then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import date

from ecowatt_kernel.app import Infrastructure, ServiceContext, serve
from ecowatt_kernel.db import Database
from ecowatt_kernel.settings import settings_or_exit

from ecowatt_validation.service import SERVICE, build_runtime
from ecowatt_validation.settings import ValidationSettings


async def run_day(day: date) -> dict[str, object]:
    settings = settings_or_exit(ValidationSettings)
    infrastructure = Infrastructure.from_settings(settings)
    database = Database(
        infrastructure.database_url, schema="validation", application_name="ecowatt-validation-cli"
    )
    context = ServiceContext(
        name="validation", settings=settings, infrastructure=infrastructure, db=database
    )
    await infrastructure.bus.start()
    try:
        assert SERVICE.migrations is not None
        await database.migrate(SERVICE.migrations)
        runtime = build_runtime(context, settings)
        await runtime.view.attach(infrastructure.bus, group_prefix="validation-cli")
        stats = await runtime.run_day(day, "cli")
        await runtime.relay.drain()
        if runtime.view.subscription is not None:
            await runtime.view.subscription.stop()
        return stats
    finally:
        await infrastructure.bus.stop()
        await infrastructure.close()
        await database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="ecowatt-validation")
    commands = parser.add_subparsers(dest="command")
    rerun = commands.add_parser("run-day", help="re-run the day-close rules for a past day")
    rerun.add_argument("day", type=date.fromisoformat, help="YYYY-MM-DD (local day)")
    args = parser.parse_args()
    if args.command == "run-day":
        print(json.dumps(asyncio.run(run_day(args.day)), ensure_ascii=False, default=str))
        return
    serve(SERVICE)


if __name__ == "__main__":
    main()
