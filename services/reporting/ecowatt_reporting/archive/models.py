"""The archive as reporting sees it: a copy of the registry's enterprise, facility, point and
control-group snapshots (from `registry.changes` through a `RegistryView`), so that
statistics and datasets can join and filter by district, zone, industry and grade in SQL.

A row is replaced only by a snapshot with a later `updated_at` (the registry's change time).
Rows are never deleted: an entity deleted in the registry keeps its row with `deleted` set,
so that history and partner datasets can still name it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from ecowatt_reporting.database import metadata, txid_column


def _common() -> list[Column[Any]]:
    return [
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("deleted", Boolean, nullable=False, server_default=text("false")),
        Column("synced_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        txid_column(),
    ]


ENTERPRISE = Table(
    "enterprise",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("credit_code", Text),
    Column("district_code", Text, nullable=False),
    Column("district_name", Text),
    Column("zone", Text),
    Column("town", Text),
    Column("address", Text),
    Column("longitude", Float),
    Column("latitude", Float),
    Column("industry_code", Text),
    Column("industry_name", Text),
    Column("industry_division", Text),
    Column("key_industry", Text),
    Column("performance_grade", Text, nullable=False),
    Column("control_type", Text),
    Column("production_status", Text, nullable=False),
    Column("om_company", Text),
    *_common(),
)
Index("ix_enterprise_txid", ENTERPRISE.c.txid, ENTERPRISE.c.id)
Index("ix_enterprise_district", ENTERPRISE.c.district_code)

FACILITY = Table(
    "facility",
    metadata,
    Column("id", Text, primary_key=True),
    Column("enterprise_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("code", Text),
    Column("control_type", Text),
    Column("rated_kw", Float),
    Column("status", Text, nullable=False),
    *_common(),
)

POINT = Table(
    "point",
    metadata,
    Column("id", Text, primary_key=True),
    Column("enterprise_id", Text, nullable=False),
    Column("facility_id", Text),
    Column("point_type", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("device_mn", Text),
    Column("circuit", Integer, nullable=False),
    Column("rated_kw", Float),
    Column("start_stop_kw", Float),
    Column("expected_interval_s", Integer, nullable=False),
    Column("commissioned_at", DateTime(timezone=True)),
    Column("status", Text, nullable=False),
    *_common(),
)
Index("ix_point_txid", POINT.c.txid, POINT.c.id)
Index("ix_point_enterprise", POINT.c.enterprise_id)

CONTROL_GROUP = Table(
    "control_group",
    metadata,
    Column("id", Text, primary_key=True),
    Column("enterprise_id", Text, nullable=False),
    Column("name", Text),
    Column("production_facility_ids", JSONB, nullable=False),
    Column("control_facility_ids", JSONB, nullable=False),
    Column("required_mode", Text, nullable=False),
    *_common(),
)

POINT_TYPE_ZH = {
    "total": "企业总电",
    "production": "产污设施",
    "control": "治污设施",
    "indirect": "间接用电",
    "combined": "产治一体",
}
GRADE_ZH = {"A": "A级", "B": "B级", "C": "C级", "D": "D级", "leading": "引领性", "none": "未评级"}
