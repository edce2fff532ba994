"""Monitoring-point endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from ecowatt_registry.archive import POINT
from ecowatt_registry.crud import Conditions, EnterpriseFilters, Resource, build_router
from ecowatt_registry.excel.exporter import exporter
from ecowatt_registry.points.models import (
    Point,
    PointCreate,
    PointRead,
    PointUpdate,
    threshold_problems,
)


def filters(
    common: EnterpriseFilters,
    point_type: Annotated[
        list[str] | None, Query(description="total production control indirect combined")
    ] = None,
    status: Annotated[list[str] | None, Query(description="active, disabled, removed")] = None,
    facility_id: str | None = None,
    device_mn: str | None = None,
    missing_threshold: bool | None = Query(None, description="true: only points without 启停阈值"),
) -> Conditions:
    conditions = list(common)
    if point_type:
        conditions.append(Point.point_type.in_(point_type))
    if status:
        conditions.append(Point.status.in_(status))
    if facility_id:
        conditions.append(Point.facility_id == facility_id)
    if device_mn:
        conditions.append(Point.device_mn == device_mn)
    if missing_threshold is not None:
        conditions.append(
            Point.start_stop_kw.is_(None) if missing_threshold else Point.start_stop_kw.is_not(None)
        )
    return conditions


def cross_check(state: dict[str, Any]) -> list[tuple[str, str]]:
    return threshold_problems(
        point_type=state["point_type"],
        facility_id=state.get("facility_id"),
        max_load_kw=state.get("max_load_kw"),
        start_stop_kw=state.get("start_stop_kw"),
        low_load_kw=state.get("low_load_kw"),
    )


RESOURCE = Resource(
    kind=POINT,
    path="/points",
    tag="points",
    label="point",
    create_model=PointCreate,
    update_model=PointUpdate,
    read_model=PointRead,
    sortable={
        "name": Point.name,
        "point_type": Point.point_type,
        "device_mn": Point.device_mn,
        "circuit": Point.circuit,
        "rated_kw": Point.rated_kw,
        "start_stop_kw": Point.start_stop_kw,
        "commissioned_at": Point.commissioned_at,
        "updated_at": Point.updated_at,
    },
    default_sort="name",
    search=(Point.name, Point.device_mn),
    filters=filters,
    required=("enterprise_id", "point_type", "name", "is_key", "circuit", "ct_ratio", "pt_ratio",
              "status", "expected_interval_s"),
    cross_check=cross_check,
    immutable=("enterprise_id",),
    export=exporter("point"),
)  # fmt: skip
router = build_router(RESOURCE)
