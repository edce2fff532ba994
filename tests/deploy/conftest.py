"""Shared helpers of the deploy/ checks: the repository root and the workspace's modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def runnable_module(name: str) -> bool:
    """True when `python -m name` runs something in this workspace."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        return False
    if spec.submodule_search_locations:  # a package: needs __main__
        return importlib.util.find_spec(f"{name}.__main__") is not None
    return True
