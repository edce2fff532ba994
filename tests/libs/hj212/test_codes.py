"""Code dictionary and the 2005 -> 2017 mapping."""

from __future__ import annotations

import pytest
from ecowatt_hj212 import code_from_2005, lookup_code


@pytest.mark.parametrize(
    ("legacy", "code"),
    [("B01", "w00000"), ("011", "w01018"), ("060", "w21003"), ("B02", "a00000"), ("02", "a21026")],
)
def test_2005_codes_map_to_2017(legacy: str, code: str) -> None:
    assert code_from_2005(legacy) == code


def test_unknown_legacy_code() -> None:
    assert code_from_2005("999") is None


def test_lookup_exact_family_and_facility_codes() -> None:
    so2 = lookup_code("a21026")
    assert so2 is not None and so2.name_zh == "二氧化硫" and so2.unit == "mg/m3"
    fan = lookup_code("g10203")
    assert fan is not None and fan.code == "g102xx" and fan.unit == "A"
    assert fan.kind == "process_current"
    state = lookup_code("g10101")
    assert state is not None and state.kind == "process_state"
    facility = lookup_code("SB3")
    assert facility is not None and facility.kind == "facility"
    energy = lookup_code("i33201")
    assert energy is not None and energy.unit == "kWh"
    assert lookup_code("O3") is None and lookup_code("g999xx") is None
