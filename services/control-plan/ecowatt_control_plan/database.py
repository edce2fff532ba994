"""The control-plan schema's metadata and its transactional outbox.

Every feature declares its tables on `METADATA` (in its `models.py`); events (`control.tasks`,
`control.compliance`, `audit.events`) are written to `OUTBOX` in the transaction that makes
the change, and the relay publishes them (`ecowatt_kernel.outbox`).
"""

from __future__ import annotations

from ecowatt_kernel.outbox import outbox_table
from sqlalchemy import MetaData

SCHEMA = "control_plan"
METADATA = MetaData(schema=SCHEMA)
OUTBOX = outbox_table(METADATA)
