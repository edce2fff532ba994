"""Control-group (产治关系) endpoints."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import or_, select

from ecowatt_registry.archive import CONTROL_GROUP
from ecowatt_registry.control_groups.models import (
    ControlGroup,
    ControlGroupCreate,
    ControlGroupMember,
    ControlGroupRead,
    ControlGroupUpdate,
)
from ecowatt_registry.crud import Conditions, EnterpriseFilters, Resource, build_router
from ecowatt_registry.excel.exporter import exporter


def filters(
    common: EnterpriseFilters,
    facility_id: Annotated[str | None, Query(description="Groups containing this facility")] = None,
    valid_on: Annotated[date | None, Query(description="Groups valid on this date")] = None,
) -> Conditions:
    conditions = list(common)
    if facility_id:
        conditions.append(
            select(ControlGroupMember.group_id)
            .where(
                ControlGroupMember.group_id == ControlGroup.id,
                ControlGroupMember.facility_id == facility_id,
            )
            .exists()
        )
    if valid_on:
        conditions.append(
            or_(ControlGroup.valid_from.is_(None), ControlGroup.valid_from <= valid_on)
        )
        conditions.append(or_(ControlGroup.valid_to.is_(None), ControlGroup.valid_to >= valid_on))
    return conditions


def cross_check(state: dict[str, Any]) -> list[tuple[str, str]]:
    start, end = state.get("valid_from"), state.get("valid_to")
    if start and end and end < start:
        return [("valid_to", "valid_to must not be before valid_from")]
    both = set(state.get("production_facility_ids") or ()) & set(
        state.get("control_facility_ids") or ()
    )
    if both:
        return [
            (
                "control_facility_ids",
                f"a facility cannot be on both sides: {', '.join(sorted(both))}",
            )
        ]
    return []


RESOURCE = Resource(
    kind=CONTROL_GROUP,
    path="/control-groups",
    tag="control groups",
    label="control group",
    create_model=ControlGroupCreate,
    update_model=ControlGroupUpdate,
    read_model=ControlGroupRead,
    sortable={
        "name": ControlGroup.name,
        "valid_from": ControlGroup.valid_from,
        "updated_at": ControlGroup.updated_at,
    },
    default_sort="name",
    search=(ControlGroup.name,),
    filters=filters,
    required=("enterprise_id", "production_facility_ids", "control_facility_ids", "required_mode",
              "start_lead_min", "stop_lag_min"),
    cross_check=cross_check,
    immutable=("enterprise_id",),
    export=exporter("control_group"),
)  # fmt: skip
router = build_router(RESOURCE)
