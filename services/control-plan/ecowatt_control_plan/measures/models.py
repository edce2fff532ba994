"""The emergency reduction list (应急减排清单): measure rows with versions, and API models.

A measure is one (enterprise, alert level, target) with its action. Every change — an API
edit or one whole Excel import — makes a new list version: the changed measures' old rows
are closed (`version_to`) and new rows opened (`version_from`), so the list as it was at any
version, and the difference between two versions, can always be read back. Orders pin the
version they were decomposed with.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import (
    BigInteger,
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
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from ecowatt_control_plan.database import METADATA

Level = Literal["yellow", "orange", "red"]
Action = Literal["STOP", "LIMIT", "OFFPEAK", "EXEMPT"]
TargetKind = Literal["enterprise", "production_line", "facility", "point"]

LEVELS: tuple[Level, ...] = ("yellow", "orange", "red")
LEVEL_RANK = {"yellow": 1, "orange": 2, "red": 3}
LEVEL_ZH = {"yellow": "黄色预警", "orange": "橙色预警", "red": "红色预警"}
ACTION_ZH = {"STOP": "停产", "LIMIT": "限产", "OFFPEAK": "错峰生产", "EXEMPT": "豁免"}
TARGET_ZH = {"enterprise": "企业", "production_line": "生产线", "facility": "设施", "point": "点位"}
DEFAULT_RAMP_MIN = 120
"""Time allowed to wind down before a measure is checked (supervision.md §3.4)."""

list_version = Table(
    "list_version",
    METADATA,
    Column("version", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text),
    Column("reason", Text),
    Column("source", Text, nullable=False),  # api | excel | synthetic
    Column("created", Integer, nullable=False, server_default=text("0")),
    Column("updated", Integer, nullable=False, server_default=text("0")),
    Column("deleted", Integer, nullable=False, server_default=text("0")),
)

measure = Table(
    "measure",
    METADATA,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("measure_id", Text, nullable=False),
    Column("version_from", Integer, nullable=False),
    Column("version_to", Integer),
    Column("enterprise_id", Text, nullable=False),
    Column("enterprise_name", Text),
    Column("district_code", Text, nullable=False),
    Column("level", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target_kind", Text, nullable=False),
    Column("target_ids", ARRAY(Text), nullable=False),
    Column("reduction_pct", Float),
    Column("allowed_load_pct", Float),
    Column("windows", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("ramp_min", Integer, nullable=False),
    Column("exempt_reason", Text),
    Column("legal_text", Text),
    Column("note", Text),
    Column("updated_by", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The current list: one open row per measure.
    Index(
        "uq_measure_current",
        "measure_id",
        unique=True,
        postgresql_where=text("version_to IS NULL"),
    ),
    Index("ix_measure_enterprise", "enterprise_id", "level"),
    Index("ix_measure_versions", "version_from", "version_to"),
)

MEASURE_FIELDS = (
    "enterprise_id",
    "level",
    "action",
    "target_kind",
    "target_ids",
    "reduction_pct",
    "allowed_load_pct",
    "windows",
    "ramp_min",
    "exempt_reason",
    "legal_text",
    "note",
)
"""The fields a change compares: equal values are no change (no new version)."""

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Window(BaseModel):
    """An off-peak window in local time; `end` before `start` runs over midnight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str = Field(description="HH:MM local time")
    end: str = Field(description="HH:MM local time (exclusive)")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("time must be HH:MM (00:00-23:59)")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.start == self.end:
            raise ValueError("a window needs a start different from its end")
        return self


class MeasureFields(BaseModel):
    """A measure of one enterprise at one alert level, with its own field rules."""

    model_config = ConfigDict(extra="forbid")

    enterprise_id: str = Field(min_length=1, max_length=64)
    level: Level
    action: Action = Field(description="STOP 停产, LIMIT 限产, OFFPEAK 错峰生产, EXEMPT 豁免")
    target_kind: TargetKind = "enterprise"
    target_ids: list[str] = Field(
        default_factory=list,
        max_length=200,
        description="Production lines, facilities or points; empty for the enterprise",
    )
    reduction_pct: float | None = Field(
        None, gt=0, le=100, description="LIMIT: reduction against the baseline (%)"
    )
    allowed_load_pct: float | None = Field(
        None, gt=0, lt=100, description="LIMIT: allowed mean load (% of rated power)"
    )
    windows: list[Window] = Field(default_factory=list, max_length=8)
    ramp_min: int = Field(DEFAULT_RAMP_MIN, ge=0, le=1440, description="Time to wind down")
    exempt_reason: str | None = Field(None, max_length=200)
    legal_text: str | None = Field(None, max_length=2000, description="Shown to the enterprise")
    note: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _action_rules(self) -> MeasureFields:
        for _, english, _ in action_problems(self.model_dump()):
            raise ValueError(english)
        return self


def action_problems(values: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field, English, Chinese) problems with one measure's action rules."""
    action = values.get("action")
    kind = values.get("target_kind", "enterprise")
    ids = values.get("target_ids") or []
    out: list[tuple[str, str, str]] = []
    if kind == "enterprise" and ids and ids != [values.get("enterprise_id")]:
        out.append(
            (
                "target_ids",
                "an enterprise-level measure names no targets",
                "对象类型为企业时不填写对象编号",
            )
        )
    if kind != "enterprise" and not ids:
        out.append(("target_ids", f"a {kind} measure needs its target ids", "请填写对象编号"))
    if len(set(ids)) != len(ids):
        out.append(("target_ids", "a target is listed twice", "对象编号重复"))
    reduction, allowed = values.get("reduction_pct"), values.get("allowed_load_pct")
    if action == "LIMIT":
        if (reduction is None) == (allowed is None):
            out.append(
                (
                    "reduction_pct",
                    "LIMIT needs exactly one of reduction_pct and allowed_load_pct",
                    "限产措施须填写“减排比例”或“允许负荷”其中之一",
                )
            )
    elif reduction is not None or allowed is not None:
        out.append(
            (
                "reduction_pct",
                f"{action} takes no reduction or load percentage",
                f"{ACTION_ZH.get(str(action), action)}措施不填写减排比例或允许负荷",
            )
        )
    windows = values.get("windows") or []
    if action == "OFFPEAK" and not windows:
        out.append(("windows", "OFFPEAK needs at least one window", "错峰生产须填写错峰时段"))
    if action != "OFFPEAK" and windows:
        out.append(
            (
                "windows",
                f"{action} takes no windows",
                f"{ACTION_ZH.get(str(action), action)}措施不填写错峰时段",
            )
        )
    if action == "EXEMPT":
        if not (values.get("exempt_reason") or "").strip():
            out.append(
                (
                    "exempt_reason",
                    "EXEMPT needs its reason (grade A, 引领性, 保障类 …)",
                    "豁免须填写豁免理由（A级、引领性、民生保障类等）",
                )
            )
        if kind != "enterprise":
            out.append(
                ("target_kind", "EXEMPT applies to the whole enterprise", "豁免只能针对整个企业")
            )
    return out


class MeasureCreate(MeasureFields):
    measure_id: str | None = Field(
        None, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$", description="Generated when absent"
    )
    reason: str | None = Field(None, max_length=500, description="Why (kept in the version)")


class MeasurePatch(BaseModel):
    """Fields to change; the others keep their values."""

    model_config = ConfigDict(extra="forbid")

    action: Action | None = None
    target_kind: TargetKind | None = None
    target_ids: list[str] | None = None
    reduction_pct: float | None = Field(None, gt=0, le=100)
    allowed_load_pct: float | None = Field(None, gt=0, lt=100)
    windows: list[Window] | None = None
    ramp_min: int | None = Field(None, ge=0, le=1440)
    exempt_reason: str | None = Field(None, max_length=200)
    legal_text: str | None = Field(None, max_length=2000)
    note: str | None = Field(None, max_length=500)
    reason: str | None = Field(None, max_length=500)


class MeasureRead(BaseModel):
    measure_id: str
    enterprise_id: str
    enterprise_name: str | None
    district_code: str
    level: Level
    action: Action
    target_kind: TargetKind
    target_ids: list[str]
    reduction_pct: float | None
    allowed_load_pct: float | None
    windows: list[Window]
    ramp_min: int
    exempt_reason: str | None
    legal_text: str | None
    note: str | None
    version_from: int
    version_to: int | None
    updated_by: str | None
    updated_at: datetime


class VersionRead(BaseModel):
    version: int
    created_at: datetime
    actor: str | None
    reason: str | None
    source: str
    created: int
    updated: int
    deleted: int


class MeasureChange(BaseModel):
    """One measure's difference between two versions."""

    measure_id: str
    change: Literal["created", "updated", "deleted"]
    enterprise_id: str
    level: Level
    before: dict[str, Any] | None
    after: dict[str, Any] | None
