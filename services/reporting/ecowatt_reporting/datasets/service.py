"""Read-only partner datasets, paged incrementally by an opaque cursor.

Each dataset is a table of reporting whose rows carry `txid`, the id of the transaction that
last wrote them. A page is the rows after the cursor in (txid, key) order, and only rows of
transactions older than every transaction still running (`txid < pg_snapshot_xmin(...)`):

- never skips: a transaction that has not committed yet has an id at or above that horizon,
  so its rows can only sort *after* everything handed out so far — they come in a later
  page, whatever order transactions commit in;
- never repeats: the cursor only moves forward, and a row reappears only when it is
  written again (a new version: a 15-minute bucket that received more data, an alarm that
  changed status) — the partner upserts it by its key.

The horizon lags by the longest running write transaction (typically well under a second).

Access: admins, city supervisors, services, district officers and O&M operators read every
dataset within their data scope. A partner's API key must have been granted the key dataset
that covers it (`Dataset.grant`: `archive` for enterprises and points, `telemetry` for
latest values and 15-minute energy, `alarms`, `control` for compliance — the names of the
auth service's permission matrix, whose rows for these routes say the same). The gateway
checks the key before forwarding; the service checks the granted datasets again in the
signed identity (`Identity.datasets`), and the key's districts limit the rows.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ecowatt_kernel.identity import DataScope, Identity, Role, district_condition
from ecowatt_kernel.problems import Forbidden, Problem
from sqlalchemy import Column, Table, and_, literal_column, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_reporting.archive.models import ENTERPRISE, POINT
from ecowatt_reporting.database import SAFE_TXID_SQL
from ecowatt_reporting.events.models import ALARM_RECORD, COMPLIANCE_HOUR
from ecowatt_reporting.history.models import LATEST_VALUE, ROLLUP_15M

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetPage",
    "check_access",
    "read_page",
]

INTERNAL_ROLES = (
    Role.ADMIN,
    Role.CITY_SUPERVISOR,
    Role.SERVICE,
    Role.DISTRICT_OFFICER,
    Role.OM_OPERATOR,
)


@dataclass(frozen=True)
class Dataset:
    """A table offered to partners: its key (after txid), columns and description."""

    name: str
    title: str
    description: str
    grant: str
    """The API-key dataset that grants this one (auth's `GET /api/auth/datasets`)."""
    table: Table
    key: tuple[str, ...]
    columns: tuple[str, ...]
    example: dict[str, Any]


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "enterprises",
            "企业档案",
            "Enterprises of the archive: district, zone, industry, grade, status.",
            "archive",
            ENTERPRISE,
            ("id",),
            (
                "id",
                "name",
                "credit_code",
                "district_code",
                "district_name",
                "zone",
                "town",
                "industry_code",
                "industry_name",
                "key_industry",
                "performance_grade",
                "production_status",
                "longitude",
                "latitude",
                "updated_at",
                "deleted",
            ),
            {
                "id": "e-610113-0001",
                "name": "西安某某涂装有限公司",
                "credit_code": "91610113MA6U000001",
                "district_code": "610113",
                "district_name": "雁塔区",
                "industry_code": "3360",
                "performance_grade": "B",
                "production_status": "normal",
                "updated_at": "2026-12-01T02:00:00Z",
                "deleted": False,
            },
        ),
        Dataset(
            "points",
            "监测点位",
            "Monitoring points: type (total/production/control/…), facility, device, ratings.",
            "archive",
            POINT,
            ("id",),
            (
                "id",
                "enterprise_id",
                "facility_id",
                "point_type",
                "name",
                "device_mn",
                "circuit",
                "rated_kw",
                "start_stop_kw",
                "expected_interval_s",
                "commissioned_at",
                "status",
                "updated_at",
                "deleted",
            ),
            {
                "id": "p-0001",
                "enterprise_id": "e-610113-0001",
                "point_type": "control",
                "name": "1#喷淋塔风机",
                "rated_kw": 30.0,
                "start_stop_kw": 3.0,
                "status": "active",
            },
        ),
        Dataset(
            "latest_values",
            "最新数据",
            "The newest real-time or minute reading of every point.",
            "telemetry",
            LATEST_VALUE,
            ("point_id",),
            (
                "point_id",
                "enterprise_id",
                "data_time",
                "power_kw",
                "energy_total_kwh",
                "valid",
                "extra",
            ),
            {
                "point_id": "p-0001",
                "enterprise_id": "e-610113-0001",
                "data_time": "2026-12-07T02:15:00Z",
                "power_kw": 21.4,
                "energy_total_kwh": 10234.5,
                "valid": True,
                "extra": {"current_a:A": 36.2, "voltage_v:A": 228.1, "power_factor": 0.91},
            },
        ),
        Dataset(
            "energy_15min",
            "15分钟电量",
            "Energy and power per point and quarter hour (UTC-aligned buckets); a bucket "
            "reappears with a new version when more of its data arrive.",
            "telemetry",
            ROLLUP_15M,
            ("point_id", "bucket"),
            (
                "point_id",
                "bucket",
                "enterprise_id",
                "energy_kwh",
                "power_sum",
                "power_n",
                "power_max",
                "power_min",
                "samples",
                "valid_samples",
            ),
            {
                "point_id": "p-0001",
                "bucket": "2026-12-07T02:00:00Z",
                "enterprise_id": "e-610113-0001",
                "energy_kwh": 5.31,
                "power_sum": 318.6,
                "power_n": 15,
                "power_max": 22.0,
                "power_min": 20.7,
                "samples": 15,
                "valid_samples": 15,
            },
        ),
        Dataset(
            "alarms",
            "报警",
            "Alarms with their rule, level, status and handling times.",
            "alarms",
            ALARM_RECORD,
            ("alarm_id",),
            (
                "alarm_id",
                "enterprise_id",
                "district_code",
                "rule_code",
                "rule_name",
                "subject_kind",
                "subject_id",
                "level",
                "max_level",
                "status",
                "active",
                "suppressed",
                "first_at",
                "opened_at",
                "last_at",
                "recovered_at",
                "dispatched_at",
                "feedback_at",
                "verified_at",
                "closed_at",
                "changed_at",
                "explanation",
            ),
            {
                "alarm_id": "a-20261207-0001",
                "enterprise_id": "e-610113-0001",
                "rule_code": "R1",
                "rule_name": "产污运行治污未运行",
                "level": 2,
                "status": "replied",
                "first_at": "2026-12-07T01:00:00Z",
                "feedback_at": "2026-12-07T03:10:00Z",
            },
        ),
        Dataset(
            "compliance",
            "管控合规",
            "Compliance verdicts of heavy-pollution-weather measures per enterprise, task, "
            "target and hour (control.compliance).",
            "control",
            COMPLIANCE_HOUR,
            ("enterprise_id", "task_id", "target_id", "hour_start"),
            ("enterprise_id", "task_id", "target_id", "hour_start", "verdict", "evidence"),
            {
                "enterprise_id": "e-610113-0001",
                "task_id": "t-1",
                "target_id": "line-1",
                "hour_start": "2026-12-07T02:00:00Z",
                "verdict": "non_compliant",
                "evidence": {"reduction_pct": 4.2, "required_pct": 30},
            },
        ),
    )
}


def check_access(identity: Identity, dataset: Dataset) -> None:
    """403 unless the caller may read `dataset`."""
    if identity.has_any_role(*INTERNAL_ROLES):
        return
    if identity.kind == "api_key" and identity.has_any_role(Role.PARTNER):
        if dataset.grant in identity.datasets:
            return
        raise Forbidden(
            f"this API key was not granted the dataset `{dataset.grant}` "
            f"(which holds `{dataset.name}`)"
        )
    raise Forbidden("datasets are for partners' API keys and the bureau")


def encode_cursor(values: Sequence[Any]) -> str:
    """An opaque cursor for (txid, key…)."""
    plain = [v.isoformat() if isinstance(v, datetime | date) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, dataset: Dataset) -> list[Any]:
    """(txid, key…) of a cursor; 400 when it is not one of this dataset's."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != 1 + len(dataset.key):
            raise ValueError("wrong length")
        values: list[Any] = [int(raw[0])]
        for name, value in zip(dataset.key, raw[1:], strict=True):
            column = dataset.table.c[name]
            if column.type.python_type is datetime:
                values.append(datetime.fromisoformat(value))
            else:
                values.append(str(value))
        return values
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError, NotImplementedError):
        raise Problem(
            "invalid cursor: pass back `next_cursor` of the previous page unchanged", status=400
        ) from None


@dataclass
class DatasetPage:
    items: list[dict[str, Any]]
    next_cursor: str | None
    has_more: bool


def _enterprise_column(table: Table) -> Column[Any]:
    return table.c.id if table is ENTERPRISE else table.c.enterprise_id


async def read_page(
    session: AsyncSession,
    *,
    dataset: Dataset,
    scope: DataScope,
    cursor: str | None,
    limit: int,
    district: str | None = None,
) -> DatasetPage:
    """The rows after `cursor` that the scope may see, at most `limit`."""
    table = dataset.table
    key_columns = [table.c.txid, *(table.c[k] for k in dataset.key)]
    conditions = [table.c.txid < literal_column(SAFE_TXID_SQL)]
    if cursor:
        after = decode_cursor(cursor, dataset)
        conditions.append(tuple_(*key_columns) > tuple_(*after))
    enterprise_column = _enterprise_column(table)
    visible = scope.where(
        district_column=ENTERPRISE.c.district_code, enterprise_column=ENTERPRISE.c.id
    )
    if district:
        # A filter, not a scope: any code is accepted (an unknown one matches nothing).
        visible = and_(visible, district_condition([district], ENTERPRISE.c.district_code))
    if table is ENTERPRISE:
        conditions.append(visible)
    elif not scope.all or district:
        conditions.append(enterprise_column.in_(select(ENTERPRISE.c.id).where(visible)))
    query = (
        select(*key_columns, *(table.c[c] for c in dataset.columns if c not in dataset.key))
        .where(*conditions)
        .order_by(*key_columns)
        .limit(limit + 1)
    )
    rows = (await session.execute(query)).mappings().all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    items = [{k: row[k] for k in dataset.columns} for row in rows]
    if rows:
        last = rows[-1]
        next_cursor: str | None = encode_cursor([last["txid"], *(last[k] for k in dataset.key)])
    else:
        next_cursor = cursor
    return DatasetPage(items=items, next_cursor=next_cursor, has_more=has_more)
