"""The HJ 212-2017 code dictionary (data file) and the 2005 -> 2017 code mapping."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """One entry of the code dictionary; ``code`` may be a family such as ``g102xx``."""

    code: str
    kind: str
    """``air``, ``water``, ``process_current``, ``process_state``, ``field_info``, ``facility``."""
    name_zh: str
    name_en: str
    unit: str
    legacy_2005: str | None


@cache
def _table() -> tuple[dict[str, CodeInfo], dict[str, str]]:
    text = (
        resources.files("ecowatt_hj212")
        .joinpath("data", "codes-2017.json")
        .read_text(encoding="utf-8")
    )
    by_code: dict[str, CodeInfo] = {}
    legacy: dict[str, str] = {}
    for row in json.loads(text)["codes"]:
        info = CodeInfo(
            code=row["code"],
            kind=row["kind"],
            name_zh=row["name_zh"],
            name_en=row["name_en"],
            unit=row["unit"],
            legacy_2005=row.get("legacy_2005"),
        )
        by_code[info.code] = info
        if info.legacy_2005:
            legacy[info.legacy_2005] = info.code
    return by_code, legacy


def lookup_code(code: str) -> CodeInfo | None:
    """Dictionary entry for a 2017 code (``a21026``, ``g10203`` → family ``g102xx``,
    ``SB3`` → ``SBx``), or ``None``."""
    by_code, _ = _table()
    found = by_code.get(code)
    if found is not None:
        return found
    if len(code) == 6 and code[4:].isdigit():
        found = by_code.get(code[:4] + "xx")
        if found is not None:
            return found
    if code.startswith("SB") and code[2:].isdigit():
        return by_code.get("SBx")
    return None


def code_from_2005(legacy_code: str) -> str | None:
    """The HJ 212-2017 code replacing an HJ/T 212-2005 code (``011`` → ``w01018``), or ``None``."""
    return _table()[1].get(legacy_code)
