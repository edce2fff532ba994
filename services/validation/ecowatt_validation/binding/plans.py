"""Binding plans: how each `code-suffix` of a device's readings maps to a point and value key.

A device's plan comes from the registry view (its electricity profile and its points by
circuit) on the device's first reading, and is dropped on any device or point change, so it
always says what `RegistryView` says now. `Planner.bind` turns one reading into the values of
each of its points (`Bound`, CT/PT applied) and the reasons of whatever did not bind.
"""

from __future__ import annotations

import math

import ecowatt_hj212 as hj212
from ecowatt_kernel.contracts import TelemetryReading
from ecowatt_kernel.contracts.registry import PointSnapshot
from ecowatt_kernel.registry_view import RegistryView

from ecowatt_validation.binding.messages import point_pieces

__all__ = ["CONSTANT_KEYS", "Bound", "Outcome", "Planner", "ratio"]

CONSTANT_KEYS = ("active_power_kw", "current_a:A", "current_a:B", "current_a:C")
_PLANS_MAX = 100_000  # device plans kept before the cache starts over (unknown MNs add some)

_POWERS = tuple(10.0**-digits for digits in range(32))


def _resolution(text: str) -> float:
    """The step of a decimal text: 10^-(digits after the point)."""
    text = text.strip()
    dot = text.find(".")
    digits = len(text) - dot - 1 if dot >= 0 else 0
    return _POWERS[digits] if digits < len(_POWERS) else 10.0**-digits


def ratio(quantity: str, point: PointSnapshot) -> float:
    """The CT/PT factor of a quantity's raw value at `point`."""
    if quantity in ("active_power_kw", "energy_total_kwh", "energy_interval_kwh"):
        return point.ct_ratio * point.pt_ratio
    if quantity == "current_a":
        return point.ct_ratio
    if quantity == "voltage_v":
        return point.pt_ratio
    return 1.0


class Bound:
    """The values of one point in one reading."""

    __slots__ = ("flag_ok", "point", "point_json", "quality", "raw_counter", "resolution", "values")

    def __init__(self, point: PointSnapshot, point_json: tuple[bytes, bytes, bytes]) -> None:
        self.point = point
        self.point_json = point_json
        self.values: dict[str, float] = {}
        self.quality: dict[str, list[str]] = {}
        self.resolution: dict[str, float] = {}
        self.flag_ok: dict[str, bool] = {}
        self.raw_counter: float | None = None


class _Entry:
    """How one `code-suffix` of a device binds: to a point and value key, or why not."""

    __slots__ = (
        "constant",
        "counter",
        "key",
        "point",
        "point_json",
        "ratio",
        "resolution_ratio",
        "unbound",
    )

    def __init__(
        self,
        point: PointSnapshot | None = None,
        binding: hj212.Binding | None = None,
        unbound: tuple[str, str] | None = None,
    ) -> None:
        self.point = point
        self.unbound = unbound
        self.key = ""
        self.ratio = 1.0
        self.resolution_ratio = 1.0
        self.constant = False
        self.counter = 0  # 1: an instant counter value; 2: a max one (the first of a reading)
        self.point_json = (b"", b"", b"")
        if point is not None and binding is not None:
            self.point_json = point_pieces(point)
            quantity = binding.quantity.value
            self.ratio = ratio(quantity, point)
            self.resolution_ratio = abs(self.ratio)
            key = quantity
            if binding.phase:
                key += ":" + binding.phase
            if binding.aggregate in ("min", "max"):
                key += ":" + binding.aggregate
            self.key = key
            self.constant = key in CONSTANT_KEYS
            if quantity == "energy_total_kwh" and binding.aggregate in ("instant", "max"):
                self.counter = 1 if binding.aggregate == "instant" else 2


class _Plan:
    """A device's binding plan: its profile, points by circuit and the entries seen so far.

    Built from the registry view on the device's first reading and dropped on any device or
    point change, so it always says what `RegistryView` says now.
    """

    __slots__ = ("by_circuit", "entries", "inactive", "outcome", "profile", "totals")

    def __init__(self, outcome: str | None = None) -> None:
        self.outcome = outcome
        self.profile: hj212.Profile | None = None
        self.by_circuit: dict[int, PointSnapshot] = {}
        self.inactive: set[int | None] = set()
        self.totals: list[PointSnapshot] = []
        self.entries: dict[tuple[str, str], _Entry] = {}


Outcome = str | tuple[list[Bound], list[tuple[str, str]]]
"""Why a reading did not bind at all, or its bound points and its unbound values' reasons."""


class Planner:
    """The binding plans of the devices seen, kept until the registry changes."""

    def __init__(self, *, view: RegistryView, valid_flags: frozenset[str]) -> None:
        self.view = view
        self.valid_flags = valid_flags
        self._plans: dict[str, _Plan] = {}

    def clear(self) -> None:
        """Forget every plan (a device or point changed)."""
        self._plans.clear()

    def _plan(self, mn: str) -> _Plan:
        device = self.view.device(mn)
        if device is None:
            return _Plan("unknown_device")
        if device.status != "active":
            return _Plan("inactive_device")
        try:
            profile = hj212.get_profile(device.electricity_profile)
        except hj212.ProfileError:
            return _Plan("unknown_profile")
        plan = _Plan()
        plan.profile = profile
        points = self.view.points_of_device(mn)
        plan.by_circuit = {p.circuit: p for p in points if p.status == "active"}
        plan.inactive = {p.circuit for p in points if p.status != "active"}
        plan.totals = [p for p in plan.by_circuit.values() if p.point_type == "total"]
        return plan

    def _entry(self, plan: _Plan, code: str, suffix: str) -> _Entry:
        assert plan.profile is not None
        binding = plan.profile.resolve(code, suffix)
        if binding is None:
            return _Entry(unbound=("unknown_code", f"{code}-{suffix}"))
        point = self._point_for(binding.circuit, plan.by_circuit, plan.totals)
        if point is None:
            reason = "inactive_point" if binding.circuit in plan.inactive else "unknown_circuit"
            return _Entry(unbound=(reason, str(binding.circuit)))
        return _Entry(point, binding)

    def bind(self, reading: TelemetryReading) -> Outcome:
        """The reading's values by point, CT/PT applied, and the reasons of what did not bind."""
        plan = self._plans.get(reading.mn)
        if plan is None:
            if len(self._plans) >= _PLANS_MAX:
                self._plans.clear()
            plan = self._plans[reading.mn] = self._plan(reading.mn)
        if plan.outcome is not None:
            return plan.outcome
        entries = plan.entries
        valid_flags = self.valid_flags
        isfinite = math.isfinite
        bound: dict[str, Bound] = {}
        unbound: list[tuple[str, str]] = []
        for code, group in reading.items.items():
            flag = group.get("Flag")
            upper = flag.upper() if flag is not None else None
            ok = upper is None or upper in valid_flags
            flag_quality = "flag:" + upper if flag and upper and upper != "N" else None
            for suffix, text in group.items():
                if suffix == "Flag":
                    continue
                entry = entries.get((code, suffix))
                if entry is None:
                    entry = entries[(code, suffix)] = self._entry(plan, code, suffix)
                if entry.unbound is not None:
                    unbound.append(entry.unbound)
                    continue
                try:
                    raw = float(text)
                except ValueError:
                    unbound.append(("unparseable", f"{code}-{suffix}"))
                    continue
                if not isfinite(raw):
                    unbound.append(("unparseable", f"{code}-{suffix}"))
                    continue
                point = entry.point
                assert point is not None
                item = bound.get(point.id)
                if item is None:
                    item = bound[point.id] = Bound(point, entry.point_json)
                key = entry.key
                item.values[key] = raw * entry.ratio
                if entry.constant:  # only the constant-value rule reads resolutions
                    item.resolution[key] = _resolution(text) * entry.resolution_ratio
                item.flag_ok[key] = ok
                if flag_quality is not None:
                    item.quality.setdefault(key, []).append(flag_quality)
                if entry.counter == 1 or (entry.counter == 2 and item.raw_counter is None):
                    item.raw_counter = raw
        return list(bound.values()), sorted(set(unbound)) if unbound else unbound

    @staticmethod
    def _point_for(
        circuit: int | None, by_circuit: dict[int, PointSnapshot], totals: list[PointSnapshot]
    ) -> PointSnapshot | None:
        if circuit is not None and circuit in by_circuit:
            return by_circuit[circuit]
        # Circuit 00 of the default profile is the main incoming meter; points start at 1, so
        # it binds to the device's only total point. Plant-level items (no circuit) bind to
        # the device's only point.
        if circuit == 0 and len(totals) == 1:
            return totals[0]
        if circuit is None and len(by_circuit) == 1:
            return next(iter(by_circuit.values()))
        return None
