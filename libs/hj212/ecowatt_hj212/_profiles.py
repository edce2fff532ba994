"""Electricity profiles: data files mapping (code, suffix) to quantity, unit and circuit."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from ._errors import ProfileError
from ._reasons import Reason


class Quantity(StrEnum):
    """Electrical quantities EcoWatt binds readings to (the unit is part of the name)."""

    ACTIVE_POWER_KW = "active_power_kw"
    ENERGY_TOTAL_KWH = "energy_total_kwh"
    """Cumulative energy counter reading."""
    ENERGY_INTERVAL_KWH = "energy_interval_kwh"
    """Energy used within the frame's interval (minute/hour/day)."""
    CURRENT_A = "current_a"
    VOLTAGE_V = "voltage_v"
    POWER_FACTOR = "power_factor"
    SWITCH_STATE = "switch_state"
    """0 off / 1 on."""
    RUN_STATE = "run_state"
    """Treatment-facility state ``SBn-RS``: 0 off, 1 running, 2 calibrating, 3 maintenance,
    4 alarm, 5 back-blowing."""
    RUN_TIME_H = "run_time_h"
    """Treatment-facility run hours per day ``SBn-RT``."""


@dataclass(frozen=True, slots=True)
class Binding:
    """What one ``code-suffix`` item means in a profile."""

    quantity: Quantity
    unit: str
    circuit: int | None
    """Circuit / equipment number; ``None`` for plant-level items."""
    phase: str | None
    """``"A"``, ``"B"``, ``"C"``, or ``None`` for totals and single values."""
    aggregate: str
    """``instant``, ``avg``, ``min``, ``max``, ``interval_total`` or ``day_total``."""
    label: str


@dataclass(frozen=True, slots=True)
class Reading:
    """A CP value bound through a profile (value and flag stay strings)."""

    code: str
    suffix: str
    value: str
    flag: str | None
    binding: Binding


class Profile:
    """A named mapping ``(code, suffix) -> Binding``, loaded from data.

    >>> profile = get_profile("ecowatt-default")
    >>> profile.resolve("xe0101", "Rtd").quantity
    <Quantity.ACTIVE_POWER_KW: 'active_power_kw'>
    >>> profile.code_for(Quantity.ACTIVE_POWER_KW, 1)
    'xe0101'
    """

    def __init__(
        self,
        *,
        name: str,
        title: str,
        provisional: bool,
        description: str,
        bindings: Mapping[tuple[str, str], Binding],
    ) -> None:
        self.name = name
        self.title = title
        self.provisional = provisional
        self.description = description
        self._bindings = dict(bindings)
        self._reverse: dict[tuple[Quantity, int | None, str | None, str], tuple[str, str]] = {}
        for (code, suffix), binding in self._bindings.items():
            index = (binding.quantity, binding.circuit, binding.phase, binding.aggregate)
            self._reverse.setdefault(index, (code, suffix))

    def __repr__(self) -> str:
        return f"<Profile {self.name!r}: {len(self._bindings)} bindings>"

    def __len__(self) -> int:
        return len(self._bindings)

    def __iter__(self) -> Iterator[tuple[tuple[str, str], Binding]]:
        return iter(self._bindings.items())

    def resolve(self, code: str, suffix: str) -> Binding | None:
        """What ``code-suffix`` means in this profile, or ``None``."""
        return self._bindings.get((code, suffix))

    def code_for(
        self, quantity: Quantity | str, circuit: int | None = None, *, phase: str | None = None
    ) -> str | None:
        """The code carrying ``quantity`` of ``circuit`` (first in profile order), or ``None``."""
        found = self._find(quantity, circuit, phase, "instant") or self._find(
            quantity, circuit, phase, None
        )
        return found[0] if found else None

    def key_for(
        self,
        quantity: Quantity | str,
        circuit: int | None = None,
        *,
        phase: str | None = None,
        aggregate: str = "instant",
    ) -> str | None:
        """The CP key (``code-Suffix``) for ``quantity`` as ``aggregate``, or ``None``."""
        found = self._find(quantity, circuit, phase, aggregate)
        return f"{found[0]}-{found[1]}" if found else None

    def _find(
        self,
        quantity: Quantity | str,
        circuit: int | None,
        phase: str | None,
        aggregate: str | None,
    ) -> tuple[str, str] | None:
        try:
            wanted = Quantity(quantity)
        except ValueError:
            return None
        if aggregate is not None:
            return self._reverse.get((wanted, circuit, phase, aggregate))
        for (q, c, p, _), found in self._reverse.items():
            if q is wanted and c == circuit and p == phase:
                return found
        return None

    def readings(self, codes: Mapping[str, Mapping[str, str]]) -> list[Reading]:
        """Bind a frame's grouped CP items (``frame.codes``); unknown items are skipped."""
        out: list[Reading] = []
        get = self._bindings.get
        for code, group in codes.items():
            flag = group.get("Flag")
            for suffix, value in group.items():
                binding = get((code, suffix))
                if binding is not None:
                    out.append(Reading(code, suffix, value, flag, binding))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """Build a profile from its JSON form (see the files in ``ecowatt_hj212/data``)."""
        try:
            bindings: dict[tuple[str, str], Binding] = {}
            for rule in data["rules"]:
                template = str(rule["code"])
                low, high = rule.get("circuits", (None, None))
                circuits: list[int | None] = (
                    [None] if low is None else list(range(int(low), int(high) + 1))
                )
                for circuit in circuits:
                    code = template if circuit is None else _fill(template, circuit)
                    for suffix, aggregate in rule["suffixes"].items():
                        if (code, suffix) in bindings:
                            raise ProfileError(
                                Reason.PROFILE_INVALID, f"{code}-{suffix} bound twice"
                            )
                        bindings[(code, str(suffix))] = Binding(
                            quantity=Quantity(rule["quantity"]),
                            unit=str(rule["unit"]),
                            circuit=circuit,
                            phase=rule.get("phase"),
                            aggregate=str(aggregate),
                            label=str(rule.get("label", "")),
                        )
            return cls(
                name=str(data["name"]),
                title=str(data.get("title", "")),
                provisional=bool(data.get("provisional", False)),
                description=str(data.get("description", "")),
                bindings=bindings,
            )
        except ProfileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProfileError(Reason.PROFILE_INVALID, f"invalid profile data: {exc!r}") from exc


def _fill(template: str, circuit: int) -> str:
    if "{nn}" in template:
        if not 0 <= circuit <= 99:
            raise ProfileError(Reason.PROFILE_INVALID, f"{template}: circuit {circuit} > 99")
        return template.replace("{nn}", f"{circuit:02d}")
    if "{n}" in template:
        return template.replace("{n}", str(circuit))
    raise ProfileError(Reason.PROFILE_INVALID, f"{template} has circuits but no {{nn}} or {{n}}")


DEFAULT_PROFILE = "ecowatt-default"
_PROFILE_FILES = {
    "ecowatt-default": "ecowatt-default.json",
    "hj212-2017-process": "hj212-2017-process.json",
    "hj212-2025-d-provisional": "hj212-2025-d-provisional.json",
}


def profile_names() -> tuple[str, ...]:
    """Names of the built-in profiles."""
    return tuple(_PROFILE_FILES)


@cache
def get_profile(name: str = DEFAULT_PROFILE) -> Profile:
    """A built-in profile by name; :class:`ProfileError` if there is none."""
    filename = _PROFILE_FILES.get(name)
    if filename is None:
        raise ProfileError(
            Reason.PROFILE_UNKNOWN, f"no profile {name!r}; known: {', '.join(_PROFILE_FILES)}"
        )
    text = (
        resources.files("ecowatt_hj212")
        .joinpath("data", "profiles", filename)
        .read_text(encoding="utf-8")
    )
    return Profile.from_dict(json.loads(text))
