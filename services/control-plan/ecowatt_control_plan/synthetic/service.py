"""A synthetic emergency reduction list for the archive (make run, benchmarks, demos).

Deterministic by seed, following how lists are built (supervision.md §3.3–3.4): performance
grade A and 引领性 enterprises, and exempt / 民生保障 ones, are EXEMPT at every level; grade B
limits by 10 / 20 / 30 %; the others (C, D, ungraded) limit by 20 % at yellow, at orange stop
half of their production facilities and limit the rest by 30 % (one in ten instead works
off-peak, stopping 09:00–17:00), and at red stop entirely. Kilns and furnaces (cement,
bricks, casting) get 240 minutes to wind down, the others 120.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ecowatt_kernel.contracts import EnterpriseSnapshot, FacilitySnapshot
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan.measures import service as measures
from ecowatt_control_plan.measures.models import LEVEL_ZH

SLOW_INDUSTRIES = ("301", "303", "339")
"""Cement and lime, bricks, casting: kilns and furnaces need longer to wind down."""
LEGAL = (
    "依据《西安市重污染天气应急预案》及本企业“一厂一策”应急减排措施，{level}期间须落实以下措施："
    "{what}。污染治理设施须保持正常运行。"
)


def _draw(seed: int, *parts: str) -> float:
    digest = hashlib.sha256("|".join((str(seed), *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _measure(
    enterprise: EnterpriseSnapshot, level: str, index: int, ramp: int, **values: Any
) -> measures.Change:
    what = {
        "STOP": "停止生产",
        "LIMIT": f"限产（较基线减排 {values.get('reduction_pct', 0):g}%）",
        "OFFPEAK": "错峰生产（09:00-17:00 停产）",
        "EXEMPT": f"豁免（{values.get('exempt_reason', '')}）",
    }[values["action"]]
    body = {
        "enterprise_id": enterprise.id,
        "level": level,
        "target_kind": "enterprise",
        "target_ids": [],
        "reduction_pct": None,
        "allowed_load_pct": None,
        "windows": [],
        "ramp_min": ramp,
        "exempt_reason": None,
        "legal_text": LEGAL.format(level=LEVEL_ZH[level], what=what),
        "note": "合成清单",
    } | values
    return measures.Change("create", f"SYN-{enterprise.id}-{level[0].upper()}{index}", body)


def generate(*, view: RegistryView, seed: int) -> list[measures.Change]:
    """The measures of every enterprise with a production facility, at all three levels."""
    facilities: dict[str, list[FacilitySnapshot]] = {}
    for facility in view.all("facility"):
        if facility.kind == "production" and facility.status == "active":
            facilities.setdefault(facility.enterprise_id, []).append(facility)
    out: list[measures.Change] = []
    for snap in sorted(view.all("enterprise"), key=lambda s: s.id):
        if snap.id not in facilities:
            continue
        if snap.production_status == "closed":
            continue
        production = sorted(facilities[snap.id], key=lambda f: f.id)
        slow = (snap.industry_code or "").startswith(SLOW_INDUSTRIES)
        ramp = 240 if slow else 120
        grade = snap.performance_grade
        if grade in ("A", "leading") or snap.exempt or (snap.control_type or "").find("保障") >= 0:
            reason = {"A": "绩效分级A级", "leading": "引领性企业"}.get(grade, "民生保障类")
            out += [
                _measure(snap, level, 1, ramp, action="EXEMPT", exempt_reason=reason)
                for level in ("yellow", "orange", "red")
            ]
            continue
        if grade == "B":
            out += [
                _measure(snap, level, 1, ramp, action="LIMIT", reduction_pct=pct)
                for level, pct in (("yellow", 10.0), ("orange", 20.0), ("red", 30.0))
            ]
            continue
        out.append(_measure(snap, "yellow", 1, ramp, action="LIMIT", reduction_pct=20.0))
        if _draw(seed, "offpeak", snap.id) < 0.1:
            out.append(
                _measure(
                    snap,
                    "orange",
                    1,
                    ramp,
                    action="OFFPEAK",
                    windows=[{"start": "09:00", "end": "17:00"}],
                )
            )
        elif len(production) == 1:
            out.append(_measure(snap, "orange", 1, ramp, action="LIMIT", reduction_pct=30.0))
        else:
            half = (len(production) + 1) // 2
            out.append(
                _measure(
                    snap,
                    "orange",
                    1,
                    ramp,
                    action="STOP",
                    target_kind="facility",
                    target_ids=[f.id for f in production[:half]],
                )
            )
            out.append(
                _measure(
                    snap,
                    "orange",
                    2,
                    ramp,
                    action="LIMIT",
                    reduction_pct=30.0,
                    target_kind="facility",
                    target_ids=[f.id for f in production[half:]],
                )
            )
        out.append(_measure(snap, "red", 1, ramp, action="STOP"))
    return out


async def seed_list(
    session: AsyncSession, *, view: RegistryView, seed: int, actor: str
) -> int | None:
    """Write the synthetic list as one version when the list is empty; the version or None."""
    if await measures.current_version(session):
        return None
    changes = generate(view=view, seed=seed)
    if not changes:
        return None
    return await measures.apply_changes(
        session,
        changes=changes,
        view=view,
        actor=actor,
        reason=f"合成应急减排清单（种子 {seed}）",
        source="synthetic",
    )
