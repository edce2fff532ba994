"""Binding: `telemetry.readings` → `telemetry.points`, with per-point state and daily aggregates.

    binder.py    the handler: a batch's readings through plans, per-point rules and effects
    plans.py     device plans: `code-suffix` → point and value key, CT/PT (from the registry)
    state.py     per-point state and day aggregates, cached and stored (COPY + merge)
    messages.py  `telemetry.points` envelopes joined from cached JSON pieces

Every reading of the platform passes through `Binder.process`: the pieces are tuned
together (`make bench-validation`), and the per-reading path calls across them without
indirection (plain functions and slotted classes).
"""

from ecowatt_validation.binding.binder import BatchResult, Binder, latency_grade
from ecowatt_validation.binding.messages import INTERVALS, point_message
from ecowatt_validation.binding.state import DayAgg, PointState, StateConflict

__all__ = [
    "INTERVALS",
    "BatchResult",
    "Binder",
    "DayAgg",
    "PointState",
    "StateConflict",
    "latency_grade",
    "point_message",
]
