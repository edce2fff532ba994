"""Injected faults are found, healthy devices are not: precision and recall ≥ 0.95."""

from __future__ import annotations

from faults import FaultSource, SyntheticFaults
from harness import Harness


async def run_source(
    harness: Harness, source: FaultSource
) -> tuple[float, float, set[object], set[object]]:
    await harness.archive(source.snapshots())
    await harness.send(list(source.readings()))
    await harness.run_day(source.day)
    predicted = await harness.occurrences(source.day)
    truth = source.ground_truth()
    hits = predicted & truth
    precision = len(hits) / len(predicted) if predicted else 1.0
    recall = len(hits) / len(truth) if truth else 1.0
    return precision, recall, predicted - truth, truth - predicted


async def test_precision_and_recall_on_injected_faults(harness: Harness) -> None:
    source = SyntheticFaults(enterprises=24)
    precision, recall, false_positives, missed = await run_source(harness, source)
    print(
        f"precision={precision:.3f} recall={recall:.3f} fp={sorted(false_positives)} missed={sorted(missed)}"  # noqa: E501
    )
    assert precision >= 0.95, false_positives
    assert recall >= 0.95, missed
    healthy = {e for e, f in source.fault.items() if f == "healthy"}
    found = await harness.occurrences(source.day)
    assert not {s for _, s, _ in found if s.split("-")[0].removeprefix("MN") in healthy}
