"""The reporting schema's metadata and the pieces every feature's tables share.

`TXID` is the id of the transaction that last wrote a row (`pg_current_xact_id()`, as a
bigint). The partner datasets page through rows in (txid, key) order and only hand out rows
of transactions older than every transaction still running, so that a page never skips a
row that commits later with a smaller position (see `datasets/service.py`).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, text

SCHEMA = "reporting"
metadata = MetaData(
    schema=SCHEMA,
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    },
)

CURRENT_TXID_SQL = "pg_current_xact_id()::text::bigint"
"""The writing transaction's id, as stored in `txid` columns."""
SAFE_TXID_SQL = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
"""Every transaction with a smaller id has ended: rows below it can no longer appear."""


def txid_column() -> Column[int]:
    """The `txid` column: set on insert by default, and by every upsert explicitly."""
    return Column("txid", BigInteger, nullable=False, server_default=text(CURRENT_TXID_SQL))
