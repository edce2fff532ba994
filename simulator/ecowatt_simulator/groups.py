"""The code groups of a device's uploads: one circuit's CP keys in the `ecowatt-default`
profile, its real-time values, and its interval statistics (2051/2061/2031)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from ecowatt_simulator.load import Sample

__all__ = ["Acc", "CircuitKeys", "circuit_keys", "interval_groups", "sample_groups"]


@dataclass(slots=True)
class Acc:
    """Statistics of one point over an interval: power, PF, currents, voltages, counter."""

    n: int = 0
    p_sum: float = 0.0
    p_min: float = math.inf
    p_max: float = -math.inf
    pf_sum: float = 0.0
    i_sum: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    i_min: list[float] = field(default_factory=lambda: [math.inf] * 3)
    i_max: list[float] = field(default_factory=lambda: [-math.inf] * 3)
    u_sum: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    u_min: list[float] = field(default_factory=lambda: [math.inf] * 3)
    u_max: list[float] = field(default_factory=lambda: [-math.inf] * 3)
    e_start: float | None = None

    def add(self, s: Sample, energy: float) -> None:
        if self.e_start is None:
            self.e_start = energy
        self.n += 1
        p = s.power
        self.p_sum += p
        if p < self.p_min:
            self.p_min = p
        if p > self.p_max:
            self.p_max = p
        self.pf_sum += s.pf
        for k, value in enumerate((s.ia, s.ib, s.ic)):
            self.i_sum[k] += value
            if value < self.i_min[k]:
                self.i_min[k] = value
            if value > self.i_max[k]:
                self.i_max[k] = value
        for k, value in enumerate((s.ua, s.ub, s.uc)):
            self.u_sum[k] += value
            if value < self.u_min[k]:
                self.u_min[k] = value
            if value > self.u_max[k]:
                self.u_max[k] = value

    def merge(self, other: Acc) -> None:
        if other.n == 0:
            return
        if self.e_start is None:
            self.e_start = other.e_start
        self.n += other.n
        self.p_sum += other.p_sum
        self.p_min = min(self.p_min, other.p_min)
        self.p_max = max(self.p_max, other.p_max)
        self.pf_sum += other.pf_sum
        for k in range(3):
            self.i_sum[k] += other.i_sum[k]
            self.i_min[k] = min(self.i_min[k], other.i_min[k])
            self.i_max[k] = max(self.i_max[k], other.i_max[k])
            self.u_sum[k] += other.u_sum[k]
            self.u_min[k] = min(self.u_min[k], other.u_min[k])
            self.u_max[k] = max(self.u_max[k], other.u_max[k])


@dataclass(frozen=True, slots=True)
class CircuitKeys:
    p_rtd: str
    p_avg: str
    p_min: str
    p_max: str
    p_flag: str
    e_rtd: str
    e_cou: str
    e_min: str
    e_max: str
    e_flag: str
    pf_rtd: str
    pf_avg: str
    sw_rtd: str
    i_rtd: tuple[str, str, str]
    i_avg: tuple[str, str, str]
    i_min: tuple[str, str, str]
    i_max: tuple[str, str, str]
    u_rtd: tuple[str, str, str]
    u_avg: tuple[str, str, str]
    u_min: tuple[str, str, str]
    u_max: tuple[str, str, str]


@functools.lru_cache(maxsize=128)
def circuit_keys(circuit: int) -> CircuitKeys:
    """CP keys of one circuit in the `ecowatt-default` profile (xe + quantity + circuit)."""
    c = f"{circuit:02d}"

    def phases(q: str, suffix: str) -> tuple[str, str, str]:
        return (f"xe{q}1{c}-{suffix}", f"xe{q}2{c}-{suffix}", f"xe{q}3{c}-{suffix}")

    return CircuitKeys(
        p_rtd=f"xe01{c}-Rtd",
        p_avg=f"xe01{c}-Avg",
        p_min=f"xe01{c}-Min",
        p_max=f"xe01{c}-Max",
        p_flag=f"xe01{c}-Flag",
        e_rtd=f"xe02{c}-Rtd",
        e_cou=f"xe02{c}-Cou",
        e_min=f"xe02{c}-Min",
        e_max=f"xe02{c}-Max",
        e_flag=f"xe02{c}-Flag",
        pf_rtd=f"xe03{c}-Rtd",
        pf_avg=f"xe03{c}-Avg",
        sw_rtd=f"xe04{c}-Rtd",
        i_rtd=phases("1", "Rtd"),
        i_avg=phases("1", "Avg"),
        i_min=phases("1", "Min"),
        i_max=phases("1", "Max"),
        u_rtd=phases("2", "Rtd"),
        u_avg=phases("2", "Avg"),
        u_min=phases("2", "Min"),
        u_max=phases("2", "Max"),
    )


def sample_groups(k: CircuitKeys, s: Sample, e: float) -> tuple[str, ...]:
    """One circuit's groups of a real-time upload: power, counter `e`, PF, switch, currents,
    voltages."""
    return (
        f"{k.p_rtd}={s.power:.2f},{k.p_flag}=N",
        f"{k.e_rtd}={e:.2f},{k.e_flag}=N",
        f"{k.pf_rtd}={s.pf:.2f}",
        f"{k.sw_rtd}={s.switch}",
        f"{k.i_rtd[0]}={s.ia:.1f}",
        f"{k.i_rtd[1]}={s.ib:.1f}",
        f"{k.i_rtd[2]}={s.ic:.1f}",
        f"{k.u_rtd[0]}={s.ua:.1f}",
        f"{k.u_rtd[1]}={s.ub:.1f}",
        f"{k.u_rtd[2]}={s.uc:.1f}",
    )


def interval_groups(keys: CircuitKeys, acc: Acc, energy_end: float) -> list[str]:
    """One circuit's groups of an interval upload, its counter now at `energy_end`."""
    energy_start = acc.e_start if acc.e_start is not None else energy_end
    n = acc.n
    groups: list[str] = []
    groups.append(
        f"{keys.p_avg}={acc.p_sum / n:.2f},{keys.p_min}={acc.p_min:.2f},"
        f"{keys.p_max}={acc.p_max:.2f},{keys.p_flag}=N"
    )
    groups.append(
        f"{keys.e_cou}={energy_end - energy_start:.3f},{keys.e_min}={energy_start:.2f},"
        f"{keys.e_max}={energy_end:.2f},{keys.e_flag}=N"
    )
    groups.append(f"{keys.pf_avg}={acc.pf_sum / n:.2f}")
    for k in range(3):
        groups.append(
            f"{keys.i_avg[k]}={acc.i_sum[k] / n:.1f},{keys.i_min[k]}={acc.i_min[k]:.1f},"
            f"{keys.i_max[k]}={acc.i_max[k]:.1f}"
        )
    for k in range(3):
        groups.append(
            f"{keys.u_avg[k]}={acc.u_sum[k] / n:.1f},{keys.u_min[k]}={acc.u_min[k]:.1f},"
            f"{keys.u_max[k]}={acc.u_max[k]:.1f}"
        )
    return groups
