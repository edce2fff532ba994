"""Reference checks on archive fields: GB 32100 credit codes, GB/T 4754-2017 classes."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, Z, S, V
_CREDIT_VALUES = {c: i for i, c in enumerate(_CREDIT_ALPHABET)}
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_CREDIT_PATTERN = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")


def credit_check_char(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters."""
    total = sum(_CREDIT_VALUES[c] * w for c, w in zip(first17, _CREDIT_WEIGHTS, strict=True))
    return _CREDIT_ALPHABET[(31 - total % 31) % 31]


def credit_code_problem(code: str) -> str | None:
    """Why `code` is not a valid unified social credit code, or None when it is."""
    if len(code) != 18:
        return f"长度应为18位，实际{len(code)}位 (length {len(code)}, expected 18)"
    if not _CREDIT_PATTERN.match(code):
        return "含非法字符或结构错误 (characters outside the GB 32100 alphabet or structure)"
    expected = credit_check_char(code[:17])
    if code[17] != expected:
        return f"校验位应为{expected}，实际{code[17]} (check digit {code[17]}, expected {expected})"
    return None


@cache
def industry_classes() -> dict[str, str]:
    """GB/T 4754-2017 classes (小类): code → name."""
    text = (
        resources.files("ecowatt_validation")
        .joinpath("data", "gbt4754-classes.tsv")
        .read_text(encoding="utf-8")
    )
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            code, _, name = line.partition("\t")
            out[code] = name
    return out
