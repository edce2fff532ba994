"""Apply services' migrations without serving: `python -m ecowatt_kernel.migrate SPEC…`.

    python -m ecowatt_kernel.migrate ecowatt_registry.service:SERVICE ecowatt_alarm.service:SERVICE

Each SPEC names a `ServiceSpec` by import path; its schema's migrations are applied exactly as
at the service's start-up (same advisory lock, same version table), with the database of
`ECOWATT_DATABASE_URL`. The Helm chart's setup Job runs it before an upgrade rolls the pods,
so new replicas find their schema ready; services still migrate at start-up (nothing to do
then), so a deployment without the Job works too. The kernel imports no service: the specs
are named on the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib

from ecowatt_kernel.app import ServiceSpec
from ecowatt_kernel.db import Database
from ecowatt_kernel.settings import KernelSettings

__all__ = ["load_spec", "migrate"]


def load_spec(path: str) -> ServiceSpec:
    """The `ServiceSpec` at `module:attribute`."""
    module_name, _, attribute = path.partition(":")
    spec = getattr(importlib.import_module(module_name), attribute or "SERVICE")
    if not isinstance(spec, ServiceSpec):
        raise TypeError(f"{path} is not a ServiceSpec")
    return spec


async def migrate(specs: list[ServiceSpec], *, database_url: str) -> list[str]:
    """Apply each spec's migrations in order; return the schemas migrated."""
    done = []
    for spec in specs:
        if spec.schema is None or spec.migrations is None:
            continue
        db = Database(database_url, schema=spec.schema, pool_size=1, application_name="migrate")
        try:
            await db.migrate(spec.migrations)
        finally:
            await db.dispose()
        done.append(spec.schema)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("specs", nargs="+", metavar="MODULE:ATTRIBUTE")
    args = parser.parse_args()
    settings = KernelSettings()
    specs = [load_spec(path) for path in args.specs]
    schemas = asyncio.run(migrate(specs, database_url=settings.database_url.get_secret_value()))
    print(f"migrated: {', '.join(schemas)}")


if __name__ == "__main__":
    main()
