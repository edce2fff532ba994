"""PostgreSQL access: one async engine per service, one schema per service, Alembic at start-up.

Every service keeps its tables in its own schema (`registry`, `validation`, …) and owns its
migrations (an Alembic script folder in the service package whose `env.py` calls
`run_migrations`). `Database.migrate` applies them at start-up under an advisory lock, so
replicas starting together do not race; applying them again is a no-op.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

__all__ = ["Database", "async_url", "run_migrations", "scratch_database"]

_SCHEMA_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def async_url(url: str) -> str:
    """Turn any `postgresql://` URL into the asyncpg dialect SQLAlchemy needs."""
    for prefix in (
        "postgresql+asyncpg://",
        "postgresql://",
        "postgres://",
        "postgresql+psycopg://",
    ):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


@asynccontextmanager
async def scratch_database(server_url: str, *, prefix: str = "ecowatt_test") -> AsyncIterator[str]:
    """A brand-new database on the server of `server_url` (its URL), dropped on exit.

    For tests and benchmarks that need a database of their own on a shared server.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(async_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield f"{server_url.rpartition('/')[0]}/{name}"
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


class Database:
    """An engine and session factory bound to one service's schema."""

    def __init__(
        self, url: str, *, schema: str, pool_size: int = 10, application_name: str = "ecowatt"
    ) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"invalid schema name {schema!r}")
        self.schema = schema
        self.engine: AsyncEngine = create_async_engine(
            async_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            pool_recycle=1800,
            connect_args={
                "server_settings": {
                    "search_path": f"{schema},public",
                    "application_name": application_name[:63],
                    "timezone": "UTC",
                }
            },
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; the caller commits."""
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction, committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def ping(self) -> bool:
        """True when the database answers."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def migrate(self, script_location: Path) -> None:
        """Create the schema if needed and apply every migration in `script_location`."""
        lock_key = int.from_bytes(
            hashlib.sha256(self.schema.encode()).digest()[:8], "big", signed=True
        )
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": lock_key})
            try:
                await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                await connection.commit()
                await connection.run_sync(_upgrade, script_location, self.schema)
                await connection.commit()
            finally:
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key})
                await connection.commit()

    async def dispose(self) -> None:
        await self.engine.dispose()


def _upgrade(connection: Connection, script_location: Path, schema: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    command.upgrade(config, "head")


def run_migrations(target_metadata: MetaData) -> None:
    """Body of every service's Alembic `env.py` (online mode, connection from `migrate`)."""
    from alembic import context

    connection = context.config.attributes["connection"]
    schema = context.config.attributes["schema"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=schema,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
