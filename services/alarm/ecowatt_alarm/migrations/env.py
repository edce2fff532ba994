"""Alembic environment of the alarm service; the kernel runs it at start-up."""

from ecowatt_alarm.tables import metadata
from ecowatt_kernel.db import run_migrations

run_migrations(metadata)
