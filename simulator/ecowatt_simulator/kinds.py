"""The fault kinds (a leaf module: the load model and the fault plan both name them).

What each kind does is described in `faults.py` and tabled in `simulator/README.md`.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FaultKind"]


class FaultKind(StrEnum):
    CONTROL_OFF = "control_off"
    LATE_START = "late_start"
    EARLY_STOP = "early_stop"
    LOW_LOAD = "low_load"
    NEGATIVE_ENERGY = "negative_energy"
    METER_RESET = "meter_reset"
    CONSTANT_POWER = "constant_power"
    OFFLINE = "offline"
    MODBUS_CRC = "modbus_crc"
    LOWERCASE_CRC = "lowercase_crc"
    FRAMES_2005 = "frames_2005"
    GARBAGE = "garbage"
    SPLIT_PACKETS = "split_packets"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 - a fault name, not a password
    CLOCK_DRIFT = "clock_drift"
    POWER_CUT = "power_cut"
