"""Alembic environment of the ops service; the kernel runs it at start-up."""

from ecowatt_kernel.db import run_migrations
from sqlalchemy import MetaData

run_migrations(MetaData(schema="ops"))
