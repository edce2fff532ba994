"""What every part of the validation API shares: the export switch, scope conditions, the
deployment's day, and Excel downloads within the kernel's cap."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from ecowatt_kernel.app import service_context
from ecowatt_kernel.excel import MAX_EXPORT_ROWS, Column, Sheet, check_export_size, xlsx_response
from ecowatt_kernel.identity import DataScope, district_condition
from fastapi import Query, Request
from fastapi.responses import Response
from sqlalchemy import ColumnElement
from sqlalchemy.sql import Select

from ecowatt_validation.runtime import RUNTIME, Runtime

Format = Annotated[Literal["json", "xlsx"], Query(description="json, or xlsx for an export")]
EXPORT_ROW_LIMIT = MAX_EXPORT_ROWS
ARCHIVE_CODES = (
    "no_monitoring_point",
    "no_total_point",
    "production_facility_unmonitored",
    "control_facility_unmonitored",
    "production_threshold_missing",
)


def runtime(request: Request) -> Runtime:
    """The running service's `Runtime` (handlers take `CurrentRuntime`; helpers call this)."""
    return RUNTIME.from_request(request)


def deployment_tz(request: Request) -> ZoneInfo:
    return ZoneInfo(service_context(request).settings.timezone)


def yesterday(request: Request) -> date:
    """The last closed day on the service's clock (an injected clock in tests)."""
    today: date = runtime(request).checks.today()
    return today - timedelta(days=1)


async def xlsx_download(
    columns: Sequence[Column], rows: Iterable[Mapping[str, Any]], title: str, name: str
) -> Response:
    """An .xlsx download built off the event loop, at most EXPORT_ROW_LIMIT rows."""
    sheet = Sheet(title=title, columns=columns, rows=list(rows))
    return await xlsx_response([sheet], f"{name}.xlsx", max_rows=EXPORT_ROW_LIMIT)


async def export_rows(session: Any, query: Select[Any]) -> list[Any]:
    """The rows of an export, refused (422 stating the cap) beyond EXPORT_ROW_LIMIT."""
    rows = list((await session.execute(query.limit(EXPORT_ROW_LIMIT + 1))).all())
    check_export_size(len(rows), limit=EXPORT_ROW_LIMIT)
    return rows


def scoped(scope: DataScope, district: Any, enterprise: Any) -> ColumnElement[bool]:
    return scope.where(district_column=district, enterprise_column=enterprise)


def district_filter(codes: list[str] | None, column: Any) -> ColumnElement[bool] | None:
    if not codes:
        return None
    return district_condition(codes, column)


__all__ = [
    "ARCHIVE_CODES",
    "EXPORT_ROW_LIMIT",
    "Format",
    "deployment_tz",
    "district_filter",
    "export_rows",
    "runtime",
    "scoped",
    "xlsx_download",
    "yesterday",
]
