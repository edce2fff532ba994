"""The synthetic city: a realistic Xi'an archive generated from a seed.

Enterprises are spread over Xi'an's real districts and zones (the shipped GB/T 2260 and zone
tables), in industries of the city's heavy-pollution emergency list, each with production
lines, production and control facilities, control groups, one device (数采仪) per eight
circuits, and monitoring points with plausible ratings and thresholds (start/stop at 20 % of
rated power for production points and 10 % for control points, as in supervision.md §2.1).

A configurable share of enterprises carries each kind of archive defect, drawn
independently, so that the data-quality checks have something to find:

| defect | what is planted |
|---|---|
| `missing_total_meter` | no total-line (总电) point |
| `control_without_point` | one control facility has no point |
| `missing_threshold` | the control points have no start/stop threshold |
| `bad_credit_code` | the credit code is empty (half) or has a wrong check character |
| `industry_not_class` | the industry code is a division or group, not a 4-digit class |

Everything, ids and MNs included, follows from the seed; device passwords are
`ecowatt_kernel.synthetic.device_password(seed, mn)`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ecowatt_registry.reference import tables
from ecowatt_registry.validation import CREDIT_CODE_ALPHABET, credit_code_check_digit

DEFECTS = (
    "missing_total_meter",
    "control_without_point",
    "missing_threshold",
    "bad_credit_code",
    "industry_not_class",
)
CIRCUITS_PER_DEVICE = 8


@dataclass(frozen=True)
class CityOptions:
    """What to generate."""

    enterprises: int = 200
    seed: int = 20241
    defect_share: float = 0.05


@dataclass(frozen=True)
class IndustryProfile:
    code: str
    key_industry: str | None
    word: str
    production: tuple[tuple[str, float, float], ...]  # name, rated kW low, high
    control: tuple[tuple[str, str], ...]  # name, control type
    process: str


INDUSTRIES: tuple[tuple[IndustryProfile, float], ...] = (
    (
        IndustryProfile(
            "3360",
            "工业涂装",
            "表面处理",
            (("喷涂线", 30, 90), ("烘干固化炉", 40, 150), ("前处理线", 15, 60)),
            (("喷漆废气处理", "活性炭吸附+催化燃烧"), ("水帘柜", "水帘除漆雾")),
            "前处理-喷涂-烘干",
        ),
        0.16,
    ),
    (
        IndustryProfile(
            "3391",
            "铸造",
            "铸造",
            (("中频感应电炉", 250, 1000), ("砂处理线", 30, 110), ("抛丸清理机", 15, 55)),
            (("熔炼除尘器", "布袋除尘"), ("抛丸除尘器", "脉冲滤筒除尘")),
            "熔炼-浇注-清理",
        ),
        0.12,
    ),
    (
        IndustryProfile(
            "3031",
            "砖瓦窑",
            "新型建材",
            (("隧道窑", 90, 300), ("破碎机", 45, 160), ("砖坯成型机", 55, 180)),
            (("窑炉脱硫塔", "双碱法脱硫"), ("破碎除尘器", "布袋除尘")),
            "破碎-成型-焙烧",
        ),
        0.10,
    ),
    (
        IndustryProfile(
            "3021",
            "水泥制品",
            "建材制品",
            (("混凝土搅拌站", 75, 250), ("砌块成型机", 30, 110)),
            (("料仓除尘器", "布袋除尘"), ("喷淋降尘系统", "喷淋降尘")),
            "配料-搅拌-成型",
        ),
        0.12,
    ),
    (
        IndustryProfile(
            "2110",
            "家具制造",
            "家具",
            (("开料锯", 7.5, 30), ("砂光机", 15, 55), ("喷漆房", 20, 75)),
            (("木粉除尘器", "布袋除尘"), ("喷漆废气处理", "活性炭吸附")),
            "开料-砂光-喷漆",
        ),
        0.12,
    ),
    (
        IndustryProfile(
            "2319",
            "包装印刷",
            "印务包装",
            (("凹版印刷机", 45, 160), ("复合机", 30, 90), ("覆膜机", 11, 37)),
            (("VOCs 处理装置", "沸石转轮+RTO"), ("集气活性炭箱", "活性炭吸附")),
            "印刷-复合-分切",
        ),
        0.12,
    ),
    (
        IndustryProfile(
            "8111",
            None,
            "汽车维修",
            (("烤漆房", 15, 45), ("打磨工位", 4, 15)),
            (("烤漆房废气处理", "过滤棉+活性炭吸附"),),
            "打磨-喷漆-烘烤",
        ),
        0.14,
    ),
    (
        IndustryProfile(
            "2641",
            "涂料",
            "化工",
            (("反应釜", 30, 110), ("分散研磨机", 22, 75), ("灌装线", 7.5, 22)),
            (("RTO 焚烧炉", "蓄热式热力焚烧"), ("碱液喷淋塔", "碱液喷淋")),
            "配料-反应-灌装",
        ),
        0.12,
    ),
)

_DISTRICT_WEIGHTS = {
    "610102": 1,
    "610103": 1,
    "610104": 2,
    "610111": 6,
    "610112": 8,
    "610113": 3,
    "610114": 6,
    "610115": 5,
    "610116": 8,
    "610117": 7,
    "610118": 6,
    "610122": 3,
    "610124": 3,
}
_SYLLABLES = "华秦长安泰鑫宏瑞丰恒达兴盛源通远信诚德佳美新博航润凯嘉明金汇"
_SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"
_ROADS = ("工业", "建设", "科技", "发展", "创业", "振兴", "纬二", "经三", "兴业", "产业")
_OM_COMPANIES = ("西安环安运维有限公司", "陕西清源环境技术有限公司", "西安蓝天监测服务有限公司")
_CT_RATIOS = (1.0, 10.0, 20.0, 40.0, 80.0, 160.0)


@dataclass
class City:
    """The generated archive: states by entity type, and which enterprises got which defect."""

    options: CityOptions
    states: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    defects: dict[str, set[str]] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return len(self.states.get(kind, []))


def _credit_code(rng: random.Random, district: str, used: set[str]) -> str:
    while True:
        body = "91" + district + "".join(rng.choice(CREDIT_CODE_ALPHABET) for _ in range(9))
        code = body + credit_code_check_digit(body)
        if code not in used:
            used.add(code)
            return code


def _wrong_check(code: str) -> str:
    right = code[17]
    wrong = CREDIT_CODE_ALPHABET[(CREDIT_CODE_ALPHABET.index(right) + 7) % 31]
    return code[:17] + wrong


def _round(value: float, step: float = 0.1) -> float:
    return round(round(value / step) * step, 4)


def _ct_ratio(rated_kw: float) -> float:
    # Direct metering up to ~40 A; above that a CT whose secondary is 5 A.
    amps = rated_kw * 1000 / (math.sqrt(3) * 380 * 0.85)
    for ratio in _CT_RATIOS:
        if amps <= ratio * 5 * 0.8 or ratio == _CT_RATIOS[-1]:
            return ratio if amps > 40 else 1.0
    return 1.0


def generate_city(options: CityOptions) -> City:
    """The archive of the city of `options.seed`; the same options give the same city."""
    rng = random.Random(options.seed)
    city = City(options=options, defects={d: set() for d in DEFECTS})
    s: dict[str, list[dict[str, Any]]] = {
        k: []
        for k in ("enterprise", "production_line", "facility", "device", "point", "control_group")
    }
    city.states = s
    counties = list(_DISTRICT_WEIGHTS)
    weights = [_DISTRICT_WEIGHTS[c] for c in counties]
    zones = list(tables.zones())
    profiles = [p for p, _ in INDUSTRIES]
    profile_weights = [w for _, w in INDUSTRIES]
    used_codes: set[str] = set()
    used_names: set[str] = set()
    used_mns: set[str] = set()
    prefix = f"syn{options.seed}"
    base_time = datetime(2022, 1, 1, tzinfo=UTC)

    for index in range(1, options.enterprises + 1):
        eid = f"{prefix}-E{index:05d}"
        profile = rng.choices(profiles, profile_weights)[0]
        district = rng.choices(counties, weights)[0]
        defects = {d for d in DEFECTS if rng.random() < options.defect_share}
        for d in defects:
            city.defects[d].add(eid)
        name = ""
        while not name or name in used_names:
            name = (
                "西安"
                + "".join(rng.choice(_SYLLABLES) for _ in range(2))
                + profile.word
                + "有限公司"
            )
            if name in used_names:
                name = name.replace("有限公司", f"{rng.randint(2, 99)}厂有限公司")
        used_names.add(name)
        credit_code: str | None = _credit_code(rng, district, used_codes)
        if "bad_credit_code" in defects:
            credit_code = None if rng.random() < 0.5 else _wrong_check(credit_code or "")
        industry: str = profile.code
        if "industry_not_class" in defects:
            industry = profile.code[:2] if rng.random() < 0.5 else profile.code[:3]
        grade = "none"
        if profile.key_industry:
            grade = rng.choices(["A", "B", "C", "D", "leading"], [7, 20, 30, 40, 3])[0]
        status = rng.choices(["normal", "suspended", "closed"], [92, 6, 2])[0]
        county = tables.county(district)
        contacts = [
            {
                "name": rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(_GIVEN),
                "phone": "1"
                + rng.choice("3589")
                + "".join(rng.choice("0123456789") for _ in range(9)),
                "role": role,
                "notify": True,
            }
            for role in ("环保负责人", "法人代表")[: rng.randint(1, 2)]
        ]
        s["enterprise"].append(
            {
                "id": eid,
                "name": name,
                "credit_code": credit_code,
                "district_code": district,
                "zone": rng.choice(zones) if rng.random() < 0.35 else None,
                "town": None,
                "address": f"{county.name if county else ''}{rng.choice(_ROADS)}路"
                f"{rng.randint(1, 999)}号",
                "longitude": _round(108.94 + rng.uniform(-0.35, 0.35), 0.000001),
                "latitude": _round(34.30 + rng.uniform(-0.25, 0.25), 0.000001),
                "industry_code": industry,
                "key_industry": profile.key_industry or "其他行业",
                "performance_grade": grade,
                "performance_grade_since": date(2023, 1, 1) + timedelta(days=rng.randint(0, 700))
                if grade != "none"
                else None,
                "control_type": rng.choices(["常规管控", "民生保障", "重点管控"], [85, 5, 10])[0],
                "exempt": rng.random() < 0.03,
                "production_status": status,
                "om_company": rng.choice(_OM_COMPANIES),
                "contacts": contacts,
            }
        )

        lines = [f"{eid}-L{n}" for n in range(1, rng.choices([1, 2], [75, 25])[0] + 1)]
        for n, line_id in enumerate(lines, start=1):
            s["production_line"].append(
                {
                    "id": line_id,
                    "enterprise_id": eid,
                    "name": f"{n}号生产线",
                    "process": profile.process,
                }
            )
        production: list[tuple[str, float]] = []
        for n in range(1, rng.randint(3, 6) + 1):
            fname, low, high = profile.production[(n - 1) % len(profile.production)]
            rated = _round(rng.uniform(low, high), 0.5)
            fid = f"{eid}-PF{n:02d}"
            production.append((fid, rated))
            s["facility"].append(
                {
                    "id": fid,
                    "enterprise_id": eid,
                    "kind": "production",
                    "name": f"{fname}{(n - 1) // len(profile.production) + 1}#",
                    "code": f"MF{n:04d}",
                    "production_line_id": lines[(n - 1) % len(lines)],
                    "process": fname,
                    "control_type": None,
                    "rated_kw": rated,
                    "status": "active",
                }
            )
        control: list[tuple[str, float]] = []
        for n in range(1, rng.randint(1, 4) + 1):
            cname, ctype = profile.control[(n - 1) % len(profile.control)]
            rated = _round(rng.uniform(11, 75), 0.5)
            cid = f"{eid}-CF{n:02d}"
            control.append((cid, rated))
            s["facility"].append(
                {
                    "id": cid,
                    "enterprise_id": eid,
                    "kind": "control",
                    "name": f"{cname}{(n - 1) // len(profile.control) + 1}#",
                    "code": f"TA{n:04d}",
                    "production_line_id": None,
                    "process": None,
                    "control_type": ctype,
                    "rated_kw": rated,
                    "status": "active",
                }
            )

        # Control groups: split production facilities into up to as many groups as controls.
        groups = min(len(control), rng.randint(1, 2))
        for g in range(groups):
            members = [f for i, (f, _) in enumerate(production) if i % groups == g]
            controls = [c for i, (c, _) in enumerate(control) if i % groups == g]
            s["control_group"].append(
                {
                    "id": f"{eid}-G{g + 1}",
                    "enterprise_id": eid,
                    "name": f"{g + 1}号治理线",
                    "production_facility_ids": members,
                    "control_facility_ids": controls,
                    "required_mode": "all" if len(controls) == 1 or rng.random() < 0.7 else "any",
                    "start_lead_min": rng.choice([5, 10, 15]),
                    "stop_lag_min": rng.choice([5, 10, 15]),
                    "valid_from": date(2023, 1, 1) + timedelta(days=rng.randint(0, 365)),
                    "valid_to": None,
                }
            )

        # Points, in circuit order: total line, production, control (fan + sometimes pump), aux.
        planned: list[dict[str, Any]] = []
        total_rated = sum(r for _, r in production) + sum(r for _, r in control)
        if "missing_total_meter" not in defects:
            planned.append(
                {
                    "point_type": "total",
                    "facility_id": None,
                    "name": "企业总电",
                    "rated_kw": _round(total_rated * 1.15, 0.5),
                    "is_key": True,
                }
            )
        for fid, rated in production:
            planned.append(
                {
                    "point_type": "production",
                    "facility_id": fid,
                    "rated_kw": rated,
                    "name": "产污设施电表",
                    "is_key": True,
                }
            )
        skipped = rng.choice(control)[0] if "control_without_point" in defects else None
        for cid, rated in control:
            if cid == skipped:
                continue
            planned.append(
                {
                    "point_type": "control",
                    "facility_id": cid,
                    "name": "主风机",
                    "rated_kw": rated,
                    "is_key": True,
                }
            )
            if rng.random() < 0.5:
                planned.append(
                    {
                        "point_type": "control",
                        "facility_id": cid,
                        "name": "循环水泵",
                        "rated_kw": _round(rng.uniform(3, 15), 0.5),
                        "is_key": False,
                    }
                )
        if rng.random() < 0.3:
            planned.append(
                {
                    "point_type": "indirect",
                    "facility_id": None,
                    "name": "辅助用电",
                    "rated_kw": _round(rng.uniform(5, 30), 0.5),
                    "is_key": False,
                }
            )

        devices = max(1, math.ceil(len(planned) / CIRCUITS_PER_DEVICE))
        mns = []
        for _ in range(devices):
            mn = ""
            while not mn or mn in used_mns:
                mn = f"{rng.getrandbits(96):024X}"
            used_mns.add(mn)
            mns.append(mn)
            s["device"].append(
                {
                    "mn": mn,
                    "enterprise_id": eid,
                    "name": f"{name[:8]}数采仪{len(mns)}",
                    "protocol_version": "2017",
                    "electricity_profile": "ecowatt-default",
                    "crc_variant": "standard",
                    "status": "active",
                    "rtd_interval_s": 60,
                }
            )
        commissioned = base_time + timedelta(seconds=rng.randint(0, 3 * 365 * 86400))
        for n, point in enumerate(planned):
            rated = point["rated_kw"]
            ratio = 0.2 if point["point_type"] in ("production", "total") else 0.1
            threshold: float | None = _round(max(rated * ratio, 0.5))
            if point["point_type"] == "control" and "missing_threshold" in defects:
                threshold = None
            low_load = (
                _round(rated * 0.3)
                if point["point_type"] == "control" and point["is_key"] and threshold is not None
                else None
            )
            s["point"].append(
                {
                    "id": f"{eid}-P{n + 1:02d}",
                    "enterprise_id": eid,
                    "facility_id": point["facility_id"],
                    "point_type": point["point_type"],
                    "name": point["name"],
                    "is_key": point["is_key"],
                    "device_mn": mns[n // CIRCUITS_PER_DEVICE],
                    "circuit": n % CIRCUITS_PER_DEVICE + 1,
                    "ct_ratio": _ct_ratio(rated),
                    "pt_ratio": 1.0,
                    "rated_kw": rated,
                    "max_load_kw": _round(rated * rng.uniform(0.85, 1.0)),
                    "start_stop_kw": threshold,
                    "low_load_kw": low_load,
                    "commissioned_at": commissioned,
                    "status": "active",
                    "expected_interval_s": 60,
                }
            )
    return city
