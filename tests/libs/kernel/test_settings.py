from __future__ import annotations

import pytest
from ecowatt_kernel.settings import KernelSettings, settings_or_exit
from pydantic import SecretStr, ValidationError


def test_settings_are_read_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOWATT_HTTP_PORT", "8123")
    monkeypatch.setenv("ECOWATT_BUS_BACKEND", "memory")
    monkeypatch.setenv("HTTP_PORT", "9999")  # unprefixed variables are ignored
    settings = KernelSettings()
    assert settings.http_port == 8123
    assert settings.bus_backend == "memory"


def test_placeholder_secrets_are_accepted_in_development() -> None:
    settings = KernelSettings(environment="development")
    assert settings.identity_public_key.get_secret_value().startswith("dev-insecure-")


def test_placeholder_secrets_are_refused_in_production() -> None:
    with pytest.raises(
        ValidationError, match=r"placeholder secrets are not allowed.*ECOWATT_IDENTITY_PUBLIC_KEY"
    ):
        KernelSettings(environment="production")


def test_production_starts_with_real_secrets() -> None:
    settings = KernelSettings(
        environment="production",
        identity_public_key=SecretStr("-----BEGIN PUBLIC KEY-----\nreal\n-----END PUBLIC KEY-----"),
    )
    assert settings.environment == "production"


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOWATT_BUS_BACKEND", "carrier-pigeon")
    with pytest.raises(ValueError, match="bus_backend"):
        KernelSettings()


def test_secrets_do_not_appear_in_repr() -> None:
    settings = KernelSettings(database_url=SecretStr("postgresql://u:hunter2@db/x"))
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize("value", [None, ""])
def test_a_missing_environment_is_refused_not_defaulted(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("ECOWATT_ENVIRONMENT", raising=False)
    else:
        monkeypatch.setenv("ECOWATT_ENVIRONMENT", value)
    with pytest.raises(ValidationError, match="ECOWATT_ENVIRONMENT is not set"):
        KernelSettings()
    with pytest.raises(SystemExit, match="refusing to start: ECOWATT_ENVIRONMENT is not set"):
        settings_or_exit(KernelSettings)
    monkeypatch.setenv("ECOWATT_ENVIRONMENT", "test")
    assert settings_or_exit(KernelSettings).environment == "test"
