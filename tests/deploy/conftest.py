"""Shared helpers of the deploy/ checks: the repository root and the workspace's modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# Every EcoWatt process of a deployment: name (as in the chart) → (module, HTTP port). The
# HTTP port is each service's own (API, /healthz, /readyz, /metrics); for auth, which is also
# the gateway, its operations port: the public gateway listens on GATEWAY_PORT.
SERVICES = {
    "auth": ("ecowatt_auth", 8001),
    "registry": ("ecowatt_registry", 8002),
    "ingest-hj212": ("ecowatt_ingest", 8003),
    "validation": ("ecowatt_validation", 8004),
    "alarm": ("ecowatt_alarm", 8005),
    "control-plan": ("ecowatt_control_plan", 8006),
    "reporting": ("ecowatt_reporting", 8007),
    "ops": ("ecowatt_ops", 8008),
}
GATEWAY = "auth"
GATEWAY_PORT = 8000


def runnable_module(name: str) -> bool:
    """True when `python -m name` runs something in this workspace."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        return False
    if spec.submodule_search_locations:  # a package: needs __main__
        return importlib.util.find_spec(f"{name}.__main__") is not None
    return True


def deploy_tool(name: str) -> Path:
    """A binary built by `make deploy-tools` (versions in deploy/deploy.mk); fails if absent."""
    import re

    import pytest

    makefile = (DEPLOY / "deploy.mk").read_text()
    version = re.search(rf"^{name.upper()}_VERSION := (\S+)", makefile, re.M)
    assert version is not None, name
    path = ROOT / ".tools" / "go" / f"{name}-{version.group(1)}" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make deploy-tools`", pytrace=False)
    return path


def kubernetes_schemas() -> tuple[str, Path]:
    """(Kubernetes version, folder of its standalone schemas) made by `make deploy-tools`."""
    import re

    import pytest

    makefile = (DEPLOY / "deploy.mk").read_text()
    version = re.search(r"^KUBERNETES_VERSION := (\S+)", makefile, re.M)
    assert version is not None
    folder = ROOT / ".tools" / "kubernetes-json-schema"
    if not (folder / f"v{version.group(1)}-standalone-strict" / ".complete").exists():
        pytest.fail(f"no Kubernetes schemas in {folder}: run `make deploy-tools`", pytrace=False)
    return version.group(1), folder
