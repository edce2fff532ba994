"""What the engine decided, written to the database: runtimes (version-checked), state
changes, alarms, their journal and the outbox rows of `facility.states` and `alarms` — all in
the caller's transaction, so that they commit together or not at all."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ecowatt_kernel.bus import Message, TransientError
from ecowatt_kernel.contracts import AlarmChanged, FacilityStateChanged, encode
from ecowatt_kernel.outbox import enqueue
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy import case, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ecowatt_alarm import tables as T
from ecowatt_alarm.engine import AlarmOp, Effects, Sample, StateChange
from ecowatt_alarm.model import EnterpriseModel
from ecowatt_alarm.settings import AlarmSettings

__all__ = ["EffectWriter", "alarm_event", "point_evidence", "row_event", "ts"]

Connection = AsyncSession | AsyncConnection

_UPSERT_RUNTIME = text(
    """
    INSERT INTO alarm.runtime (enterprise_id, version, state, updated_at)
    SELECT u.e, u.v, u.s::jsonb, now()
    FROM unnest(CAST(:ids AS text[]), CAST(:versions AS bigint[]), CAST(:states AS text[]))
         AS u(e, v, s)
    ON CONFLICT (enterprise_id) DO UPDATE
       SET version = EXCLUDED.version, state = EXCLUDED.state, updated_at = EXCLUDED.updated_at
     WHERE alarm.runtime.version = EXCLUDED.version - 1
    RETURNING enterprise_id
    """
)

_CHANGE_OF_OP = {
    "update": "updated",
    "escalate": "escalated",
    "recover": "recovered",
    "unsuppress": "opened",
}
_JOURNAL_OF_OP = {"recover": "recovered", "unsuppress": "unsuppressed", "escalate": "escalated"}


def ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class EffectWriter:
    """Writes runtimes and effects of one batch in the caller's transaction."""

    def __init__(
        self,
        *,
        settings: AlarmSettings,
        view: RegistryView,
        model_of: Callable[[str], EnterpriseModel | None],
    ) -> None:
        self.settings = settings
        self.view = view
        self.model_of = model_of

    async def write_runtimes(
        self, conn: Connection, written: Sequence[tuple[str, int, str]]
    ) -> None:
        """Upsert (enterprise, version, JSON) rows; TransientError when one moved on elsewhere."""
        if not written:
            return
        result = await conn.execute(
            _UPSERT_RUNTIME,
            {
                "ids": [w[0] for w in written],
                "versions": [w[1] for w in written],
                "states": [w[2] for w in written],
            },
        )
        stored = {row[0] for row in result}
        if len(stored) < len(written):
            stale = sorted({w[0] for w in written} - stored)
            raise TransientError(
                f"alarm runtime of {', '.join(stale[:5])} was changed by another process; reloading"
            )

    async def kept_samples(self, conn: Connection, enterprise_id: str) -> list[Sample]:
        """The samples kept since the enterprise's checkpoint (`EventTime.replay`)."""
        r = T.retained_sample.c
        rows = await conn.execute(
            select(r.t, r.point_id, r.power, r.voltage, r.interval)
            .where(r.enterprise_id == enterprise_id)
            .order_by(r.t, r.point_id)
        )
        return [Sample(*row) for row in rows]

    async def write(self, conn: Connection, fx: Effects, *, now: float) -> None:
        """Kept samples, withdrawn and new state changes, alarm operations, journal rows and
        their events in the outbox; `now` is the service clock (discovery time)."""
        await self._retain(conn, fx)
        if fx.withdrawn:
            s = T.state_change.c
            for enterprise, subject, state, since in fx.withdrawn:
                await conn.execute(
                    update(T.state_change)
                    .where(
                        s.enterprise_id == enterprise,
                        s.subject_id == subject,
                        s.state == state,
                        s.since == ts(since),
                        s.withdrawn_at.is_(None),
                    )
                    .values(withdrawn_at=ts(now))
                )
        messages: list[Message] = []
        if fx.states:
            await conn.execute(
                T.state_change.insert(),
                [
                    {
                        "enterprise_id": c.enterprise_id,
                        "subject_kind": c.subject_kind,
                        "subject_id": c.subject_id,
                        "state": c.state,
                        "previous_state": c.previous_state,
                        "since": ts(c.since),
                        "reason": c.reason,
                        "evidence": c.evidence,
                    }
                    for c in fx.states
                ],
            )
            messages.extend(self._state_event(c) for c in fx.states)
        # Retractions first: they free the (rule, subject) slot of an active alarm.
        for op in sorted(fx.alarms, key=lambda o: o.op != "retract"):
            message = await self._write_alarm(conn, op, now)
            if message is not None:
                messages.append(message)
        await enqueue(conn, T.outbox, messages)

    async def _retain(self, conn: Connection, fx: Effects) -> None:
        released = set(fx.release)
        rows = [
            {
                "enterprise_id": e,
                "t": s.t,
                "point_id": s.point_id,
                "power": s.power,
                "voltage": s.voltage,
                "interval": s.interval,
            }
            for e, s in fx.retain
            if e not in released
        ]
        if rows:
            await conn.execute(T.retained_sample.insert(), rows)
        if released:
            await conn.execute(
                delete(T.retained_sample).where(
                    T.retained_sample.c.enterprise_id.in_(sorted(released))
                )
            )

    def _state_event(self, c: StateChange) -> Message:
        facility_id = None
        if c.subject_kind == "point":
            point = self.view.point(c.subject_id)
            facility_id = point.facility_id if point else None
        event = FacilityStateChanged(
            enterprise_id=c.enterprise_id,
            subject_kind=c.subject_kind,  # type: ignore[arg-type]
            subject_id=c.subject_id,
            state=c.state,  # type: ignore[arg-type]
            previous_state=c.previous_state,
            since=ts(c.since),  # type: ignore[arg-type]
            reason=c.reason,
            evidence=c.evidence,
            facility_id=facility_id,
        )
        return encode(event, topic=self.settings.alarm_states_topic)

    def _late(self, alarm: dict[str, Any], now: float) -> bool:
        """Found in late data: by a re-judgement, or decided long after its data time."""
        decided = alarm.get("decided_at")
        return bool(alarm.get("late")) or (
            decided is not None and now - decided > self.settings.alarm_lateness_s
        )

    async def _write_alarm(self, conn: Connection, op: AlarmOp, now: float) -> Message | None:
        if op.op == "retract":
            return await self._retract(conn, op, now)
        if op.op == "amend":
            return await self._amend(conn, op, now)
        a = op.alarm
        model = self.model_of(a["enterprise_id"])
        evidence = {
            "series": {
                pid: [[ts(t).isoformat(), p] for t, p in points]  # type: ignore[union-attr]
                for pid, points in a.get("series", {}).items()
            },
            "points": point_evidence(model, a.get("point_ids", [])),
        }
        late = self._late(a, now)
        if op.op == "open":
            status = "suppressed" if a.get("suppressed_by") else "open"
            await conn.execute(
                insert(T.alarm)
                .values(
                    id=a["id"],
                    rule_code=a["rule_code"],
                    rule_version=a["rule_version"],
                    rule_name=a["rule_name"],
                    enterprise_id=a["enterprise_id"],
                    enterprise_name=model.name if model else None,
                    district_code=model.district_code if model else None,
                    zone=model.zone if model else None,
                    industry_code=model.industry_code if model else None,
                    subject_kind=a["subject_kind"],
                    subject_id=a["subject_id"],
                    group_id=a.get("group_id"),
                    facility_ids=a.get("facility_ids", []),
                    point_ids=a.get("point_ids", []),
                    level=a["level"],
                    status=status,
                    active=a.get("active", True),
                    suppressed_by=a.get("suppressed_by"),
                    first_at=ts(a["first_at"]),
                    last_at=ts(a["last_at"]),
                    recovered_at=ts(a.get("recovered_at")),
                    explanation=a["explanation"],
                    detail=a.get("detail", {}),
                    evidence=evidence,
                    discovered_at=ts(now),
                    late=late,
                )
                .on_conflict_do_nothing()
            )
            await self._journal(
                conn,
                a["id"],
                "suppressed" if status == "suppressed" else "opened",
                status,
                a["explanation"] + ("（迟到/补传数据中发现）" if late else ""),
                {"level": a["level"], "late": late},
            )
            if a.get("closing_explanation"):
                await self._journal(
                    conn, a["id"], "recovered", status, a["closing_explanation"], {"late": late}
                )
            change = "suppressed" if status == "suppressed" else "opened"
        else:
            # The opening explanation stays as it was; this operation's own explanation goes
            # to the journal and the event.
            values: dict[str, Any] = {
                "level": a["level"],
                "last_at": ts(a["last_at"]),
                "evidence": evidence,
                "updated_at": datetime.now(UTC),
                "active": a["active"],
                "recovered_at": ts(a.get("recovered_at")),
            }
            if a.get("detail"):
                values["detail"] = a["detail"]
            if op.op == "unsuppress":
                values["status"] = "open"
            row = (
                await conn.execute(
                    update(T.alarm)
                    .where(T.alarm.c.id == a["id"])
                    .values(**values)
                    .returning(T.alarm.c.status)
                )
            ).first()
            status = row.status if row else "open"
            if op.op in _JOURNAL_OF_OP:
                await self._journal(
                    conn,
                    a["id"],
                    _JOURNAL_OF_OP[op.op],
                    status,
                    a["explanation"],
                    {"level": a["level"]},
                )
            change = _CHANGE_OF_OP[op.op]
        event = alarm_event(a, change, status, model).model_copy(
            update={"late": late, "discovered_at": ts(now)}
        )
        return encode(event, topic=self.settings.alarm_alarms_topic)

    async def _journal(
        self,
        conn: Connection,
        alarm_id: str,
        action: str,
        status: str,
        text: str,
        data: dict[str, Any],
    ) -> None:
        await conn.execute(
            T.journal.insert().values(
                alarm_id=alarm_id,
                actor="system",
                actor_role="system",
                action=action,
                status_after=status,
                text=text,
                data=data,
            )
        )

    async def _amend(self, conn: Connection, op: AlarmOp, now: float) -> Message | None:
        a = op.alarm
        row = (
            (
                await conn.execute(
                    update(T.alarm)
                    .where(T.alarm.c.id == a["id"])
                    .values(
                        first_at=ts(a["first_at"]),
                        last_at=ts(a["last_at"]),
                        recovered_at=ts(a.get("recovered_at")),
                        active=a["active"],
                        level=a["level"],
                        updated_at=datetime.now(UTC),
                    )
                    .returning(*T.alarm.c)
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        text = a["amendment"] + (f" {a['explanation']}" if a.get("explanation") else "")
        data = {"before": a.get("before"), "late": True}
        await self._journal(conn, a["id"], "amended", row["status"], text, data)
        event = row_event(
            row, change="updated", explanation=text, evidence={"amended": data["before"]}
        ).model_copy(update={"late": True, "discovered_at": ts(now)})
        return encode(event, topic=self.settings.alarm_alarms_topic)

    async def _retract(self, conn: Connection, op: AlarmOp, now: float) -> Message | None:
        a = op.alarm
        retraction = {"reason": a["reason"], "at": ts(now).isoformat()}  # type: ignore[union-attr]
        c = T.alarm.c
        row = (
            (
                await conn.execute(
                    update(T.alarm)
                    .where(c.id == a["id"])
                    .values(
                        status=case(
                            (c.status.in_(("open", "suppressed")), "retracted"), else_=c.status
                        ),
                        active=False,
                        retracted_at=ts(now),
                        retraction=retraction,
                        updated_at=datetime.now(UTC),
                    )
                    .returning(*T.alarm.c)
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        await self._journal(conn, a["id"], "retracted", row["status"], a["reason"], {})
        event = row_event(row, change="retracted", explanation=a["reason"], evidence={}).model_copy(
            update={"retraction": retraction, "discovered_at": row["discovered_at"]}
        )
        return encode(event, topic=self.settings.alarm_alarms_topic)


def row_event(
    row: Any, *, change: str, explanation: str | None, evidence: dict[str, Any]
) -> AlarmChanged:
    """The `alarms` event of a change to a stored alarm row (handling, amendments)."""
    return AlarmChanged(
        alarm_id=row["id"],
        enterprise_id=row["enterprise_id"],
        rule_code=row["rule_code"],
        rule_version=row["rule_version"],
        subject_id=row["subject_id"],
        change=change,  # type: ignore[arg-type]
        status=row["status"],
        level=row["level"],
        opened_at=row["first_at"],
        changed_at=datetime.now(UTC),
        explanation=explanation,
        rule_name=row["rule_name"],
        subject_kind=row["subject_kind"],
        group_id=row["group_id"],
        facility_ids=list(row["facility_ids"]),
        active=row["active"],
        first_at=row["first_at"],
        last_at=row["last_at"],
        recovered_at=row["recovered_at"],
        suppressed_by=row["suppressed_by"],
        district_code=row["district_code"],
        evidence=evidence,
        discovered_at=row.get("discovered_at"),
        late=bool(row.get("late")),
        retraction=row.get("retraction"),
    )


def alarm_event(
    a: dict[str, Any], change: str, status: str, model: EnterpriseModel | None
) -> AlarmChanged:
    """The `alarms` event of an engine alarm operation."""
    return AlarmChanged(
        alarm_id=a["id"],
        enterprise_id=a["enterprise_id"],
        rule_code=a["rule_code"],
        rule_version=a["rule_version"],
        subject_id=a["subject_id"],
        change=change,  # type: ignore[arg-type]
        status=status,
        level=a["level"],
        opened_at=ts(a["first_at"]),  # type: ignore[arg-type]
        changed_at=datetime.now(UTC),
        explanation=a["explanation"],
        evidence={"detail": a.get("detail", {}), "point_ids": a.get("point_ids", [])},
        rule_name=a.get("rule_name"),
        subject_kind=a.get("subject_kind"),
        group_id=a.get("group_id"),
        facility_ids=list(a.get("facility_ids", [])),
        active=a.get("active"),
        first_at=ts(a["first_at"]),
        last_at=ts(a.get("last_at")),
        recovered_at=ts(a.get("recovered_at")),
        suppressed_by=a.get("suppressed_by"),
        district_code=model.district_code if model else None,
    )


def point_evidence(model: EnterpriseModel | None, point_ids: list[str]) -> dict[str, Any]:
    """The thresholds of the involved points, frozen into the alarm's evidence."""
    out: dict[str, Any] = {}
    for pid in point_ids:
        pm = model.points.get(pid) if model else None
        if pm is None:
            continue
        out[pid] = {
            "name": pm.name,
            "kind": pm.kind,
            "threshold_kw": round(pm.threshold_kw, 3),
            "threshold_source": pm.threshold_source,
            "threshold_basis": pm.threshold_basis,
            "idle_kw": round(pm.idle_kw, 3),
            "low_load_kw": None if pm.low_load_kw is None else round(pm.low_load_kw, 3),
        }
    return out
