"""The auth README's permission matrix and role table are the ones the code defines."""

from __future__ import annotations

from pathlib import Path

from ecowatt_auth.authz.__main__ import datasets, roles, table

README = Path(__file__).resolve().parents[3] / "services" / "auth" / "README.md"


def test_the_readme_carries_the_current_matrix_roles_and_datasets() -> None:
    text = README.read_text()
    start = text.index("<!-- permission-matrix")
    block = text[text.index("\n", start) + 1 : text.index("<!-- /permission-matrix -->")]
    assert block.strip() == table().strip(), "run `python -m ecowatt_auth.authz` into the README"
    assert roles() in text
    assert datasets() in text
