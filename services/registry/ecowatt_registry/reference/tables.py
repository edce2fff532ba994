"""The reference tables (GB/T 2260 Shaanxi, GB/T 4754-2017, Xi'an zones), loaded once.

The CSV files in `data/` come with their provenance in `data/SOURCES.md`; lines starting
with `#` are comments.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources
from typing import Literal

IndustryLevel = Literal["section", "division", "group", "class"]


@dataclass(frozen=True)
class Division:
    """A GB/T 2260 administrative division."""

    code: str
    name: str
    level: Literal["province", "city", "county"]
    parent: str | None


@dataclass(frozen=True)
class Industry:
    """A GB/T 4754-2017 entry at any of its four levels."""

    code: str
    name: str
    level: IndustryLevel
    parent: str | None


@dataclass(frozen=True)
class Zone:
    """A Xi'an development or management zone."""

    code: str
    name: str


def _rows(filename: str) -> list[dict[str, str]]:
    text = resources.files("ecowatt_registry.reference").joinpath("data", filename).read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(lines))


@functools.cache
def divisions() -> dict[str, Division]:
    """GB/T 2260 divisions of Shaanxi by code."""
    return {
        row["code"]: Division(row["code"], row["name"], row["level"], row["parent"] or None)  # type: ignore[arg-type]
        for row in _rows("gbt2260-shaanxi.csv")
    }


@functools.cache
def industries() -> dict[str, Industry]:
    """GB/T 4754-2017 entries by code."""
    return {
        row["code"]: Industry(row["code"], row["name"], row["level"], row["parent"] or None)  # type: ignore[arg-type]
        for row in _rows("gbt4754-2017.csv")
    }


@functools.cache
def zones() -> dict[str, Zone]:
    """Xi'an zones by code."""
    return {
        row["zone_code"]: Zone(row["zone_code"], row["name"]) for row in _rows("xian-zones.csv")
    }


@functools.cache
def zone_codes_by_name() -> dict[str, str]:
    """Zone code by zone name, so that a workbook may give either."""
    return {zone.name: zone.code for zone in zones().values()}


def county(code: str | None) -> Division | None:
    """The county-level division `code`, or None when it is not one."""
    found = divisions().get(code or "")
    return found if found is not None and found.level == "county" else None


def industry_path(code: str | None) -> dict[IndustryLevel, Industry]:
    """The entry `code` and its ancestors by level ({} for an unknown code)."""
    path: dict[IndustryLevel, Industry] = {}
    table = industries()
    current = table.get(code or "")
    while current is not None:
        path[current.level] = current
        current = table.get(current.parent or "")
    return path


def xian_counties() -> list[Division]:
    """The 13 county-level units of Xi'an (610100)."""
    return [d for d in divisions().values() if d.parent == "610100" and d.level == "county"]
