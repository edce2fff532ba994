"""Alembic environment of the auth service; the kernel runs it at start-up."""

from ecowatt_auth.tables import metadata
from ecowatt_kernel.db import run_migrations

run_migrations(metadata)
