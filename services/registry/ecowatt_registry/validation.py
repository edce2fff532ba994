"""Field rules of the archive: credit codes, district, zone and industry codes, device MNs.

Each check returns None when the value is acceptable, otherwise a short English reason;
the API turns it into a 422 problem for the field and the Excel import into a Chinese
message for the cell.
"""

from __future__ import annotations

import re

from ecowatt_registry.reference import tables

# GB 32100-2015: digits and upper-case letters except I, O, Z, S, V; a character's value is
# its index in this alphabet.
CREDIT_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_CREDIT_CODE_SHAPE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")
_MN_SHAPE = re.compile(r"^[0-9A-Za-z_-]{1,24}$")
_ID_SHAPE = re.compile(r"^[0-9A-Za-z_.:-]{1,64}$")


def credit_code_check_digit(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters of a credit code."""
    total = sum(
        CREDIT_CODE_ALPHABET.index(char) * weight
        for char, weight in zip(first17, _CREDIT_CODE_WEIGHTS, strict=True)
    )
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def credit_code_problem(code: str) -> str | None:
    """Why `code` is not a valid unified social credit code (GB 32100), or None."""
    if len(code) != 18:
        return f"must be 18 characters, got {len(code)}"
    bad = sorted({c for c in code if c not in CREDIT_CODE_ALPHABET})
    if bad:
        return "contains characters not allowed (I, O, Z, S, V and lower case are not): " + "".join(
            bad
        )
    if not _CREDIT_CODE_SHAPE.match(code):
        return "characters 3-8 must be digits (the GB/T 2260 area code)"
    expected = credit_code_check_digit(code[:17])
    if code[17] != expected:
        return f"check character is {code[17]}, expected {expected}"
    return None


def is_valid_credit_code(code: str | None) -> bool:
    """True for a well-formed credit code with a correct check character."""
    return code is not None and credit_code_problem(code) is None


def district_problem(code: str) -> str | None:
    """Why `code` is not a county-level GB/T 2260 code of Shaanxi, or None."""
    if tables.county(code) is None:
        known = tables.divisions().get(code)
        if known is not None:
            return f"{code} is a {known.level} code; give a county-level (区县) code"
        return f"{code} is not a GB/T 2260 county-level code of Shaanxi"
    return None


def zone_problem(code: str) -> str | None:
    """Why `code` is not a known management zone, or None."""
    return None if code in tables.zones() else f"unknown management zone {code}"


def industry_problem(code: str) -> str | None:
    """Why `code` is not a GB/T 4754-2017 code, or None (any level is accepted)."""
    return None if code in tables.industries() else f"{code} is not a GB/T 4754-2017 code"


def mn_problem(mn: str) -> str | None:
    """Why `mn` cannot be a device MN (HJ 212: up to 24 characters), or None."""
    if not _MN_SHAPE.match(mn):
        return "MN must be 1-24 letters, digits, '_' or '-'"
    return None


def id_problem(value: str) -> str | None:
    """Why `value` cannot be an entity id, or None."""
    if not _ID_SHAPE.match(value):
        return "id must be 1-64 letters, digits, '_', '.', ':' or '-'"
    return None


def credit_code_problem_zh(code: str) -> str | None:
    """`credit_code_problem` in Chinese, for the Excel error report."""
    if len(code) != 18:
        return f"统一社会信用代码应为 18 位，实际 {len(code)} 位"
    if any(c not in CREDIT_CODE_ALPHABET for c in code):
        return "统一社会信用代码含有不允许的字符（不使用 I、O、Z、S、V 和小写字母）"
    if not _CREDIT_CODE_SHAPE.match(code):
        return "统一社会信用代码第 3-8 位应为数字（行政区划码）"
    expected = credit_code_check_digit(code[:17])
    if code[17] != expected:
        return f"统一社会信用代码校验位错误：应为 {expected}，实际为 {code[17]}"
    return None
