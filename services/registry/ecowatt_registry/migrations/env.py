"""Alembic environment of the registry service; the kernel runs it at start-up."""

from ecowatt_kernel.db import run_migrations
from ecowatt_registry.models import Base

run_migrations(Base.metadata)
