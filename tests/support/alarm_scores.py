"""Scoring alarms and facility states against a ground truth (the synthetic city's or the
pipeline's), outside the packages they judge."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from alarm_city import ExpectedAlarm

__all__ = ["score_alarms", "score_states"]


def _overlaps(a0: datetime, a1: datetime, b0: datetime, b1: datetime, slack: timedelta) -> bool:
    return a0 <= b1 + slack and b0 <= a1 + slack


def score_alarms(
    expected: list[ExpectedAlarm], fired: list[dict[str, Any]], slack_min: int = 20
) -> dict[str, Any]:
    """Match fired alarms ({rule_code, subject_id, group_id, first_at, last_at, recovered_at,
    status}) to the truth: precision over fired, recall over expected, both split into live
    and suppressed."""
    slack = timedelta(minutes=slack_min)
    unmatched_fired = list(range(len(fired)))
    matched, missing = [], []
    for exp in expected:
        hit = None
        for i in unmatched_fired:
            f = fired[i]
            subject = f["group_id"] if f["rule_code"] == "R4" else f["subject_id"]
            end = f.get("recovered_at") or f["last_at"]
            if (
                f["rule_code"] == exp.rule_code
                and subject == exp.subject_id
                and (f["status"] == "suppressed") == exp.suppressed
                and _overlaps(f["first_at"], end, exp.start, exp.end, slack)
            ):
                hit = i
                break
        if hit is None:
            missing.append(exp)
        else:
            unmatched_fired.remove(hit)
            matched.append(exp)
    extra = [fired[i] for i in unmatched_fired]
    return {
        "expected": len(expected),
        "fired": len(fired),
        "matched": len(matched),
        "precision": len(matched) / len(fired) if fired else 1.0,
        "recall": len(matched) / len(expected) if expected else 1.0,
        "missing": missing,
        "extra": extra,
    }


def score_states(
    truth: dict[str, list[tuple[datetime, str]]],
    changes: dict[str, list[tuple[datetime, str]]],
    margin_min: int = 6,
) -> dict[str, Any]:
    """Minute-by-minute facility states against the truth, skipping `margin_min` after each
    true change (confirmation and offline detection need that long). `changes` are each
    facility's (since, state) in the order they were recorded. Precision and recall are
    macro-averaged over the states that occur."""
    tp: dict[str, int] = {}
    predicted: dict[str, int] = {}
    actual: dict[str, int] = {}
    for fid, series in truth.items():
        # By time only: changes with the same `since` keep the order they were recorded in
        # (a power-loss restoration records "stopped" then "running" at the same instant).
        history = sorted(changes.get(fid, []), key=lambda change: change[0])
        last_change = None
        previous = None
        j, current = 0, None
        for t, state in series:
            if state != previous:
                last_change, previous = t, state
            while j < len(history) and history[j][0] <= t:
                current = history[j][1]
                j += 1
            if last_change is not None and t - last_change < timedelta(minutes=margin_min):
                continue
            actual[state] = actual.get(state, 0) + 1
            if current is not None:
                predicted[current] = predicted.get(current, 0) + 1
                if current == state:
                    tp[state] = tp.get(state, 0) + 1
    states = sorted(set(actual) | set(predicted))
    precision = {s: tp.get(s, 0) / predicted[s] for s in states if predicted.get(s)}
    recall = {s: tp.get(s, 0) / actual[s] for s in states if actual.get(s)}
    return {
        "precision": sum(precision.values()) / len(precision) if precision else 0.0,
        "recall": sum(recall.values()) / len(recall) if recall else 0.0,
        "per_state_precision": precision,
        "per_state_recall": recall,
        "minutes": sum(actual.values()),
    }
