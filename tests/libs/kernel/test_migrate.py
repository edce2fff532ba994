"""`python -m ecowatt_kernel.migrate`: services' schemas migrated without serving (the chart's
setup Job), on the real PostgreSQL; a second run finds nothing to do."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from ecowatt_kernel.app import ServiceSpec
from ecowatt_kernel.db import async_url
from ecowatt_kernel.migrate import load_spec, migrate
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.integration


async def schemas_with_versions(url: str) -> dict[str, str]:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as connection:
            found = {}
            for schema in ("ops", "reporting"):
                exists = await connection.scalar(
                    text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"{schema}.alembic_version"}
                )
                if exists:
                    found[schema] = await connection.scalar(
                        text(f"SELECT version_num FROM {schema}.alembic_version")
                    )
            return found
    finally:
        await engine.dispose()


def head(spec: ServiceSpec) -> str:
    """The newest revision in the service's migration folder (what a migrated schema holds)."""
    config = Config()
    config.set_main_option("script_location", str(spec.migrations))
    revision = ScriptDirectory.from_config(config).get_current_head()
    assert revision is not None
    return revision


async def test_specs_are_migrated_and_a_second_run_changes_nothing(empty_database: str) -> None:
    specs = [load_spec("ecowatt_ops.service:SERVICE"), load_spec("ecowatt_reporting.service")]
    heads = {spec.name: head(spec) for spec in specs}
    assert await migrate(specs, database_url=empty_database) == ["ops", "reporting"]
    assert await schemas_with_versions(empty_database) == heads
    assert await migrate(specs, database_url=empty_database) == ["ops", "reporting"]
    assert await schemas_with_versions(empty_database) == heads


def test_the_command_line_names_what_it_migrated(empty_database: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ecowatt_kernel.migrate", "ecowatt_ops.service:SERVICE"],
        env={**os.environ, "ECOWATT_ENVIRONMENT": "test", "ECOWATT_DATABASE_URL": empty_database},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "migrated: ops"


def test_a_path_that_is_not_a_spec_is_refused() -> None:
    with pytest.raises(TypeError, match="not a ServiceSpec"):
        load_spec("ecowatt_ops.settings:OpsSettings")
