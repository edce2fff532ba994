"""Fixtures for the HJ 212 codec tests: the sample frames and an independent CRC."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "hj212-frames.jsonl"
"""Sample frames with verdicts, in the repository (provenance: tests/data/SOURCES.md)."""


def reference_crc(data: bytes) -> int:
    """HJ 212-2017 Appendix A, bit by bit, exactly as the digest's pseudo-code (§1.1)."""
    register = 0xFFFF
    for byte in data:
        register = (register >> 8) ^ byte
        for _ in range(8):
            lsb = register & 1
            register >>= 1
            if lsb:
                register ^= 0xA001
    return register


def reference_modbus(data: bytes) -> int:
    """CRC-16/MODBUS, bit by bit (the byte is XORed into the whole register)."""
    register = 0xFFFF
    for byte in data:
        register ^= byte
        for _ in range(8):
            lsb = register & 1
            register >>= 1
            if lsb:
                register ^= 0xA001
    return register


def make_frame(segment: bytes | str, *, trailer: bytes = b"\r\n", crc: str | None = None) -> bytes:
    """A frame built independently of the library: byte length, reference CRC."""
    data = segment.encode("utf-8") if isinstance(segment, str) else segment
    checksum = crc if crc is not None else f"{reference_crc(data):04X}"
    return b"##%04d" % len(data) + data + checksum.encode("ascii") + trailer


@pytest.fixture(scope="session")
def sample_records() -> list[dict[str, Any]]:
    lines = SAMPLES.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="session")
def samples_path() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def ref_crc() -> Callable[[bytes], int]:
    return reference_crc


@pytest.fixture(scope="session")
def ref_modbus() -> Callable[[bytes], int]:
    return reference_modbus


@pytest.fixture(scope="session")
def frame_of() -> Callable[..., bytes]:
    return make_frame


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests asking for ``sample_record`` run once per line of the sample file."""
    if "sample_record" in metafunc.fixturenames:
        lines = [line for line in SAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]
        ids = [f"line{number}-cn{record['cn']}" for number, record in enumerate(records, 1)]
        metafunc.parametrize("sample_record", records, ids=ids)
