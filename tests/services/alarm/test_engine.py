"""The state model in isolation (no infrastructure): hysteresis, confirmation, timers."""

from __future__ import annotations

from datetime import date

from alarm_city import SyntheticCity
from ecowatt_alarm.engine import Effects, Engine, EnterpriseRuntime
from ecowatt_alarm.model import Learned, ModelCache
from ecowatt_alarm.rules import RuleSet
from ecowatt_alarm.suppression import Suppressions
from ecowatt_kernel.registry_view import RegistryView


def _setup() -> tuple[Engine, EnterpriseRuntime, object, str, float]:
    city = SyntheticCity("U", date(2026, 11, 20), scenarios=[], healthy=1)
    view = RegistryView()
    for change in city.registry_changes():
        view.apply(change)
    rules = RuleSet()
    models = ModelCache(view, rules, lambda _: Learned())
    e = city.enterprises[0].id
    return (
        Engine(rules, Suppressions(view)),
        EnterpriseRuntime(e),
        models.get(e),
        e,
        (city.start.timestamp()),
    )


def _states(fx: Effects, subject: str) -> list[str]:
    return [s.state for s in fx.states if s.subject_id == subject]


def test_hysteresis_and_confirmation() -> None:
    engine, rt, model, e, t0 = _setup()
    fx = Effects()
    point = f"{e}-P"  # production: T = 20 kW (20 % of 100 kW), off below 16 kW
    for i, kw in enumerate([30, 30, 18, 17, 30, 17, 18, 5, 30, 5, 5]):
        engine.apply_reading(rt, model, point, t0 + 60 * i, kw, 228.0, t0, fx)  # type: ignore[arg-type]
    # 18 and 17 kW stay "running" (≥ 0.8 T); one 5 kW sample is not confirmed; two are.
    assert _states(fx, point) == ["running", "standby"]
    change = next(s for s in fx.states if s.subject_id == point and s.state == "standby")
    assert change.since == t0 + 60 * 9, "since = the first sample of the confirmed change"
    assert change.evidence["threshold_source"] == "default"


def test_a_lagging_device_is_not_offline_after_a_tick() -> None:
    engine, rt, model, e, t0 = _setup()
    fx = Effects()
    lag = 8 * 60  # device B's clock runs 8 minutes behind device A's
    for i in range(30):
        now = t0 + 60 * i
        engine.apply_reading(rt, model, f"{e}-P", now, 80.0, 228.0, now, fx)  # type: ignore[arg-type]
        engine.apply_reading(rt, model, f"{e}-C", now - lag, 24.0, 228.0, now, fx)  # type: ignore[arg-type]
        engine.tick(rt, model, now + 30, fx)  # type: ignore[arg-type]
    assert "offline" not in _states(fx, f"{e}-C")


def test_silence_goes_offline_then_offline_alarm_escalates() -> None:
    engine, rt, model, e, t0 = _setup()
    fx = Effects()
    for i in range(5):
        for suffix in ("P", "C", "T"):
            engine.apply_reading(
                rt,
                model,
                f"{e}-{suffix}",
                t0 + 60 * i,
                50.0,
                228.0,  # type: ignore[arg-type]
                t0 + 60 * i,
                fx,
            )
    engine.tick(rt, model, t0 + 60 * 4 + 200, fx)  # type: ignore[arg-type]
    assert "offline" not in _states(fx, f"{e}-C"), "not yet: 300 s have not passed"
    engine.tick(rt, model, t0 + 3 * 3600, fx)  # type: ignore[arg-type]
    assert _states(fx, f"{e}-C")[-1] == "offline"
    opened = [a for a in fx.alarms if a.op == "open" and a.alarm["rule_code"] == "OFFLINE"]
    assert len(opened) == 2 and {a.alarm["level"] for a in opened} == {1}
    engine.tick(rt, model, t0 + 80 * 3600, fx)  # type: ignore[arg-type]
    escalated = [a for a in fx.alarms if a.op == "escalate"]
    assert {a.alarm["level"] for a in escalated} == {3}, "72 h → 严重"


def test_r5_fires_when_the_power_ratio_collapses_against_its_learned_median() -> None:
    city = SyntheticCity("V", date(2026, 11, 20), scenarios=[], healthy=1)
    view = RegistryView()
    for change in city.registry_changes():
        view.apply(change)
    rules = RuleSet()
    models = ModelCache(view, rules, lambda _: Learned())
    e = city.enterprises[0].id
    group = city.enterprises[0].group
    # Learned: control draws 0.3 × production. Now 10 kW against 80 kW (0.125 < 0.5 × 0.3),
    # above the low-load threshold (9 kW), so only the ratio test can see it.
    engine = Engine(rules, Suppressions(view), group_ratio={group: 0.3}.get)
    rt, model, t0 = EnterpriseRuntime(e), models.get(e), city.start.timestamp()
    fx = Effects()
    for i in range(90):
        t = t0 + 60 * i
        for suffix, kw in (("P", 80.0), ("C", 24.0 if i < 10 else 10.0), ("T", 100.0)):
            engine.apply_reading(rt, model, f"{e}-{suffix}", t, kw, 228.0, t, fx)  # type: ignore[arg-type]
    opened = [a.alarm for a in fx.alarms if a.op == "open"]
    assert [a["rule_code"] for a in opened] == ["R5"]
    assert "30 日中位数" in opened[0]["explanation"]
    assert opened[0]["first_at"] == t0 + 600


def test_state_score_keeps_the_recorded_order_of_simultaneous_changes() -> None:
    """At a power restoration the engine records "stopped" then "running" with the same
    `since`; the scorer must take the last one recorded, not the alphabetically last."""
    from datetime import UTC, datetime, timedelta

    from alarm_scores import score_states

    t0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
    truth = {"F": [(t0 + timedelta(minutes=m), "running") for m in range(30)]}
    changes = {"F": [(t0, "power_loss"), (t0, "stopped"), (t0, "running")]}
    score = score_states(truth, changes)
    assert score["precision"] == 1.0 and score["recall"] == 1.0, score
