"""The rule catalogue: every rule named, versioned and parameterised (supervision.md §2).

The defaults below seed the `alarm.rule` table (migration 0002); from then on the database is
the source of truth: `PUT /rules/{code}` changes parameters and bumps the version, and every
alarm records the version it was raised under. `STATE` is not an alarm rule but the
parameters of the per-point state model (§2.1), kept in the same table so they are versioned
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["DEFAULT_RULES", "LEVEL_NAMES", "RuleConfig", "RuleSet", "fmt_kw", "fmt_time"]

LEVEL_NAMES = {1: "一般", 2: "较重", 3: "严重"}


@dataclass(frozen=True)
class RuleConfig:
    code: str
    version: int
    name: str
    name_en: str
    description: str
    params: dict[str, Any]
    enabled: bool = True

    def p(self, key: str) -> Any:
        return self.params[key]

    def level_for(self, value: float, key: str = "level_minutes") -> int:
        """1 + the number of level thresholds `value` reaches beyond the first (at least 1)."""
        thresholds = self.params.get(key) or []
        level = 1
        for i, threshold in enumerate(thresholds):
            if i > 0 and value >= threshold:
                level = i + 1
        return min(level, 3)


DEFAULT_RULES: dict[str, RuleConfig] = {
    r.code: r
    for r in (
        RuleConfig(
            "STATE",
            1,
            "状态判定",
            "Point and facility state model",
            "每个点位按功率判定离线/停电/停运/待机/运行/低负荷；开机阈值 T，关机阈值 0.8T，"
            "连续 confirm_samples 个样本确认状态变化。",
            {
                "confirm_samples": 2,
                "off_ratio": 0.8,
                "idle_min_kw": 0.2,
                "idle_ratio": 0.02,
                "default_control_ratio": 0.1,
                "default_production_ratio": 0.2,
                "default_other_ratio": 0.2,
                "fallback_threshold_kw": 1.0,
                "low_load_ratio": 0.3,
                "offline_factor": 2,
                "offline_min_s": 300,
                "power_loss_v": 30.0,
                "power_loss_without_voltage": True,
                "power_loss_grace_min": 30,
            },
        ),
        RuleConfig(
            "R1",
            1,
            "产污运行治污未运行",
            "Production running, control not running",
            "产污设施运行而关联治污设施停运或待机，持续 confirm_min 分钟即报警；按持续时长分级。",
            {
                "confirm_min": 30,
                "recover_min": 30,
                "level_minutes": [30, 120, 480],
                "update_every_min": 15,
            },
        ),
        RuleConfig(
            "R2",
            1,
            "治污延迟开启",
            "Control started late",
            "产污设施启动后，治污设施晚于治理线组允许的提前量 start_lead_min 才开启；"
            "在治污开启时报警（事件型）。按延迟分级。",
            {"level_minutes": [0, 60, 240]},
        ),
        RuleConfig(
            "R3",
            1,
            "治污提前关闭",
            "Control stopped early",
            "产污设施仍在运行时治污设施关闭，且早于产污停机超过 stop_lag_min；在产污停机时报警"
            "（事件型）。按提前量分级。",
            {"level_minutes": [0, 60, 240]},
        ),
        RuleConfig(
            "R4",
            1,
            "产治未同步（日）",
            "Daily production–control coverage",
            "每日：治污运行覆盖产污运行时间的比例低于 min_coverage，且当日产污运行不少于 "
            "min_production_h 小时。",
            {"min_coverage": 0.95, "min_production_h": 1.0, "level_coverage": [0.95, 0.8, 0.5]},
        ),
        RuleConfig(
            "R5",
            1,
            "治污低负荷/空转",
            "Control at low load / idling",
            "产污与治污均运行，但治污功率低于参考功率的 low_load_ratio（参考=学习额定负荷），"
            "或治污/产污功率比低于其 30 日中位数的 ratio_drop 倍；持续 confirm_min 分钟。",
            {
                "ratio_drop": 0.5,
                "confirm_min": 60,
                "recover_min": 30,
                "level_minutes": [60, 240, 720],
                "update_every_min": 15,
            },
        ),
        RuleConfig(
            "R6",
            1,
            "关联离线",
            "Control point offline while production runs",
            "治污关键点位离线而关联产污设施在线运行，持续 confirm_min 分钟；疑似人为断开。",
            {
                "confirm_min": 60,
                "recover_min": 15,
                "level_minutes": [60, 240, 1440],
                "update_every_min": 15,
            },
        ),
        RuleConfig(
            "R7",
            1,
            "未监控负荷",
            "Unmonitored load on the total line",
            "企业总电功率高于其运行中位数的 total_ratio，而所有受监控产污点位均停运，持续 "
            "confirm_min 分钟；提示存在未计量的生产回路。",
            {
                "total_ratio": 0.2,
                "confirm_min": 60,
                "recover_min": 30,
                "level_minutes": [60, 240, 720],
                "update_every_min": 15,
            },
        ),
        RuleConfig(
            "OFFLINE",
            1,
            "设备离线",
            "Device offline",
            "设备全部点位离线达 open_after_min 分钟即报警，2 小时/24 小时/72 小时逐级升级；"
            "同时通知企业联系人。",
            {"open_after_min": 120, "level_minutes": [120, 1440, 4320], "update_every_min": 60},
        ),
    )
}


@dataclass
class RuleSet:
    """The rules in force (loaded from the database); `generation` changes with every edit."""

    rules: dict[str, RuleConfig] = field(default_factory=lambda: dict(DEFAULT_RULES))
    generation: int = 0

    def __getitem__(self, code: str) -> RuleConfig:
        return self.rules[code]

    @property
    def state(self) -> dict[str, Any]:
        return self.rules["STATE"].params


_TZ_CACHE: dict[str, ZoneInfo] = {}


def _tz(name: str) -> ZoneInfo:
    if name not in _TZ_CACHE:
        _TZ_CACHE[name] = ZoneInfo(name)
    return _TZ_CACHE[name]


def fmt_time(ts: float, tz: str = "Asia/Shanghai") -> str:
    """Epoch seconds as local wall-clock text (the user interface speaks local time)."""
    return datetime.fromtimestamp(ts, UTC).astimezone(_tz(tz)).strftime("%Y-%m-%d %H:%M")


def fmt_kw(value: float | None) -> str:
    return "无数据" if value is None else f"{value:.1f} kW"


def local_day(ts: float, tz: str = "Asia/Shanghai") -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(_tz(tz)).date().isoformat()
