"""Alembic environment of the control-plan service; the kernel runs it at start-up."""

from ecowatt_control_plan.database import METADATA
from ecowatt_kernel.db import run_migrations

run_migrations(METADATA)
