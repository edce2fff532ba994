"""Fail closed: a process started without ECOWATT_ENVIRONMENT refuses to start, saying why,
before it opens a port, starts a server or writes data (no silent fallback to the development
key or the synthetic city). Runs the real entry points in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENTRY_POINTS = [
    ["-m", "ecowatt_standalone"],  # `make run` without make
    ["-m", "ecowatt_registry"],  # one service, distributed mode
    ["-m", "ecowatt_standalone.token"],  # a development token
]


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda e: e[-1])
def test_a_process_without_an_environment_refuses_to_start(
    entry: list[str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ECOWATT_ENVIRONMENT"}
    env["ECOWATT_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, *entry], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "refusing to start" in done.stderr and "ECOWATT_ENVIRONMENT is not set" in done.stderr
    assert "Traceback" not in done.stderr, "a clear message, not a crash"
    assert done.stdout == "", "no token, nothing served"
    assert not (tmp_path / "data").exists(), "no embedded server was started"


def test_production_without_keys_refuses_the_development_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECOWATT_IDENTITY")}
    env |= {"ECOWATT_ENVIRONMENT": "production", "ECOWATT_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "ecowatt_standalone.token"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and done.stdout == ""
    assert "ECOWATT_IDENTITY_PUBLIC_KEY" in done.stderr
