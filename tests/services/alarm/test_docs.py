"""docs/alarm-rules.md shows what the engine does: its charts are regenerated and compared."""

from __future__ import annotations

from pathlib import Path

from alarm_charts import BEGIN, END, document


def test_rule_charts_are_current() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "alarm-rules.md").read_text()
    current = doc[doc.index(BEGIN) : doc.index(END) + len(END)]
    assert current == "\n".join(document()), (
        "run `uv run python tests/support/alarm_charts.py --write docs/alarm-rules.md`"
    )
