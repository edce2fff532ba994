from __future__ import annotations

import subprocess
import sys

from ecowatt_kernel.identity import Role, verifier_from_settings
from ecowatt_kernel.settings import KernelSettings


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecowatt_standalone.token", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_development_token_verifies_with_the_services_key() -> None:
    result = run("--role", "district_officer", "--district", "610112")
    assert result.returncode == 0, result.stderr
    identity = verifier_from_settings(KernelSettings()).verify(result.stdout.strip())
    assert identity.roles == frozenset({Role.DISTRICT_OFFICER})
    assert identity.scope.districts == frozenset({"610112"}) and not identity.scope.all


def test_no_development_token_in_production() -> None:
    import os

    env = {
        **os.environ,
        "ECOWATT_ENVIRONMENT": "production",
        "ECOWATT_IDENTITY_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----x-----END PUBLIC KEY-----",
    }
    result = run(env=env)
    assert result.returncode != 0
    assert "ECOWATT_IDENTITY_PRIVATE_KEY is required outside development" in result.stderr
