"""Migrations against the real PostgreSQL: they apply to an empty database and are idempotent."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from ecowatt_kernel.db import Database, async_url
from sqlalchemy import text

pytestmark = pytest.mark.integration


def write_migrations(folder: Path, schema: str) -> Path:
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(
        textwrap.dedent(f"""
        from sqlalchemy import MetaData
        from ecowatt_kernel.db import run_migrations
        run_migrations(MetaData(schema="{schema}"))
    """)
    )
    (folder / "versions" / "0001_widgets.py").write_text(
        textwrap.dedent(f"""
        import sqlalchemy as sa
        from alembic import op
        revision = "0001"
        down_revision = None
        def upgrade():
            op.create_table("widgets", sa.Column("id", sa.Integer, primary_key=True),
                            schema="{schema}")
            op.execute("INSERT INTO {schema}.widgets (id) VALUES (1)")
    """)
    )
    return folder


async def test_migrations_apply_once_and_are_idempotent(
    empty_database: str, tmp_path: Path
) -> None:
    schema = "widgets_svc"
    migrations = write_migrations(tmp_path / "migrations", schema)
    database = Database(empty_database, schema=schema)
    try:
        await database.migrate(migrations)
        await database.migrate(migrations)  # second start-up: nothing to do, nothing twice
        async with database.session() as session:
            rows = (await session.execute(text("SELECT count(*) FROM widgets"))).scalar_one()
            version = (
                await session.execute(text(f"SELECT version_num FROM {schema}.alembic_version"))
            ).scalar_one()
        assert rows == 1
        assert version == "0001"
    finally:
        await database.dispose()


def test_schema_names_are_validated() -> None:
    with pytest.raises(ValueError, match="invalid schema"):
        Database("postgresql://x@localhost/db", schema='x"; DROP TABLE y; --')


def test_only_postgresql_urls_are_accepted() -> None:
    assert async_url("postgresql://u@h/d") == "postgresql+asyncpg://u@h/d"
    with pytest.raises(ValueError):
        async_url("mysql://u@h/d")
