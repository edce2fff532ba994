"""A synthetic city with injected faults and their ground truth.

`FaultSource` is the small interface the precision/recall test needs; `SyntheticFaults`
implements it here, and the device simulator can implement it later (archive snapshots,
readings, and ground truth as (rule_code, subject_id, day) tuples).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Protocol

from ecowatt_kernel.contracts import Snapshot, TelemetryReading
from ecowatt_validation import rules as R
from ecowatt_validation.reference import credit_check_char
from harness import DAY, device, enterprise, facility, local, point, reading

Truth = tuple[str, str, date]

FAULTS = (
    "negative_energy",
    "meter_reset",
    "constant_power",
    "negative_power",
    "offline",
    "control_threshold",
    "no_total_point",
    "empty_credit_code",
    "industry_division",
    "wrong_ct_ratio",
    "counter_jump",
    "no_data_point",
    "production_threshold",
    "invalid_credit_code",
    "late_data",
)


class FaultSource(Protocol):
    day: date

    def snapshots(self) -> list[Snapshot]: ...

    def readings(self) -> Iterator[TelemetryReading]: ...

    def ground_truth(self) -> set[Truth]: ...


class SyntheticFaults:
    """`enterprises` enterprises, one fault each for the first len(FAULTS), the rest healthy.

    Each enterprise: one device with a total (circuit 1), a production (2) and a control (3)
    point sampled every 15 minutes; total = production + control + 10 kW of other load.
    """

    interval_s = 900

    def __init__(self, enterprises: int = 24, seed: int = 7, day: date = DAY) -> None:
        self.count = enterprises
        self.day = day
        self.rng = random.Random(seed)
        self.fault = {
            f"S{i:02d}": FAULTS[i] if i < len(FAULTS) else "healthy" for i in range(enterprises)
        }

    def _credit(self, index: int) -> str:
        body = f"91610113MA{index:07d}"
        return body + credit_check_char(body)

    def snapshots(self) -> list[Snapshot]:
        out: list[Snapshot] = []
        for index, (eid, fault) in enumerate(self.fault.items()):
            mn = f"MN{eid}"
            credit = self._credit(index)
            if fault == "empty_credit_code":
                credit = ""
            elif fault == "invalid_credit_code":
                credit = credit[:-1] + ("0" if credit[-1] != "0" else "1")
            out += [
                enterprise(
                    eid,
                    credit_code=credit,
                    industry_code="30" if fault == "industry_division" else "3011",
                ),
                facility(f"{eid}-F1", "production", eid),
                facility(f"{eid}-F2", "control", eid),
                device(mn, eid),
            ]
            common = {"rated_kw": None, "max_load_kw": None, "expected_interval_s": self.interval_s}
            if fault != "no_total_point":
                out.append(point(f"{eid}-PT", "total", mn, 1, eid, **common))
            out.append(
                point(
                    f"{eid}-PP",
                    "production",
                    mn,
                    2,
                    eid,
                    facility_id=f"{eid}-F1",
                    start_stop_kw=None if fault == "production_threshold" else 10.0,
                    ct_ratio=10.0 if fault == "wrong_ct_ratio" else 1.0,
                    **common,
                )
            )
            out.append(
                point(
                    f"{eid}-PC",
                    "control",
                    mn,
                    3,
                    eid,
                    facility_id=f"{eid}-F2",
                    start_stop_kw=None if fault == "control_threshold" else 2.0,
                    **common,
                )
            )
            if fault == "no_data_point":
                out.append(
                    point(f"{eid}-P4", "production", mn, 4, eid, facility_id=f"{eid}-F1", **common)
                )
        return out

    def readings(self) -> Iterator[TelemetryReading]:
        samples = 86400 // self.interval_s
        for eid, fault in self.fault.items():
            mn = f"MN{eid}"
            counters = [1000.0, 500.0, 200.0]
            for i in range(samples):
                t = local(self.day) + timedelta(seconds=i * self.interval_s)
                if fault == "offline" and 40 <= i < 52:
                    continue  # 3 hours without a frame
                production = 60.0 + self.rng.gauss(0, 3)
                control = 20.0 + self.rng.gauss(0, 1)
                if fault == "constant_power" and 30 <= i < 54:
                    production = 61.5  # stuck for 6 hours
                if fault == "negative_power" and 60 <= i < 64:
                    control = -3.0
                total = production + max(control, 0.0) + 10.0 + self.rng.gauss(0, 0.5)
                powers = [total, production, control]
                for c in range(3):
                    counters[c] += max(powers[c], 0.0) * self.interval_s / 3600.0
                values = list(counters)
                if fault == "negative_energy" and i == 50:
                    counters[2] -= 5.0
                    values[2] = counters[2]
                if fault == "meter_reset" and i == 48:
                    counters[0] = 0.5
                    values[0] = counters[0]
                if fault == "counter_jump" and i == 70:
                    counters[1] += 50_000.0
                    values[1] = counters[1]
                items: dict[str, dict[str, str]] = {}
                for c in range(3):
                    if fault == "no_total_point" and c == 0:
                        continue
                    items[f"xe01{c + 1:02d}"] = {"Rtd": f"{powers[c]:.3f}", "Flag": "N"}
                    items[f"xe02{c + 1:02d}"] = {"Rtd": f"{values[c]:.2f}", "Flag": "N"}
                late = fault == "late_data" and 20 <= i < 24
                received = t + (timedelta(hours=3) if late else timedelta(seconds=5))
                yield reading(mn, t, items, received_at=received)

    def ground_truth(self) -> set[Truth]:
        d = self.day
        truth: set[Truth] = set()
        for eid, fault in self.fault.items():
            mn = f"MN{eid}"
            match fault:
                case "negative_energy":
                    truth.add((R.NEGATIVE_ENERGY, f"{eid}-PC", d))
                case "meter_reset":
                    truth.add((R.NEGATIVE_ENERGY, f"{eid}-PT", d))
                case "constant_power":
                    truth.add((R.CONSTANT_POWER, f"{eid}-PP", d))
                case "negative_power":
                    truth.add((R.NEGATIVE_POWER, f"{eid}-PC", d))
                case "offline":
                    truth.add((R.DEVICE_OFFLINE, mn, d))
                case "control_threshold":
                    truth.add((R.CONTROL_THRESHOLD_MISSING, f"{eid}-PC", d))
                case "no_total_point":
                    truth.add((R.NO_TOTAL_POINT, eid, d))
                case "empty_credit_code":
                    truth.add((R.CREDIT_CODE_EMPTY, eid, d))
                case "industry_division":
                    truth.add((R.INDUSTRY_NOT_CLASS, eid, d))
                case "wrong_ct_ratio":
                    truth.add((R.SUB_METERS_EXCEED_TOTAL, eid, d))
                case "counter_jump":  # the jump also breaks the enterprise's energy balance
                    truth.add((R.ENERGY_GT_25X_MAX_LOAD, f"{eid}-PP", d))
                    truth.add((R.SUB_METERS_EXCEED_TOTAL, eid, d))
                case "no_data_point":
                    truth.add((R.NO_DATA_AFTER_COMMISSIONING, f"{eid}-P4", d))
                case "production_threshold":
                    truth.add((R.PRODUCTION_THRESHOLD_MISSING, f"{eid}-PP", d))
                case "invalid_credit_code":
                    truth.add((R.CREDIT_CODE_INVALID, eid, d))
                case "late_data":
                    truth |= {(R.DATA_LATENCY, f"{eid}-{p}", d) for p in ("PT", "PP", "PC")}
        return truth
