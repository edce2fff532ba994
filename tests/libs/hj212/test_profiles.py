"""Electricity profiles (data files) and the lookup API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ecowatt_hj212 as hj212
import pytest
from ecowatt_hj212 import Binding, Profile, Quantity, get_profile, profile_names


def test_built_in_profiles() -> None:
    assert set(profile_names()) == {
        "ecowatt-default",
        "hj212-2017-process",
        "hj212-2025-d-provisional",
    }
    assert get_profile().name == "ecowatt-default"
    assert get_profile("hj212-2025-d-provisional").provisional
    assert "PROVISIONAL" in get_profile("hj212-2025-d-provisional").title
    assert not get_profile("hj212-2017-process").provisional


@pytest.mark.parametrize(
    ("code", "suffix", "quantity", "unit", "circuit", "phase", "aggregate"),
    [
        ("xe0101", "Rtd", Quantity.ACTIVE_POWER_KW, "kW", 1, None, "instant"),
        ("xe0112", "Avg", Quantity.ACTIVE_POWER_KW, "kW", 12, None, "avg"),
        ("xe0200", "Rtd", Quantity.ENERGY_TOTAL_KWH, "kWh", 0, None, "instant"),
        ("xe0203", "Cou", Quantity.ENERGY_INTERVAL_KWH, "kWh", 3, None, "interval_total"),
        ("xe0399", "Min", Quantity.POWER_FACTOR, "1", 99, None, "min"),
        ("xe0405", "Rtd", Quantity.SWITCH_STATE, "1", 5, None, "instant"),
        ("xe1101", "Rtd", Quantity.CURRENT_A, "A", 1, "A", "instant"),
        ("xe1202", "Max", Quantity.CURRENT_A, "A", 2, "B", "max"),
        ("xe1303", "Rtd", Quantity.CURRENT_A, "A", 3, "C", "instant"),
        ("xe2101", "Rtd", Quantity.VOLTAGE_V, "V", 1, "A", "instant"),
        ("xe2207", "Avg", Quantity.VOLTAGE_V, "V", 7, "B", "avg"),
        ("xe2399", "Rtd", Quantity.VOLTAGE_V, "V", 99, "C", "instant"),
    ],
)
def test_default_profile_resolves(
    code: str,
    suffix: str,
    quantity: Quantity,
    unit: str,
    circuit: int,
    phase: str | None,
    aggregate: str,
) -> None:
    binding = get_profile().resolve(code, suffix)
    assert binding is not None
    assert (binding.quantity, binding.unit, binding.circuit, binding.phase, binding.aggregate) == (
        quantity,
        unit,
        circuit,
        phase,
        aggregate,
    )


@pytest.mark.parametrize(
    ("code", "suffix"),
    [
        ("xe0101", "Flag"),
        ("xe0201", "Avg"),
        ("xe0501", "Rtd"),
        ("a21026", "Rtd"),
        ("xe01100", "Rtd"),
    ],
)
def test_default_profile_leaves_other_items_unbound(code: str, suffix: str) -> None:
    assert get_profile().resolve(code, suffix) is None


def test_default_codes_never_collide_with_the_code_dictionary() -> None:
    for (code, _), _binding in get_profile():
        assert hj212.lookup_code(code) is None
        assert not code.startswith(("a", "w", "e", "g", "i", "d", "p", "SB"))


def test_code_for_and_key_for_are_inverse_to_resolve() -> None:
    profile = get_profile()
    assert profile.code_for(Quantity.ACTIVE_POWER_KW, 1) == "xe0101"
    assert profile.code_for("current_a", 4, phase="B") == "xe1204"
    assert profile.code_for(Quantity.ENERGY_INTERVAL_KWH, 2) == "xe0202"
    assert (
        profile.key_for(Quantity.ENERGY_INTERVAL_KWH, 2, aggregate="interval_total") == "xe0202-Cou"
    )
    assert profile.key_for(Quantity.VOLTAGE_V, 3, phase="C", aggregate="avg") == "xe2303-Avg"
    assert profile.code_for(Quantity.CURRENT_A, 1) is None  # currents are per phase here
    assert profile.code_for("no-such-quantity", 1) is None
    assert profile.key_for(Quantity.SWITCH_STATE, 1, aggregate="avg") is None
    for (code, suffix), binding in profile:
        key = profile.key_for(
            binding.quantity, binding.circuit, phase=binding.phase, aggregate=binding.aggregate
        )
        assert key == f"{code}-{suffix}"


@pytest.mark.parametrize(
    ("code", "suffix", "quantity", "circuit"),
    [
        ("g10203", "Rtd", Quantity.CURRENT_A, 3),
        ("e30101", "Avg", Quantity.CURRENT_A, 1),
        ("g10101", "Rtd", Quantity.SWITCH_STATE, 1),
        ("SB2", "RS", Quantity.RUN_STATE, 2),
        ("SB12", "RT", Quantity.RUN_TIME_H, 12),
        ("i33201", "Info", Quantity.ENERGY_TOTAL_KWH, None),
        ("i33202", "Info", Quantity.ENERGY_INTERVAL_KWH, None),
        ("i33200", "Info", Quantity.CURRENT_A, None),
    ],
)
def test_2017_process_profile(
    code: str, suffix: str, quantity: Quantity, circuit: int | None
) -> None:
    binding = get_profile("hj212-2017-process").resolve(code, suffix)
    assert binding is not None and binding.quantity is quantity and binding.circuit == circuit


def test_provisional_2025_profile_binds_the_constructed_sample(
    sample_records: list[dict[str, Any]],
) -> None:
    record = next(r for r in sample_records if ";ST=44;" in r["frame"])
    frame = hj212.decode(record["frame"])
    readings = get_profile("hj212-2025-d-provisional").readings(frame.codes)
    found = {(r.code, r.binding.quantity, r.binding.phase, r.binding.circuit) for r in readings}
    assert ("d20105", Quantity.VOLTAGE_V, "A", 5) in found
    assert ("d20405", Quantity.CURRENT_A, None, 5) in found
    assert ("d30106", Quantity.VOLTAGE_V, "A", 6) in found
    assert len(readings) == 6 and all(r.flag == "N" for r in readings)


def test_readings_bind_values_and_flags(frame_of: Callable[..., bytes]) -> None:
    frame = hj212.decode(
        frame_of(
            "ST=31;CN=2011;CP=&&DataTime=20250601084500;xe0101-Rtd=12.5,xe0101-Flag=D;zz-Rtd=1&&"
        )
    )
    (reading,) = get_profile().readings(frame.codes)
    assert (reading.code, reading.suffix, reading.value, reading.flag) == (
        "xe0101",
        "Rtd",
        "12.5",
        "D",
    )
    assert reading.binding.quantity is Quantity.ACTIVE_POWER_KW


def test_unknown_profile_raises() -> None:
    with pytest.raises(hj212.ProfileError) as error:
        get_profile("nope")
    assert error.value.reason is hj212.Reason.PROFILE_UNKNOWN


@pytest.mark.parametrize(
    "data",
    [
        {"name": "x"},
        {
            "name": "x",
            "rules": [
                {
                    "code": "c{nn}",
                    "circuits": [0, 100],
                    "quantity": "current_a",
                    "unit": "A",
                    "suffixes": {"Rtd": "instant"},
                }
            ],
        },
        {
            "name": "x",
            "rules": [
                {"code": "c", "quantity": "watts", "unit": "W", "suffixes": {"Rtd": "instant"}}
            ],
        },
        {
            "name": "x",
            "rules": [
                {
                    "code": "c",
                    "circuits": [1, 2],
                    "quantity": "current_a",
                    "unit": "A",
                    "suffixes": {"Rtd": "instant"},
                }
            ],
        },
        {
            "name": "x",
            "rules": [
                {"code": "c", "quantity": "current_a", "unit": "A", "suffixes": {"Rtd": "instant"}}
            ]
            * 2,
        },
    ],
)
def test_invalid_profile_data_raises_profile_error(data: dict[str, Any]) -> None:
    with pytest.raises(hj212.ProfileError):
        Profile.from_dict(data)


def test_custom_profile_from_dict() -> None:
    profile = Profile.from_dict(
        {
            "name": "site-7",
            "rules": [
                {
                    "code": "e700",
                    "quantity": "energy_total_kwh",
                    "unit": "kWh",
                    "suffixes": {"Rtd": "instant"},
                },
                {
                    "code": "ele{n}",
                    "circuits": [1, 2],
                    "quantity": "switch_state",
                    "unit": "1",
                    "suffixes": {"Rtd": "instant"},
                },
            ],
        }
    )
    assert profile.resolve("e700", "Rtd") == Binding(
        Quantity.ENERGY_TOTAL_KWH, "kWh", None, None, "instant", ""
    )
    assert profile.code_for(Quantity.SWITCH_STATE, 2) == "ele2"
    assert len(profile) == 3
