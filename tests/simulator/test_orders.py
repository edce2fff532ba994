"""Listed enterprises' responses to control orders (`ecowatt_simulator.orders`): what each
behaviour does to the facilities' power and the loggers, and the hourly truth it implies."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ecowatt_kernel.contracts import ControlTaskChanged
from ecowatt_simulator import Fleet, LoadModel, OrderBook, OrderConfig
from ecowatt_simulator.timebase import LocalTime

EFFECTIVE = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)  # 09:00 in Xi'an, a Wednesday
RAMP = timedelta(minutes=60)
END = EFFECTIVE + timedelta(hours=8)


def _fleet() -> Fleet:
    return Fleet.synthetic(16, circuits=(4, 5), seed=5)


def _task(enterprise_id: str, *measures: dict[str, Any]) -> ControlTaskChanged:
    return ControlTaskChanged(
        task_id=f"T-{enterprise_id}",
        alert_id="A1",
        enterprise_id=enterprise_id,
        change="issued",
        valid_from=EFFECTIVE,
        valid_to=END,
        revision=1,
        measures=[
            {
                "target_kind": "enterprise",
                "target_ids": [enterprise_id],
                "effective_at": (EFFECTIVE + RAMP).isoformat(),
            }
            | m
            for m in measures
        ],
    )


def _running_all_day(model: LoadModel, fleet: Fleet) -> list[str]:
    """Enterprises all of whose production runs from 09:00 to 17:00 (normally)."""
    out = []
    for eid in sorted(fleet.enterprises):
        units = [u for u in model.units_of_enterprise(eid) if u.kind == "production"]
        times = [EFFECTIVE.timestamp() + 600 * i for i in range(48)]
        if units and all(model.unit_power(u, t) > 0.3 * u.rated for u in units for t in times):
            out.append(eid)
    return out


def _models(fleet: Fleet, behaviours: dict[str, str]) -> tuple[LoadModel, LoadModel, OrderBook]:
    local = LocalTime()
    book = OrderBook(fleet, OrderConfig(shares={}, behaviours=behaviours), seed=5, local=local)
    return (
        LoadModel(fleet, seed=5, local=local, orders=book),
        LoadModel(fleet, seed=5, local=local),
        book,
    )


def test_shares_are_exact_counts_drawn_from_the_seed() -> None:
    fleet = Fleet.synthetic(40, seed=9)
    config = OrderConfig(shares={"partial": 0.25, "offline": 0.1})
    book = OrderBook(fleet, config, seed=9)
    counts = Counter(book.behaviour(e).value for e in fleet.enterprises)
    assert counts == {"comply": 26, "partial": 10, "offline": 4}
    again = OrderBook(fleet, config, seed=9)
    assert {e: again.behaviour(e) for e in fleet.enterprises} == {
        e: book.behaviour(e) for e in fleet.enterprises
    }


def test_each_behaviour_changes_power_as_documented() -> None:
    fleet = _fleet()
    _, plain, _ = _models(fleet, {})
    comply, partial, ignore, control_off, offline, limit = _running_all_day(plain, fleet)[:6]
    behaviours = {
        comply: "comply",
        partial: "partial",
        ignore: "ignore",
        control_off: "control_off",
        offline: "offline",
        limit: "comply",
    }
    model, counterfactual, book = _models(fleet, behaviours)
    for eid in (comply, partial, ignore, control_off, offline):
        book.apply(_task(eid, {"action": "STOP"}))
    book.apply(_task(limit, {"action": "LIMIT", "reduction_pct": 30}))
    later = (EFFECTIVE + timedelta(hours=3)).timestamp()
    ramp_half = (EFFECTIVE + timedelta(minutes=27)).timestamp()

    def power(m: LoadModel, eid: str, kind: str, t: float) -> float:
        return sum(m.unit_power(u, t) for u in m.units_of_enterprise(eid) if u.kind == kind)

    for eid in (comply, partial, ignore, control_off, limit):
        assert power(counterfactual, eid, "production", later) > 0
    rated = sum(u.rated for u in model.units_of_enterprise(comply) if u.kind == "production")
    assert power(model, comply, "production", later) < 0.015 * rated, "stands by"
    assert (
        0.3
        < power(model, comply, "production", ramp_half)
        / power(counterfactual, comply, "production", ramp_half)
        < 0.7
    ), "winds down over the ramp"
    assert power(model, comply, "control", later) == 0.0, "control off once production stopped"
    before_end = (END - timedelta(minutes=1)).timestamp()
    assert power(model, comply, "control", before_end) > 0, "back on just before the end"
    assert power(model, partial, "production", later) == pytest.approx(
        power(counterfactual, partial, "production", later) * 0.5
    )
    assert power(model, ignore, "production", later) == power(
        counterfactual, ignore, "production", later
    )
    assert power(model, control_off, "control", EFFECTIVE.timestamp() + 60) == 0.0
    assert power(model, control_off, "production", later) == power(
        counterfactual, control_off, "production", later
    )
    assert power(model, limit, "production", later) == pytest.approx(
        power(counterfactual, limit, "production", later) * (1 - 0.40)
    )
    assert book.offline_at(offline, later) == (EFFECTIVE.timestamp() + 1800, END.timestamp())
    assert book.offline_at(comply, later) is None
    after = (END + timedelta(minutes=30)).timestamp()
    assert power(model, comply, "production", after) == power(
        counterfactual, comply, "production", after
    ), "the order is over"

    thresholds = {u.id: 0.2 * u.rated for eid in behaviours for u in model.units_of_enterprise(eid)}
    hour = (EFFECTIVE + timedelta(hours=3)).timestamp()
    statuses = {
        behaviours[eid] + ("-limit" if eid == limit else ""): book.hour_truth(
            eid, hour, actual=model, counterfactual=counterfactual, thresholds=thresholds
        )
        for eid in behaviours
    }
    assert {k: v.status for k, v in statuses.items() if v is not None} == {
        "comply": "停工",
        "partial": "未响应停产",
        "ignore": "未响应停产",
        "control_off": "未开启治污设备",
        "offline": "离线/无法判定",
        "comply-limit": "合规生产",
    }
    assert (
        book.hour_truth(
            comply,
            EFFECTIVE.timestamp(),
            actual=model,
            counterfactual=counterfactual,
            thresholds=thresholds,
        )
        is None
    ), "the ramp is not judged"
