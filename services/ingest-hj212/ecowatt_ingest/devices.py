"""Who a device is: registry lookups, PW verification (cached), per-device CRC variants.

A device's PW is checked with scrypt once per (PW value, stored hash) — the verdict depends
on nothing else, so devices registered with one shared hash cost one check — in a worker
thread so the event loop keeps serving other connections; the verdict is remembered, so a
reconnect or the next frame costs a dictionary lookup. A changed hash in the registry (the
PW was changed) is a new key: the old verdict no longer applies. Failed checks are
remembered apart from successful ones, in a smaller cache, so that wrong PWs (an attacker
trying several) cannot push the verdicts of real devices out.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor

import ecowatt_hj212 as hj212
from ecowatt_kernel.contracts import DeviceSnapshot, Snapshot
from ecowatt_kernel.passwords import verify_password
from ecowatt_kernel.registry_view import RegistryView

__all__ = [
    "BAD_PASSWORD",
    "DEVICE_DISABLED",
    "EXPLANATIONS",
    "OK",
    "PW_NOT_PROVISIONED",
    "UNKNOWN_MN",
    "UNREGISTERED_REASONS",
    "DeviceDirectory",
    "Identity",
]

# identity verdicts (also the reason codes recorded for frames that fail them)
OK = "ok"
UNKNOWN_MN = "unknown_mn"
DEVICE_DISABLED = "device_disabled"
BAD_PASSWORD = "bad_password"  # noqa: S105 - a verdict name, not a password
PW_NOT_PROVISIONED = "pw_not_provisioned"
"""The registry knows the device but holds no PW hash for it: only `lenient` accepts it."""
Identity = str

UNREGISTERED_REASONS = frozenset({UNKNOWN_MN, DEVICE_DISABLED, PW_NOT_PROVISIONED})
"""Refusals that list the MN under `/unregistered` (the registry holds no usable entry for
it: O&M registers, enables or provisions the device)."""

_VARIANTS: dict[str, frozenset[hj212.CrcVariant]] = {
    "standard": frozenset(),
    "modbus_hi_lo": frozenset({hj212.CrcVariant.MODBUS_HI_LO}),
    "modbus_lo_hi": frozenset({hj212.CrcVariant.MODBUS_LO_HI}),
}

EXPLANATIONS = {
    UNKNOWN_MN: "MN {mn} is not in the registry",
    DEVICE_DISABLED: "device {mn} is disabled or removed in the registry",
    BAD_PASSWORD: "PW of device {mn} does not match the registry",
    PW_NOT_PROVISIONED: "device {mn} has no PW in the registry; the strict policy refuses it",
}


class DeviceDirectory:
    """The registry's view of devices, as the TCP server needs it."""

    def __init__(
        self, view: RegistryView, *, cache_size: int = 100_000, failure_cache_size: int = 10_000
    ) -> None:
        self.view = view
        self._per_device: dict[str, Collection[hj212.CrcVariant]] = {}
        self.crc_policy = hj212.CrcPolicy(per_device=self._per_device)
        self._verdicts: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._cache_size = cache_size
        self._failures: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._failure_cache_size = failure_cache_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pw-verify")
        # checks under way, by (PW, stored hash): devices that share a hash and connect
        # together (a reconnect storm) wait for one scrypt instead of queueing one each
        self._checking: dict[tuple[str, str], asyncio.Future[bool]] = {}
        for snapshot in view.all("device"):
            self._on_change("device", snapshot.id, None, snapshot)
        view.on_change(self._on_change)

    def _on_change(
        self, entity: str, entity_id: str, old: Snapshot | None, new: Snapshot | None
    ) -> None:
        if entity != "device":
            return
        if isinstance(new, DeviceSnapshot) and _VARIANTS.get(new.crc_variant):
            self._per_device[new.mn] = _VARIANTS[new.crc_variant]
        else:
            self._per_device.pop(entity_id, None)
            if isinstance(old, DeviceSnapshot):
                self._per_device.pop(old.mn, None)

    def device(self, mn: str) -> DeviceSnapshot | None:
        return self.view.device(mn)

    def cached(self, mn: str, pw: str | None) -> Identity | None:
        """The identity verdict if it needs no hashing, else None (call `verify`)."""
        device = self.view.device(mn)
        if device is None:
            return UNKNOWN_MN
        if device.status != "active":
            return DEVICE_DISABLED
        if device.password_hash is None:
            return PW_NOT_PROVISIONED
        if pw is None:
            return BAD_PASSWORD
        key = (pw, device.password_hash)
        if key in self._verdicts:
            return OK
        if key in self._failures:
            return BAD_PASSWORD
        return None

    async def verify(self, mn: str, pw: str | None) -> Identity:
        """The identity verdict, hashing the PW in a worker thread when needed."""
        cached = self.cached(mn, pw)
        if cached is not None:
            return cached
        device = self.view.device(mn)
        assert device is not None and device.password_hash is not None and pw is not None
        stored = device.password_hash
        key = (pw, stored)
        checking = self._checking.get(key)
        if checking is None:
            checking = asyncio.get_running_loop().run_in_executor(
                self._executor, verify_password, pw, stored
            )
            self._checking[key] = checking
            checking.add_done_callback(lambda _: self._checking.pop(key, None))
        ok = await asyncio.shield(checking)
        cache, size = (
            (self._verdicts, self._cache_size) if ok else (self._failures, self._failure_cache_size)
        )
        cache[key] = ok
        while len(cache) > size:
            cache.popitem(last=False)
        return OK if ok else BAD_PASSWORD

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
