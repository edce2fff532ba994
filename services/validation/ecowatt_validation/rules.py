"""The rule catalog: every check this service runs, named, versioned and parameterised.

The definitions here (code, names, subject, trigger, default parameters, formula) are the
source of `docs/data-quality-rules.md`. Parameters live in the database (`rules` table, one row
per rule with its current version, `rule_versions` with every version); the defaults below
seed version 1. Editing a rule's parameters through the API writes a new version, and every
finding records the version that raised it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["archive", "quality", "device"]
Trigger = Literal["archive", "streaming", "daily", "sweep"]
SubjectKind = Literal["enterprise", "facility", "point", "device"]


@dataclass(frozen=True)
class RuleDef:
    """One rule as shipped: identity, names, trigger and default parameters."""

    code: str
    name_zh: str
    name_en: str
    kind: Kind
    triggers: tuple[Trigger, ...]
    subject: SubjectKind
    severity: Literal["info", "warning", "major"]
    formula: str
    defaults: Mapping[str, Any] = field(default_factory=dict)


NO_MONITORING_POINT = "no_monitoring_point"
NO_TOTAL_POINT = "no_total_point"
PRODUCTION_UNMONITORED = "production_facility_unmonitored"
PRODUCTION_THRESHOLD_MISSING = "production_threshold_missing"
CONTROL_UNMONITORED = "control_facility_unmonitored"
CONTROL_THRESHOLD_MISSING = "control_threshold_missing"
NO_DATA_AFTER_COMMISSIONING = "no_data_after_commissioning"
NEGATIVE_ENERGY = "negative_energy"
ENERGY_GT_25X_MAX_LOAD = "daily_energy_gt_25x_max_load"
ABNORMAL_LARGE_ENERGY = "abnormal_large_energy"
SUB_METERS_EXCEED_TOTAL = "sub_meters_exceed_total"
NEGATIVE_POWER = "negative_power"
CONSTANT_POWER = "constant_power"
INDUSTRY_NOT_CLASS = "industry_not_class_level"
CREDIT_CODE_EMPTY = "credit_code_empty"
CREDIT_CODE_INVALID = "credit_code_invalid"
DEVICE_OFFLINE = "device_offline"
DATA_LATENCY = "data_latency"
UNBOUND_DATA = "unbound_data"

RULES: tuple[RuleDef, ...] = (
    # ------------------------------------------------------------ archive completeness
    RuleDef(
        NO_MONITORING_POINT,
        "无监管点位",
        "No monitoring point",
        "archive",
        ("archive", "daily"),
        "enterprise",
        "major",
        "An enterprise whose production status is in `statuses` has no point with status active.",
        {"statuses": ["normal"]},
    ),
    RuleDef(
        NO_TOTAL_POINT,
        "无总用电监测点",
        "No total-line point",
        "archive",
        ("archive", "daily"),
        "enterprise",
        "major",
        "An enterprise in `statuses` has no active point of type total (企业总电).",
        {"statuses": ["normal"]},
    ),
    RuleDef(
        PRODUCTION_UNMONITORED,
        "无产污设施或产污设施无对应监管点",
        "No production facility, or a production facility without a point",
        "archive",
        ("archive", "daily"),
        "enterprise",
        "major",
        "Enterprise in `statuses` with no active production facility; or an active production "
        "facility with no active point (type production or combined) on it. One finding per "
        "enterprise; the evidence lists the facilities without a point.",
        {"statuses": ["normal"]},
    ),
    RuleDef(
        PRODUCTION_THRESHOLD_MISSING,
        "产污设施未设置阈值",
        "Production point without threshold",
        "archive",
        ("archive", "daily"),
        "point",
        "warning",
        "An active point of type production (or combined) whose start/stop threshold "
        "`start_stop_kw` is empty or ≤ `min_threshold_kw`.",
        {"min_threshold_kw": 0.0},
    ),
    RuleDef(
        CONTROL_UNMONITORED,
        "无治污设施或治污设施无对应监管点",
        "No control facility, or a control facility without a point",
        "archive",
        ("archive", "daily"),
        "enterprise",
        "major",
        "Enterprise in `statuses` with no active control facility; or an active control "
        "facility with no active point (type control or combined) on it.",
        {"statuses": ["normal"]},
    ),
    # ----------------------------------------------------------------- data quality
    RuleDef(
        CONTROL_THRESHOLD_MISSING,
        "治污设施未设置阈值",
        "Control point without threshold",
        "quality",
        ("archive", "daily"),
        "point",
        "major",
        "An active point of type control, or a key point of type combined, whose start/stop "
        "threshold `start_stop_kw` is empty or ≤ `min_threshold_kw`.",
        {"min_threshold_kw": 0.0},
    ),
    RuleDef(
        NO_DATA_AFTER_COMMISSIONING,
        "联网后无上报数据",
        "No data after commissioning",
        "quality",
        ("daily",),
        "point",
        "major",
        "An active point with `commissioned_at` ≤ day end − `grace_h` hours has no valid "
        "sample in [max(commissioned_at, day start), day end). Evidence: days since "
        "commissioning; severity rises to major after `escalate_h` hours without data.",
        {"grace_h": 2.0, "escalate_h": 24.0},
    ),
    RuleDef(
        NEGATIVE_ENERGY,
        "电量为负",
        "Negative energy",
        "quality",
        ("streaming", "daily"),
        "point",
        "major",
        "ΔE = E(t) − E(t−1) < −`min_negative_kwh` between consecutive counter readings with "
        "valid flags (a reset when E(t) ≤ `reset_fraction` × E(t−1), else the counter ran "
        "backwards); or a reported interval energy (Cou) < −`min_negative_kwh`. The value is "
        "excluded from aggregates. A drop from ≥ `rollover_fraction` × 10^k to < (1 − "
        "`rollover_fraction`) × 10^k is a counter roll-over: ΔE = 10^k − E(t−1) + E(t), no "
        "finding.",
        {"min_negative_kwh": 0.01, "reset_fraction": 0.1, "rollover_fraction": 0.9},
    ),
    RuleDef(
        ENERGY_GT_25X_MAX_LOAD,
        "点位日电量大于25倍点位日最大负荷",
        "Daily energy above 25 × daily maximum load",
        "quality",
        ("daily",),
        "point",
        "major",
        "E_day > `factor` × P_max_day, P_max_day = the day's maximum valid active power; when "
        "there is none or it is 0, the configured max_load_kw, else rated_kw. When P_max_day "
        "= 0 and E_day > `energy_without_power_kwh`, flagged as energy without power.",
        {"factor": 25.0, "energy_without_power_kwh": 0.1},
    ),
    RuleDef(
        ABNORMAL_LARGE_ENERGY,
        "电量异常偏大",
        "Abnormally large energy",
        "quality",
        ("daily",),
        "point",
        "warning",
        "E_day > `median_factor` × median(E_day of the last `history_days` valid days) and "
        "E_day > mean + `sigma` × σ of those days (only with ≥ `min_history_days` valid days; "
        "a valid day has completeness ≥ `valid_completeness`); or any hourly energy > "
        "`hourly_rated_factor` × rated_kw × 1 h (each ΔE is spread over the hours between its "
        "two readings, so the energy of a gap is not charged to one hour).",
        {
            "median_factor": 3.0,
            "sigma": 3.0,
            "history_days": 30,
            "min_history_days": 7,
            "valid_completeness": 0.9,
            "hourly_rated_factor": 1.2,
        },
    ),
    RuleDef(
        SUB_METERS_EXCEED_TOTAL,
        "生产设施和治理设施电量之和大于企业总电量",
        "Sub-meters exceed the enterprise total",
        "quality",
        ("daily",),
        "enterprise",
        "major",
        "On an enterprise-day where every involved point has completeness ≥ "
        "`min_completeness`: Σ E_day(points of types `sub_types`) > `factor` × Σ E_day(total "
        "points) + `slack_kwh`.",
        {
            "factor": 1.05,
            "slack_kwh": 1.0,
            "min_completeness": 0.9,
            "sub_types": ["production", "control", "combined"],
        },
    ),
    RuleDef(
        NEGATIVE_POWER,
        "功率为负值",
        "Negative power",
        "quality",
        ("streaming", "daily"),
        "point",
        "major",
        "P < −max(`min_kw`, `rated_fraction` × rated_kw) in ≥ `consecutive` consecutive "
        "samples (fires as data arrives), or in > `day_fraction` of the day's samples.",
        {"min_kw": 0.05, "rated_fraction": 0.005, "consecutive": 3, "day_fraction": 0.1},
    ),
    RuleDef(
        CONSTANT_POWER,
        "功率为恒定值",
        "Constant power",
        "quality",
        ("streaming", "daily"),
        "point",
        "warning",
        "max(P) − min(P) ≤ max(`relative` × |P|, reported resolution) over ≥ `window_h` hours "
        "and ≥ `min_samples` consecutive samples, with P > idle_kw = max(`idle_min_kw`, "
        "`idle_rated_fraction` × rated_kw). Constant zero is a stopped facility, not this "
        "check. Phase currents are tested the same way with I > `idle_current_a`, while P (where "
        "reported) is above idle_kw: a stopped facility's stand-by current is not tested. "
        "Nor is a value under `min_resolution_steps` steps of the reported resolution (e.g. "
        "0.02 kW sent behind a CT of 160): the meter cannot show its variation.",
        {
            "relative": 0.001,
            "window_h": 4.0,
            "min_samples": 16,
            "idle_min_kw": 0.2,
            "idle_rated_fraction": 0.02,
            "idle_current_a": 0.5,
            "min_resolution_steps": 100,
        },
    ),
    RuleDef(
        INDUSTRY_NOT_CLASS,
        "行业未选择行业小类",
        "Industry not at class (小类) level",
        "quality",
        ("archive", "daily"),
        "enterprise",
        "warning",
        "industry_code is empty or not one of the 1,382 four-digit classes (小类) of "
        "GB/T 4754-2017 (amendment 1).",
        {},
    ),
    RuleDef(
        CREDIT_CODE_EMPTY,
        "社会信用代码为空",
        "Credit code empty",
        "quality",
        ("archive", "daily"),
        "enterprise",
        "warning",
        "credit_code is missing or blank.",
        {},
    ),
    RuleDef(
        CREDIT_CODE_INVALID,
        "社会信用代码无效",
        "Credit code invalid",
        "quality",
        ("archive", "daily"),
        "enterprise",
        "warning",
        "A non-empty credit_code that fails `^[0-9A-HJ-NPQRTUWXY]{2}\\d{6}[0-9A-HJ-NPQRTUWXY]"
        "{10}$`, or whose GB 32100 check digit is wrong (weights 3^i mod 31 over the first 17 "
        "characters, C18 = 31 − Σ mod 31), or (with `check_unique`) that another enterprise "
        "also uses.",
        {"check_unique": True},
    ),
    RuleDef(
        DEVICE_OFFLINE,
        "设备离线",
        "Device offline",
        "device",
        ("sweep", "daily"),
        "device",
        "major",
        "A point is offline after max(`missed_intervals` × expected_interval_s, "
        "`min_offline_min` minutes) without a sample; a device is offline when all its active "
        "points are. Live: from receive times, every sweep. Daily: the longest common gap in "
        "the day's samples ≥ that limit. Level 1/2/3 at `escalate_h` hours.",
        {"missed_intervals": 2, "min_offline_min": 30.0, "escalate_h": [2.0, 24.0, 72.0]},
    ),
    RuleDef(
        DATA_LATENCY,
        "数据延迟",
        "Data latency",
        "device",
        ("streaming", "daily"),
        "point",
        "warning",
        "Latency = receive time − DataTime, graded ≤1 h, 1–2 h, 2–6 h, 6–24 h, ≥24 h (grades "
        "1–5; `grade_bounds_h`). A point whose sample reaches grade ≥ `finding_min_grade` "
        "raises a finding.",
        {"grade_bounds_h": [1.0, 2.0, 6.0, 24.0], "finding_min_grade": 2},
    ),
    RuleDef(
        UNBOUND_DATA,
        "数据未绑定点位",
        "Data not bound to a point",
        "device",
        ("streaming",),
        "device",
        "info",
        "A registered device sends values for a circuit, or codes, that no active point or "
        "profile binds. Readings of unregistered MNs are counted in the unbound statistics "
        "(no enterprise to attach a finding to).",
        {},
    ),
)

RULES_BY_CODE: dict[str, RuleDef] = {rule.code: rule for rule in RULES}


@dataclass(frozen=True)
class RuleState:
    """A rule as configured now: its version and parameters."""

    code: str
    version: int
    enabled: bool
    params: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.params[name]


def merged_params(code: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters with every default filled in; unknown names are rejected."""
    defaults = RULES_BY_CODE[code].defaults
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"unknown parameters for {code}: {', '.join(unknown)}")
    out = dict(defaults)
    for name, value in params.items():
        default = defaults[name]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{code}.{name} must be true or false")
        elif isinstance(default, int | float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{code}.{name} must be a number")
            value = type(default)(value) if isinstance(default, float) else value
        elif isinstance(default, list) and not isinstance(value, list):
            raise ValueError(f"{code}.{name} must be a list")
        out[name] = value
    return out


def default_states() -> dict[str, RuleState]:
    """Version 1 of every rule (before the database is read)."""
    return {
        rule.code: RuleState(rule.code, 1, True, merged_params(rule.code, {})) for rule in RULES
    }
