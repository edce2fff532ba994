"""The Alertmanager receiver: a payload opens an incident, the same payload again changes
nothing, an update is recorded, a resolved alert resolves it (at the alert's end), a new
firing reopens it; an occurrence people already verified is not reopened; only
Alertmanager's token is accepted. Runs on the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ecowatt_kernel.identity import Role

from tests.services.ops.conftest import ALERTMANAGER_TOKEN, Desk, bearer

pytestmark = pytest.mark.integration

HOOK = {"Authorization": f"Bearer {ALERTMANAGER_TOKEN}"}
STARTS = datetime(2026, 12, 7, 0, 55, tzinfo=UTC)


def payload(
    status: str,
    *,
    description: str = "The target has not answered /metrics.",
    starts: datetime = STARTS,
    ends: datetime | None = None,
) -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {
            "alertname": "EcoWattServiceDown",
            "severity": "high",
            "fault_level": "严重",
            "service": "alarm",
            "instance": "10.0.0.5:8005",
            "job": "ecowatt",
        },
        "annotations": {
            "summary": "Service alarm is down on 10.0.0.5:8005",
            "description": description,
            "runbook_url": "docs/runbooks/EcoWattServiceDown.md",
        },
        "startsAt": starts.isoformat(),
        "endsAt": (ends or datetime(1, 1, 1, tzinfo=UTC)).isoformat().replace("+00:00", "Z"),
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "a1b2c3d4e5f60718",
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="EcoWattServiceDown"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "ops-desk",
        "groupLabels": {"alertname": "EcoWattServiceDown"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


async def post(desk: Desk, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await desk.client.post("/alertmanager", json=body, headers=HOOK)
    assert response.status_code == 200, response.text
    alerts: list[dict[str, Any]] = response.json()["alerts"]
    return alerts


async def incident(desk: Desk, incident_id: str) -> dict[str, Any]:
    response = await desk.client.get(f"/incidents/{incident_id}", headers=bearer(Role.OM_OPERATOR))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_open_update_resolve_idempotently(desk: Desk) -> None:
    (opened,) = await post(desk, payload("firing"))
    assert opened["outcome"] == "opened" and opened["correlation"] == "service:alarm"
    incident_id = opened["incident_id"]
    first = await incident(desk, incident_id)
    assert first["status"] == "open" and first["source"] == "alertmanager"
    assert first["level"] == "major" and first["title"] == "Service alarm is down on 10.0.0.5:8005"
    assert first["affected_function"] == "alarm"
    # 严重: respond within 30 minutes, resolve within 24 hours of the desk receiving it
    opened_at = datetime.fromisoformat(first["opened_at"])
    assert datetime.fromisoformat(first["response"]["due_at"]) - opened_at == timedelta(minutes=30)
    assert datetime.fromisoformat(first["resolution_clock"]["due_at"]) - opened_at == timedelta(
        hours=24
    )

    # Alertmanager repeats the notification (repeat_interval, an HA peer): nothing changes
    for _ in range(3):
        desk.clock.advance(minutes=5)
        (again,) = await post(desk, payload("firing"))
        assert again == opened | {"outcome": "unchanged"}
    assert len((await incident(desk, incident_id))["timeline"]) == 1

    # the annotation changes: one timeline entry
    desk.clock.advance(minutes=1)
    (updated,) = await post(desk, payload("firing", description="Still down after a restart."))
    assert updated["outcome"] == "updated" and updated["incident_id"] == incident_id
    (same,) = await post(desk, payload("firing", description="Still down after a restart."))
    assert same["outcome"] == "unchanged"

    # resolved at the alert's end; the repeat of the resolved notification changes nothing
    ended = desk.clock.advance(minutes=10) - timedelta(minutes=2)
    (resolved,) = await post(desk, payload("resolved", ends=ended))
    assert resolved["outcome"] == "resolved"
    (replayed,) = await post(desk, payload("resolved", ends=ended))
    assert replayed["outcome"] == "unchanged"
    body = await incident(desk, incident_id)
    assert body["status"] == "resolved"
    assert datetime.fromisoformat(body["resolved_at"]) == ended
    assert body["resolution_clock"]["status"] == "met"
    # nobody answered before the fault went away, within its 30 minutes: the clock stopped
    assert body["response"]["status"] == "met"
    kinds = [e["kind"] for e in body["timeline"]]
    assert kinds == ["opened", "signal", "signal", "resolved"]

    # it fires again (a new occurrence) before anyone verified: the same incident reopens
    desk.clock.advance(minutes=3)
    (back,) = await post(desk, payload("firing", starts=ended + timedelta(minutes=2)))
    assert back == {**back, "outcome": "reopened", "incident_id": incident_id}
    body = await incident(desk, incident_id)
    assert body["status"] == "open" and body["resolved_at"] is None

    # an O&M engineer resolves it, the bureau verifies it
    om, city = bearer(Role.OM_OPERATOR), bearer(Role.CITY_SUPERVISOR)
    for path, who in (("respond", om), ("resolve", om), ("verify", city)):
        response = await desk.client.post(
            f"/incidents/{incident_id}/{path}", json={"text": "重启 alarm 服务"}, headers=who
        )
        assert response.status_code == 200, (path, response.text)
    assert (await incident(desk, incident_id))["status"] == "verified"

    # the verified occurrence's notifications, replayed: recorded at most, never reopened
    (late,) = await post(desk, payload("firing", starts=ended + timedelta(minutes=2)))
    assert late["outcome"] == "unchanged" and late["incident_id"] == incident_id
    (late_end,) = await post(
        desk, payload("resolved", starts=ended + timedelta(minutes=2), ends=desk.clock.now)
    )
    assert late_end["outcome"] == "recorded" and late_end["incident_id"] == incident_id
    assert (await incident(desk, incident_id))["status"] == "verified"

    # a later, new occurrence is a new incident
    (fresh,) = await post(desk, payload("firing", starts=desk.clock.advance(hours=1)))
    assert fresh["outcome"] == "opened" and fresh["incident_id"] != incident_id

    # the changes were audited as Alertmanager's, the repeats not at all
    audits = [e for e in desk.audit_events() if e.action == "incident.alert"]
    assert all(e.actor == "alertmanager" and e.actor_kind == "service" for e in audits)
    outcomes = [a["outcome"] for e in audits for a in e.details["alerts"]]
    assert outcomes == ["opened", "updated", "resolved", "reopened", "recorded", "opened"]


async def test_a_resolved_alert_the_desk_never_saw_firing_is_put_on_record(desk: Desk) -> None:
    body = payload("resolved", ends=desk.clock.now - timedelta(minutes=1))
    body["alerts"][0] |= {
        "fingerprint": "ffff000011112222",
        "labels": {"alertname": "EcoWattHttpSlow", "service": "registry", "fault_level": "一般"},
    }
    (result,) = await post(desk, body)
    assert result["outcome"] == "resolved"
    assert result["correlation"] == "alert:ffff000011112222"
    record = await incident(desk, result["incident_id"])
    assert record["status"] == "resolved" and record["level"] == "minor"
    assert (await post(desk, body))[0]["outcome"] == "unchanged"


async def test_only_alertmanagers_token_is_accepted(desk: Desk) -> None:
    body = payload("firing")
    assert (await desk.client.post("/alertmanager", json=body)).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert (await desk.client.post("/alertmanager", json=body, headers=wrong)).status_code == 401
    # a person's token is no Alertmanager token
    response = await desk.client.post("/alertmanager", json=body, headers=bearer(Role.ADMIN))
    assert response.status_code == 401
    # malformed payloads with the right token: 422, nothing opened
    response = await desk.client.post("/alertmanager", json={"alerts": "x"}, headers=HOOK)
    assert response.status_code == 422


async def test_without_a_token_configured_the_receiver_is_closed(desk_factory: Any) -> None:
    closed = await desk_factory(ops_alertmanager_token=None)
    response = await closed.client.post("/alertmanager", json=payload("firing"), headers=HOOK)
    assert response.status_code == 403
    assert "ECOWATT_OPS_ALERTMANAGER_TOKEN" in response.json()["detail"]
