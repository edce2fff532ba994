"""The archive workbook: one sheet per entity, Chinese headers, and how cells map to fields.

Enumerations are written as Chinese labels and read from either the label or the API value;
times are local time of the deployment (Asia/Shanghai by default) without a zone, as Excel
has none. Columns marked `export_only` (names derived from codes) are ignored on import.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from ecowatt_kernel.excel import Column
from ecowatt_kernel.times import deployment_zone, localise

from ecowatt_registry.reference import tables


class CellValueError(ValueError):
    """A cell that cannot be read; the message is Chinese."""


def _text(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip() or None


def _number(value: Any) -> Any:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CellValueError(f"“{value}”不是数字") from None


def _integer(value: Any) -> Any:
    number = _number(value)
    if number is None:
        return None
    if not float(number).is_integer():
        raise CellValueError(f"“{value}”不是整数")
    return int(number)


_TRUE = {"是", "true", "1", "y", "yes", "TRUE", "True"}
_FALSE = {"否", "false", "0", "n", "no", "FALSE", "False"}


def _boolean(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise CellValueError(f"“{value}”应为“是”或“否”")


def _bool_cell(value: Any) -> Any:
    return None if value is None else ("是" if value else "否")


def _enum(
    labels: dict[str, str], aliases: dict[str, str] | None = None
) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    by_label = {label: value for value, label in labels.items()} | (aliases or {})

    def parse(cell: Any) -> Any:
        if cell is None:
            return None
        text = str(cell).strip()
        if text in labels:
            return text
        if text in by_label:
            return by_label[text]
        raise CellValueError(f"“{cell}”不是有效值，可选：{'、'.join(labels.values())}")

    return parse, lambda value: labels.get(value, value) if value is not None else None


def _date(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip().replace("/", "-"))
    except ValueError:
        raise CellValueError(f"“{value}”不是日期（格式 2024-06-30）") from None


def _datetime(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        local = value
    elif isinstance(value, date):
        local = datetime(value.year, value.month, value.day)
    else:
        try:
            local = datetime.fromisoformat(str(value).strip().replace("/", "-"))
        except ValueError:
            raise CellValueError(f"“{value}”不是时间（格式 2024-06-30 08:00:00）") from None
    try:
        local = localise(local)  # without an offset: local time of the deployment, as the API
    except ValueError as exc:
        raise CellValueError(f"“{value}”超出可用范围：{exc}") from None
    # Excel keeps whole seconds (rounded): so must the archive, for round trips to hold.
    seconds = round(local.timestamp())
    return datetime.fromtimestamp(seconds, UTC)


def _datetime_cell(value: Any) -> Any:
    return value.astimezone(deployment_zone()).replace(tzinfo=None) if value is not None else None


_SPLIT = re.compile(r"[、,，;；\s]+")


def _id_list(value: Any) -> Any:
    if value is None:
        return []
    return [part for part in _SPLIT.split(str(value)) if part]


def _id_list_cell(value: Any) -> Any:
    return "、".join(value) if value else None


def _contacts(value: Any) -> Any:
    """`姓名/电话/角色；姓名/电话` → contact dicts."""
    if value is None:
        return []
    contacts = []
    for part in re.split(r"[;；\n]+", str(value)):
        if not part.strip():
            continue
        name, phone, role, *_ = [*(p.strip() or None for p in part.split("/")), None, None, None]
        if not name:
            raise CellValueError(f"联系人“{part}”缺少姓名（格式：姓名/电话/角色）")
        contacts.append({"name": name, "phone": phone, "role": role, "notify": True})
    return contacts


def _contacts_cell(value: Any) -> Any:
    if not value:
        return None
    return "；".join(
        "/".join(p for p in (c.get("name"), c.get("phone") or "", c.get("role") or "")).rstrip("/")
        for c in value
    )


def _zone(value: Any) -> Any:
    text = _text(value)
    if text is None:
        return None
    return tables.zone_codes_by_name().get(text, text)


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class CellField:
    """A column of a sheet and how to read and write its cells."""

    column: Column
    parse: Callable[[Any], Any] = _text
    render: Callable[[Any], Any] = _identity
    export_only: bool = False
    import_only: bool = False

    @property
    def key(self) -> str:
        return self.column.key


def _col(
    key: str,
    header: str,
    *,
    required: bool = False,
    width: int = 14,
    note: str = "",
    choices: tuple[str, ...] = (),
) -> Column:
    return Column(key, header, required=required, width=width, note=note, choices=choices)


GRADES = {"A": "A", "B": "B", "C": "C", "D": "D", "leading": "引领性", "none": "未分级"}
PRODUCTION_STATUS = {"normal": "正常", "suspended": "停产", "closed": "关停"}
STATUS = {"active": "在用", "disabled": "停用", "removed": "拆除"}
FACILITY_KINDS = {"production": "产污设施", "control": "治污设施"}
POINT_TYPES = {
    "total": "总电",
    "production": "产污",
    "control": "治污",
    "indirect": "间接",
    "combined": "产治一体",
}
POINT_TYPE_ALIASES = {
    "企业总电": "total",
    "产污设施": "production",
    "治污设施": "control",
    "间接用电": "indirect",
}
MODES = {"all": "全部", "any": "任一"}
CRC = {"standard": "标准", "modbus_hi_lo": "Modbus高低", "modbus_lo_hi": "Modbus低高"}


def _enum_field(
    key: str,
    header: str,
    labels: dict[str, str],
    *,
    required: bool = False,
    aliases: dict[str, str] | None = None,
    note: str = "",
) -> CellField:
    parse, render = _enum(labels, aliases)
    return CellField(
        _col(key, header, required=required, choices=tuple(labels.values()), note=note),
        parse,
        render,
    )


def _derived_district(row: dict[str, Any]) -> Any:
    county = tables.county(row.get("district_code"))
    return county.name if county else None


def _derived_industry(row: dict[str, Any]) -> Any:
    entry = tables.industries().get(row.get("industry_code") or "")
    return entry.name if entry else None


DERIVED: dict[str, Callable[[dict[str, Any]], Any]] = {
    "district_name": _derived_district,
    "industry_name": _derived_industry,
}


@dataclass(frozen=True)
class SheetSpec:
    """One sheet of the archive workbook."""

    kind: str
    title: str
    pk: str
    fields: tuple[CellField, ...]

    @property
    def columns(self) -> list[Column]:
        return [f.column for f in self.fields]

    def field(self, key: str) -> CellField:
        return next(f for f in self.fields if f.key == key)


ENTERPRISE_SHEET = SheetSpec(
    "enterprise",
    "企业",
    "id",
    (
        CellField(
            _col("id", "企业编号", required=True, note="本工作簿内唯一；其他工作表用它指向企业")
        ),
        CellField(_col("name", "企业名称", required=True, width=30)),
        CellField(_col("credit_code", "统一社会信用代码", width=22, note="18 位，GB 32100 校验位")),
        CellField(
            _col("district_code", "区县代码", required=True, note="GB/T 2260 区县级代码，如 610113")
        ),
        CellField(
            _col("district_name", "区县名称", note="导出时填写，导入时忽略"), export_only=True
        ),
        CellField(_col("zone", "管理片区", note="片区代码或名称，如 XA-GX 或 高新区"), _zone),
        CellField(_col("town", "街乡镇")),
        CellField(_col("address", "详细地址", width=30)),
        CellField(_col("longitude", "经度", note="WGS-84"), _number),
        CellField(_col("latitude", "纬度", note="WGS-84"), _number),
        CellField(_col("industry_code", "行业代码", note="GB/T 4754-2017 小类（4 位）")),
        CellField(
            _col("industry_name", "行业名称", width=20, note="导出时填写，导入时忽略"),
            export_only=True,
        ),
        CellField(_col("key_industry", "重点行业类型")),
        _enum_field(
            "performance_grade", "绩效分级", GRADES, aliases={"引领": "leading", "无": "none"}
        ),
        CellField(_col("performance_grade_since", "分级生效日期"), _date),
        CellField(_col("control_type", "管控类型")),
        CellField(_col("exempt", "是否豁免", choices=("是", "否")), _boolean, _bool_cell),
        _enum_field("production_status", "生产状态", PRODUCTION_STATUS),
        CellField(_col("om_company", "运维单位", width=20)),
        CellField(
            _col("contacts", "联系人", width=30, note="姓名/电话/角色，多人用；分隔"),
            _contacts,
            _contacts_cell,
        ),
    ),
)
LINE_SHEET = SheetSpec(
    "production_line",
    "生产线",
    "id",
    (
        CellField(_col("id", "生产线编号", required=True)),
        CellField(_col("enterprise_id", "企业编号", required=True)),
        CellField(_col("name", "生产线名称", required=True, width=24)),
        CellField(_col("process", "工艺", width=24)),
    ),
)
FACILITY_SHEET = SheetSpec(
    "facility",
    "设施",
    "id",
    (
        CellField(_col("id", "设施编号", required=True)),
        CellField(_col("enterprise_id", "企业编号", required=True)),
        _enum_field(
            "kind",
            "设施类别",
            FACILITY_KINDS,
            required=True,
            aliases={
                "产污": "production",
                "治污": "control",
                "生产设施": "production",
                "治理设施": "control",
            },
        ),
        CellField(_col("name", "设施名称", required=True, width=24)),
        CellField(_col("code", "企业内设施编码")),
        CellField(_col("production_line_id", "生产线编号")),
        CellField(_col("process", "工序")),
        CellField(_col("control_type", "治理工艺", note="治污设施：如 布袋除尘、活性炭吸附")),
        CellField(_col("rated_kw", "额定功率(kW)"), _number),
        _enum_field("status", "状态", STATUS),
    ),
)
DEVICE_SHEET = SheetSpec(
    "device",
    "数采仪",
    "mn",
    (
        CellField(
            _col("mn", "MN", required=True, width=28, note="HJ 212 设备唯一标识，最多 24 位")
        ),
        CellField(_col("enterprise_id", "企业编号")),
        CellField(_col("name", "设备名称", width=20)),
        CellField(_col("protocol_version", "协议版本", choices=("2005", "2017", "2025"))),
        CellField(
            _col("electricity_profile", "电力编码方案", width=18, note="默认 ecowatt-default")
        ),
        _enum_field("crc_variant", "CRC方式", CRC),
        _enum_field("status", "状态", STATUS),
        CellField(_col("rtd_interval_s", "实时数据间隔(秒)"), _integer),
        CellField(
            _col("password", "设备密码", note="仅导入：HJ 212 PW；留空则不修改；导出时不含"),
            _text,
            import_only=True,
        ),
    ),
)
POINT_SHEET = SheetSpec(
    "point",
    "监测点位",
    "id",
    (
        CellField(_col("id", "点位编号", required=True)),
        CellField(_col("enterprise_id", "企业编号", required=True)),
        CellField(_col("name", "点位名称", required=True, width=24)),
        _enum_field(
            "point_type", "点位类型", POINT_TYPES, required=True, aliases=POINT_TYPE_ALIASES
        ),
        CellField(_col("facility_id", "设施编号", note="总电点位留空")),
        CellField(_col("is_key", "关键点位", choices=("是", "否")), _boolean, _bool_cell),
        CellField(_col("device_mn", "MN", width=28)),
        CellField(_col("circuit", "回路号", note="1-99"), _integer),
        CellField(_col("ct_ratio", "CT变比"), _number),
        CellField(_col("pt_ratio", "PT变比"), _number),
        CellField(_col("rated_kw", "额定功率(kW)"), _number),
        CellField(_col("max_load_kw", "最大负荷(kW)"), _number),
        CellField(_col("start_stop_kw", "启停阈值(kW)"), _number),
        CellField(_col("low_load_kw", "低负荷阈值(kW)"), _number),
        CellField(
            _col("commissioned_at", "联网时间", width=20, note="本地时间，如 2024-06-30 08:00:00"),
            _datetime,
            _datetime_cell,
        ),
        _enum_field("status", "状态", STATUS),
        CellField(_col("expected_interval_s", "上报间隔(秒)"), _integer),
    ),
)
GROUP_SHEET = SheetSpec(
    "control_group",
    "产治关系",
    "id",
    (
        CellField(_col("id", "关系编号", required=True)),
        CellField(_col("enterprise_id", "企业编号", required=True)),
        CellField(_col("name", "名称", width=20)),
        CellField(
            _col(
                "production_facility_ids",
                "产污设施编号",
                required=True,
                width=24,
                note="多个用、分隔",
            ),
            _id_list,
            _id_list_cell,
        ),
        CellField(
            _col(
                "control_facility_ids", "治污设施编号", required=True, width=24, note="多个用、分隔"
            ),
            _id_list,
            _id_list_cell,
        ),
        _enum_field(
            "required_mode", "联动方式", MODES, note="全部：所有治污设施须运行；任一：一台即可"
        ),
        CellField(_col("start_lead_min", "开启容差(分钟)"), _integer),
        CellField(_col("stop_lag_min", "关闭容差(分钟)"), _integer),
        CellField(_col("valid_from", "生效日期"), _date),
        CellField(_col("valid_to", "失效日期"), _date),
    ),
)

SHEETS: tuple[SheetSpec, ...] = (
    ENTERPRISE_SHEET,
    LINE_SHEET,
    FACILITY_SHEET,
    DEVICE_SHEET,
    POINT_SHEET,
    GROUP_SHEET,
)
"""Parents before children: the order of import."""
SHEET_BY_KIND = {sheet.kind: sheet for sheet in SHEETS}


def render_row(sheet: SheetSpec, row: dict[str, Any]) -> dict[str, Any]:
    """The cells of one stored row."""
    cells = {}
    for f in sheet.fields:
        if f.import_only:
            continue
        value = DERIVED[f.key](row) if f.key in DERIVED else row.get(f.key)
        cells[f.key] = f.render(value)
    return cells
