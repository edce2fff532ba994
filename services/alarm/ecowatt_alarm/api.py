"""The alarm REST API (mounted at /api/alarm in standalone mode). Scope is enforced here, on
the server: every query is filtered by the caller's data scope, and an alarm, filing or
state outside it answers 404 whatever the URL says.

Handling roles: city supervisors dispatch, verify and close anywhere; district officers
verify and close their own district's alarms; enterprise users answer (feedback with
attachments) and file planned outages for their own enterprise, but never verify or close.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from ecowatt_kernel.app import DbSession, ServiceContext, service_context
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE, Column, rows_to_xlsx
from ecowatt_kernel.identity import CurrentIdentity, DataScope, Identity, Role, require_roles
from ecowatt_kernel.problems import Conflict, Forbidden, NotFound, Problem
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_alarm import tables as T
from ecowatt_alarm.rules import DEFAULT_RULES, LEVEL_NAMES

__all__ = ["router"]

router = APIRouter(tags=["alarm"])
HANDLERS = (Role.CITY_SUPERVISOR, Role.DISTRICT_OFFICER)
STATUS_ZH = {
    "open": "待处理",
    "suppressed": "已抑制",
    "dispatched": "已下发",
    "replied": "企业已反馈",
    "verified": "已核查",
    "closed": "已销号",
}
VERIFY_RESULTS = {
    "enterprise_problem": "企业问题",
    "equipment_fault": "监测设备故障",
    "false_alarm": "误报",
}


_HANDLER = require_roles(*HANDLERS)
_CITY = require_roles(Role.CITY_SUPERVISOR)
_ANSWERER = require_roles(Role.ENTERPRISE_USER, Role.OM_OPERATOR)
_FILER = require_roles(Role.ENTERPRISE_USER, Role.OM_OPERATOR, *HANDLERS)
_OM = require_roles(Role.OM_OPERATOR)


def _ctx(request: Request) -> ServiceContext:
    return service_context(request)


def _role_of(identity: Identity) -> str:
    for role in (
        Role.ADMIN,
        Role.CITY_SUPERVISOR,
        Role.DISTRICT_OFFICER,
        Role.OM_OPERATOR,
        Role.ENTERPRISE_USER,
    ):
        if role in identity.roles:
            return role.value
    return next(iter(identity.roles)).value if identity.roles else "unknown"


def _district_prefix(code: str) -> str:
    """GB/T 2260: 610000 covers the province, 610100 the city, 610113 one county."""
    if len(code) == 6 and code.isdigit():
        if code.endswith("0000"):
            return code[:2]
        if code.endswith("00"):
            return code[:4]
    return code


def _alarm_scope(scope: DataScope) -> ColumnElement[bool]:
    return scope.where(
        district_column=T.alarm.c.district_code, enterprise_column=T.alarm.c.enterprise_id
    )


# ------------------------------------------------------------------------------ listing


class AlarmFilters(BaseModel):
    district: str | None = None
    zone: str | None = None
    industry: str | None = None
    enterprise_id: str | None = None
    rule: str | None = None
    level: int | None = None
    status: str | None = None
    active: bool | None = None
    since: AwareDatetime | None = Field(None, alias="from")
    until: AwareDatetime | None = Field(None, alias="to")


def _filters(
    district: str | None = None,
    zone: str | None = None,
    industry: str | None = None,
    enterprise_id: str | None = None,
    rule: str | None = None,
    level: int | None = None,
    status: str | None = None,
    active: bool | None = None,
    since: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    until: Annotated[AwareDatetime | None, Query(alias="to")] = None,
) -> list[ColumnElement[bool]]:
    a = T.alarm.c
    out: list[ColumnElement[bool]] = []
    if district:
        out.append(a.district_code.startswith(_district_prefix(district), autoescape=True))
    if zone:
        out.append(a.zone == zone)
    if industry:
        out.append(a.industry_code.startswith(industry))
    if enterprise_id:
        out.append(a.enterprise_id == enterprise_id)
    if rule:
        out.append(a.rule_code.in_(rule.split(",")))
    if level is not None:
        out.append(a.level == level)
    if status:
        out.append(a.status.in_(status.split(",")))
    if active is not None:
        out.append(a.active.is_(active))
    if since is not None:
        out.append(a.last_at >= since)
    if until is not None:
        out.append(a.first_at < until)
    return out


Filters = Annotated[list[ColumnElement[bool]], Depends(_filters)]
SUMMARY = [
    T.alarm.c[k]
    for k in (
        "id",
        "rule_code",
        "rule_version",
        "rule_name",
        "enterprise_id",
        "enterprise_name",
        "district_code",
        "zone",
        "industry_code",
        "subject_kind",
        "subject_id",
        "group_id",
        "level",
        "status",
        "active",
        "suppressed_by",
        "first_at",
        "last_at",
        "recovered_at",
        "closed_at",
        "dispatched_to",
        "verification",
        "explanation",
    )
]


def _summary(row: Any) -> dict[str, Any]:
    d = dict(row)
    end = d["recovered_at"] or d["last_at"]
    d["duration_min"] = round((end - d["first_at"]).total_seconds() / 60, 1)
    d["level_name"] = LEVEL_NAMES.get(d["level"])
    d["status_name"] = STATUS_ZH.get(d["status"], d["status"])
    return d


@router.get("/alarms", summary="Live alarms and history, filtered and paginated")
async def list_alarms(
    identity: CurrentIdentity,
    session: DbSession,
    filters: Filters,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    where = and_(_alarm_scope(identity.scope), *filters)
    total = await session.scalar(select(func.count()).select_from(T.alarm).where(where))
    rows = await session.execute(
        select(*SUMMARY)
        .where(where)
        .order_by(T.alarm.c.first_at.desc(), T.alarm.c.id)
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    return {
        "total": total,
        "page": page,
        "page_size": page_size,
        "items": [_summary(r) for r in rows.mappings()],
    }


EXPORT_COLUMNS = [
    Column("id", "报警编号", width=38),
    Column("enterprise_name", "企业", width=24),
    Column("district_code", "区县"),
    Column("zone", "片区"),
    Column("industry_code", "行业"),
    Column("rule_code", "规则"),
    Column("rule_name", "报警类型", width=20),
    Column("level_name", "级别"),
    Column("status_name", "状态"),
    Column("first_at", "报警时间", width=20),
    Column("last_at", "最后时间", width=20),
    Column("duration_min", "持续(分钟)"),
    Column("subject_id", "对象", width=20),
    Column("explanation", "说明", width=80),
]


@router.get("/alarms/export.xlsx", summary="Excel export of the filtered alarms")
async def export_alarms(
    identity: CurrentIdentity, session: DbSession, filters: Filters, request: Request
) -> Response:
    tz = _ctx(request).settings.timezone
    rows = await session.execute(
        select(*SUMMARY)
        .where(and_(_alarm_scope(identity.scope), *filters))
        .order_by(T.alarm.c.first_at.desc())
        .limit(50_000)
    )
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    items = []
    for r in rows.mappings():
        d = _summary(r)
        for k in ("first_at", "last_at"):
            d[k] = d[k].astimezone(zone)
        items.append(d)
    data = rows_to_xlsx(EXPORT_COLUMNS, items, title="报警")
    return Response(
        data,
        media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": 'attachment; filename="alarms.xlsx"'},
    )


async def _load(session: AsyncSession, alarm_id: str, identity: Identity) -> Any:
    row = (
        (
            await session.execute(
                select(T.alarm).where(T.alarm.c.id == alarm_id, _alarm_scope(identity.scope))
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"alarm {alarm_id} not found")
    return row


@router.get("/alarms/{alarm_id}", summary="One alarm with its evidence series and journal")
async def get_alarm(alarm_id: str, identity: CurrentIdentity, session: DbSession) -> dict[str, Any]:
    row = await _load(session, alarm_id, identity)
    journal = await session.execute(
        select(T.journal).where(T.journal.c.alarm_id == alarm_id).order_by(T.journal.c.id)
    )
    files = await session.execute(
        select(
            T.attachment.c.id,
            T.attachment.c.journal_id,
            T.attachment.c.filename,
            T.attachment.c.content_type,
            T.attachment.c.size,
            T.attachment.c.sha256,
            T.attachment.c.uploaded_by,
            T.attachment.c.uploaded_at,
        )
        .where(T.attachment.c.alarm_id == alarm_id)
        .order_by(T.attachment.c.uploaded_at)
    )
    out = _summary({k: row[k] for k in (c.name for c in SUMMARY)})
    out.update(
        facility_ids=row["facility_ids"],
        point_ids=row["point_ids"],
        detail=row["detail"],
        evidence=row["evidence"],
        journal=[dict(j) for j in journal.mappings()],
        attachments=[dict(f) for f in files.mappings()],
    )
    return out


# ----------------------------------------------------------------------------- handling


async def _act(
    session: AsyncSession,
    request: Request,
    alarm: Any,
    identity: Identity,
    action: str,
    status: str | None,
    text: str | None,
    data: dict[str, Any] | None = None,
    **values: Any,
) -> int:
    if status is not None or values:
        upd = dict(values)
        if status is not None:
            upd["status"] = status
        upd["updated_at"] = datetime.now(UTC)
        await session.execute(update(T.alarm).where(T.alarm.c.id == alarm["id"]).values(**upd))
    journal_id = await session.scalar(
        T.journal.insert()
        .values(
            alarm_id=alarm["id"],
            actor=identity.subject,
            actor_role=_role_of(identity),
            action=action,
            status_after=status or alarm["status"],
            text=text,
            data=data or {},
        )
        .returning(T.journal.c.id)
    )
    if status is not None:
        await _publish_status(session, request, alarm, status, values)
    return int(journal_id or 0)


async def _publish_status(
    session: AsyncSession, request: Request, alarm: Any, status: str, values: dict[str, Any]
) -> None:
    from ecowatt_kernel.contracts import AlarmChanged, encode
    from ecowatt_kernel.outbox import enqueue

    ctx = _ctx(request)
    event = AlarmChanged(
        alarm_id=alarm["id"],
        enterprise_id=alarm["enterprise_id"],
        rule_code=alarm["rule_code"],
        rule_version=alarm["rule_version"],
        subject_id=alarm["subject_id"],
        change="closed" if status == "closed" else "updated",
        status=status,
        level=alarm["level"],
        opened_at=alarm["first_at"],
        changed_at=datetime.now(UTC),
        explanation=alarm["explanation"],
        rule_name=alarm["rule_name"],
        subject_kind=alarm["subject_kind"],
        group_id=alarm["group_id"],
        facility_ids=list(alarm["facility_ids"]),
        active=alarm["active"],
        first_at=alarm["first_at"],
        last_at=alarm["last_at"],
        recovered_at=alarm["recovered_at"],
        suppressed_by=alarm["suppressed_by"],
        district_code=alarm["district_code"],
        evidence={"handling": {k: str(v) for k, v in values.items()}},
    )
    await enqueue(session, T.outbox, [encode(event, topic=ctx.settings.alarm_alarms_topic)])
    ctx.state["processor"].relay.wake()


class Dispatch(BaseModel):
    district_code: str | None = Field(None, description="Default: the enterprise's district")
    note: str | None = None


@router.post("/alarms/{alarm_id}/dispatch", summary="Dispatch an alarm to a district (下发)")
async def dispatch(
    alarm_id: str,
    body: Dispatch,
    request: Request,
    session: DbSession,
    identity: Identity = _CITY,
) -> dict[str, Any]:
    alarm = await _load(session, alarm_id, identity)
    if alarm["status"] in ("closed",):
        raise Conflict("the alarm is closed")
    district = body.district_code or alarm["district_code"]
    await _act(
        session,
        request,
        alarm,
        identity,
        "dispatched",
        "dispatched",
        body.note,
        {"district_code": district},
        dispatched_to=district,
    )
    await session.commit()
    return {"id": alarm_id, "status": "dispatched", "dispatched_to": district}


def _check_district(alarm: Any, identity: Identity) -> None:
    if identity.has_any_role(Role.ADMIN, Role.CITY_SUPERVISOR):
        return
    if not identity.scope.allows(district=alarm["district_code"]):
        raise NotFound(f"alarm {alarm['id']} not found")


@router.post("/alarms/{alarm_id}/feedback", summary="Enterprise feedback, with attachments")
async def feedback(
    alarm_id: str,
    request: Request,
    session: DbSession,
    text: Annotated[str, Form(min_length=1, max_length=5000)],
    cause: Annotated[str | None, Form(max_length=500)] = None,
    files: Annotated[list[UploadFile] | None, File()] = None,
    identity: Identity = _ANSWERER,
) -> dict[str, Any]:
    alarm = await _load(session, alarm_id, identity)
    if alarm["status"] == "closed":
        raise Conflict("the alarm is closed")
    settings = _ctx(request).settings
    stored = []
    for upload in files or []:
        content = await upload.read(settings.alarm_attachment_max_bytes + 1)
        if len(content) > settings.alarm_attachment_max_bytes:
            raise Problem(
                f"attachment {upload.filename} exceeds {settings.alarm_attachment_max_bytes} bytes",
                status=413,
                type_suffix="attachment-too-large",
            )
        ctype = (upload.content_type or "").split(";")[0].strip().lower()
        if ctype not in settings.alarm_attachment_types or not _sniff(ctype, content):
            raise Problem(
                f"attachment {upload.filename}: content type {ctype!r} is not "
                "allowed or does not match the content",
                status=415,
                type_suffix="unsupported-attachment",
            )
        stored.append((upload.filename or "attachment", ctype, content))
    status = "replied" if alarm["status"] in ("open", "dispatched", "replied") else None
    journal_id = await _act(
        session,
        request,
        alarm,
        identity,
        "feedback",
        status,
        text,
        {"cause": cause} if cause else {},
    )
    ids = []
    for filename, ctype, content in stored:
        att_id = str(uuid.uuid4())
        path = None
        blob: bytes | None = content
        if settings.alarm_attachments_dir is not None:
            folder = Path(settings.alarm_attachments_dir) / alarm_id
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            path = str(folder / att_id)
            await asyncio.to_thread(Path(path).write_bytes, content)
            blob = None
        await session.execute(
            T.attachment.insert().values(
                id=att_id,
                alarm_id=alarm_id,
                journal_id=journal_id,
                filename=filename[:200],
                content_type=ctype,
                size=len(content),
                sha256=hashlib.sha256(content).hexdigest(),
                content=blob,
                path=path,
                uploaded_by=identity.subject,
            )
        )
        ids.append(att_id)
    await session.commit()
    return {"id": alarm_id, "status": status or alarm["status"], "attachments": ids}


_MAGIC = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "application/pdf": (b"%PDF-",),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (b"PK\x03\x04",),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (b"PK\x03\x04",),
}


def _sniff(ctype: str, content: bytes) -> bool:
    """The declared type matches the bytes (magic numbers; text must be UTF-8)."""
    if ctype == "text/plain":
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return b"\x00" not in content
    return any(content.startswith(m) for m in _MAGIC.get(ctype, ()))


@router.get("/alarms/{alarm_id}/attachments/{attachment_id}", summary="Download an attachment")
async def download(
    alarm_id: str, attachment_id: str, identity: CurrentIdentity, session: DbSession
) -> Response:
    await _load(session, alarm_id, identity)
    row = (
        (
            await session.execute(
                select(T.attachment).where(
                    T.attachment.c.id == attachment_id, T.attachment.c.alarm_id == alarm_id
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound("attachment not found")
    content = row["content"]
    if content is None:
        content = await asyncio.to_thread(Path(row["path"]).read_bytes)
    return Response(
        content,
        media_type=row["content_type"],
        headers={
            "Content-Disposition": f'attachment; filename="{row["id"]}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


class Verify(BaseModel):
    result: Literal["enterprise_problem", "equipment_fault", "false_alarm"]
    note: str | None = None


@router.post("/alarms/{alarm_id}/verify", summary="Verification with a result (核查)")
async def verify(
    alarm_id: str,
    body: Verify,
    request: Request,
    session: DbSession,
    identity: Identity = _HANDLER,
) -> dict[str, Any]:
    alarm = await _load(session, alarm_id, identity)
    _check_district(alarm, identity)
    if alarm["status"] == "closed":
        raise Conflict("the alarm is closed")
    await _act(
        session,
        request,
        alarm,
        identity,
        "verified",
        "verified",
        body.note,
        {"result": body.result, "result_name": VERIFY_RESULTS[body.result]},
        verification=body.result,
    )
    await session.commit()
    return {"id": alarm_id, "status": "verified", "verification": body.result}


class Close(BaseModel):
    note: str | None = None


@router.post("/alarms/{alarm_id}/close", summary="Closure (销号)")
async def close(
    alarm_id: str,
    body: Close,
    request: Request,
    session: DbSession,
    identity: CurrentIdentity,
) -> dict[str, Any]:
    if not identity.has_any_role(Role.ADMIN, *HANDLERS):
        raise Forbidden("only bureau users close alarms; enterprises answer them")
    alarm = await _load(session, alarm_id, identity)
    _check_district(alarm, identity)
    if alarm["status"] == "closed":
        raise Conflict("the alarm is already closed")
    if alarm["status"] not in ("verified", "suppressed"):
        raise Conflict("verify the alarm before closing it (核查后销号)")
    await _act(
        session,
        request,
        alarm,
        identity,
        "closed",
        "closed",
        body.note,
        closed_at=datetime.now(UTC),
    )
    await session.commit()
    return {"id": alarm_id, "status": "closed"}


class Comment(BaseModel):
    text: str = Field(min_length=1, max_length=5000)


@router.post("/alarms/{alarm_id}/comments", summary="A note in the journal")
async def comment(
    alarm_id: str,
    body: Comment,
    request: Request,
    session: DbSession,
    identity: CurrentIdentity,
) -> dict[str, Any]:
    alarm = await _load(session, alarm_id, identity)
    await _act(session, request, alarm, identity, "comment", None, body.text)
    await session.commit()
    return {"id": alarm_id}


# ------------------------------------------------------------------------------ statistics


@router.get("/statistics", summary="Alarm counts by rule, district, industry or day")
async def statistics(
    identity: CurrentIdentity,
    session: DbSession,
    filters: Filters,
    by: Literal["rule", "district", "industry", "day", "level", "status"] = "rule",
) -> dict[str, Any]:
    a = T.alarm.c
    key: Any = {
        "rule": a.rule_code,
        "district": a.district_code,
        "industry": a.industry_code,
        "level": a.level,
        "status": a.status,
        "day": func.to_char(func.timezone("Asia/Shanghai", a.first_at), "YYYY-MM-DD"),
    }[by]
    rows = await session.execute(
        select(
            key.label("key"),
            func.count().label("count"),
            func.count().filter(a.active).label("active"),
            func.count().filter(a.status == "closed").label("closed"),
            func.count().filter(a.status == "suppressed").label("suppressed"),
        )
        .where(and_(_alarm_scope(identity.scope), *filters))
        .group_by(key)
        .order_by(key)
    )
    return {"by": by, "items": [dict(r) for r in rows.mappings()]}


# ---------------------------------------------------------------------------- filings (报备)


class FilingIn(BaseModel):
    enterprise_id: str
    facility_ids: list[str] = Field(default_factory=list, description="Empty: whole enterprise")
    reason: str = Field(min_length=2, max_length=1000)
    category: Literal["maintenance", "retrofit", "trial_run", "power_cut", "other"] = "maintenance"
    starts_at: AwareDatetime
    ends_at: AwareDatetime


def _filing_out(row: Any) -> dict[str, Any]:
    return dict(row)


@router.post("/filings", status_code=201, summary="File a planned outage (计划停运报备)")
async def file_outage(
    body: FilingIn,
    request: Request,
    session: DbSession,
    identity: Identity = _FILER,
) -> dict[str, Any]:
    view = _ctx(request).state["view"]
    enterprise = view.enterprise(body.enterprise_id)
    district = enterprise.district_code if enterprise else None
    if not identity.scope.allows(district=district, enterprise_id=body.enterprise_id):
        raise NotFound(f"enterprise {body.enterprise_id} not found")
    if body.ends_at <= body.starts_at:
        raise Problem("ends_at must be after starts_at", status=422)
    filing_id = str(uuid.uuid4())
    row = (
        (
            await session.execute(
                T.filing.insert()
                .values(
                    id=filing_id,
                    enterprise_id=body.enterprise_id,
                    district_code=district,
                    facility_ids=body.facility_ids,
                    reason=body.reason,
                    category=body.category,
                    starts_at=body.starts_at,
                    ends_at=body.ends_at,
                    status="pending",
                    filed_by=identity.subject,
                )
                .returning(*T.filing.c)
            )
        )
        .mappings()
        .one()
    )
    await session.commit()
    return _filing_out(row)


@router.get("/filings", summary="Planned-outage filings in scope")
async def list_filings(
    identity: CurrentIdentity,
    session: DbSession,
    status: str | None = None,
    enterprise_id: str | None = None,
) -> list[dict[str, Any]]:
    f = T.filing.c
    where = [
        identity.scope.where(district_column=f.district_code, enterprise_column=f.enterprise_id)
    ]
    if status:
        where.append(f.status == status)
    if enterprise_id:
        where.append(f.enterprise_id == enterprise_id)
    rows = await session.execute(select(T.filing).where(*where).order_by(f.filed_at.desc()))
    return [_filing_out(r) for r in rows.mappings()]


class Decision(BaseModel):
    note: str | None = None


async def _decide(
    filing_id: str,
    status: str,
    note: str | None,
    request: Request,
    session: AsyncSession,
    identity: Identity,
    allowed_from: tuple[str, ...],
) -> dict[str, Any]:
    f = T.filing.c
    row = (
        (
            await session.execute(
                select(T.filing)
                .where(
                    f.id == filing_id,
                    identity.scope.where(
                        district_column=f.district_code, enterprise_column=f.enterprise_id
                    ),
                )
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"filing {filing_id} not found")
    if row["status"] not in allowed_from:
        raise Conflict(f"the filing is {row['status']}")
    new = (
        (
            await session.execute(
                update(T.filing)
                .where(f.id == filing_id)
                .values(
                    status=status,
                    decided_by=identity.subject,
                    decided_at=datetime.now(UTC),
                    decision_note=note,
                )
                .returning(*T.filing.c)
            )
        )
        .mappings()
        .one()
    )
    await session.commit()
    _ctx(request).state["processor"].filing_changed(new)
    return _filing_out(new)


@router.post("/filings/{filing_id}/approve", summary="Approve a filing (bureau)")
async def approve(
    filing_id: str,
    body: Decision,
    request: Request,
    session: DbSession,
    identity: Identity = _HANDLER,
) -> dict[str, Any]:
    return await _decide(filing_id, "approved", body.note, request, session, identity, ("pending",))


@router.post("/filings/{filing_id}/reject", summary="Reject a filing (bureau)")
async def reject(
    filing_id: str,
    body: Decision,
    request: Request,
    session: DbSession,
    identity: Identity = _HANDLER,
) -> dict[str, Any]:
    return await _decide(filing_id, "rejected", body.note, request, session, identity, ("pending",))


@router.post("/filings/{filing_id}/withdraw", summary="Withdraw a filing")
async def withdraw(
    filing_id: str,
    body: Decision,
    request: Request,
    session: DbSession,
    identity: CurrentIdentity,
) -> dict[str, Any]:
    return await _decide(
        filing_id, "withdrawn", body.note, request, session, identity, ("pending", "approved")
    )


# ----------------------------------------------------------------------- states, thresholds


@router.get("/states", summary="Current point and facility states of an enterprise")
async def states(enterprise_id: str, request: Request, identity: CurrentIdentity) -> dict[str, Any]:
    ctx = _ctx(request)
    enterprise = ctx.state["view"].enterprise(enterprise_id)
    if enterprise is None or not identity.scope.allows(
        district=enterprise.district_code, enterprise_id=enterprise_id
    ):
        raise NotFound(f"enterprise {enterprise_id} not found")
    processor = ctx.state["processor"]
    rt = processor.runtimes.get(enterprise_id)

    def iso(t: float | None) -> str | None:
        return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()

    return {
        "enterprise_id": enterprise_id,
        "power_loss": bool(rt and rt.power_loss.get("on")),
        "points": {
            k: {
                "state": v.get("state"),
                "since": iso(v.get("since")),
                "power_kw": v.get("last_p"),
                "last_data": iso(v.get("last_t")),
            }
            for k, v in (rt.points.items() if rt else [])
        },
        "facilities": {
            k: {"state": v.get("state"), "since": iso(v.get("since"))}
            for k, v in (rt.facilities.items() if rt else [])
        },
    }


@router.get(
    "/overview", summary="Every enterprise in scope with its facility states and open alarms"
)
async def overview(
    request: Request,
    identity: CurrentIdentity,
    session: DbSession,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 500,
) -> dict[str, Any]:
    """The web application's city overview (一张图): position, facility kinds and current
    states, and the open alarms of each enterprise; live changes follow on the gateway's
    `/api/live/stream`."""
    ctx = _ctx(request)
    view = ctx.state["view"]
    processor = ctx.state["processor"]
    enterprises = sorted(
        (
            e
            for e in view.all("enterprise")
            if identity.scope.allows(district=e.district_code, enterprise_id=e.id)
        ),
        key=lambda e: e.id,
    )
    chosen = enterprises[(page - 1) * page_size : page * page_size]
    ids = [e.id for e in chosen]
    alarms: dict[str, list[dict[str, Any]]] = {}
    if ids:
        a = T.alarm.c
        rows = await session.execute(
            select(a.id, a.enterprise_id, a.rule_code, a.level, a.status, a.active).where(
                a.enterprise_id.in_(ids), a.status.notin_(("closed", "suppressed"))
            )
        )
        for r in rows.mappings():
            alarms.setdefault(r["enterprise_id"], []).append(
                {k: r[k] for k in ("id", "rule_code", "level", "status", "active")}
            )
    facilities: dict[str, list[Any]] = {}
    wanted = set(ids)
    for f in view.all("facility"):
        if f.enterprise_id in wanted:
            facilities.setdefault(f.enterprise_id, []).append(f)
    items = []
    for e in chosen:
        rt = processor.runtimes.get(e.id)
        states = rt.facilities if rt else {}
        items.append(
            {
                "id": e.id,
                "name": e.name,
                "district_code": e.district_code,
                "district_name": e.district_name,
                "industry_name": e.industry_name,
                "longitude": e.longitude,
                "latitude": e.latitude,
                "production_status": e.production_status,
                "facilities": {
                    f.id: {"kind": f.kind, "state": states.get(f.id, {}).get("state")}
                    for f in facilities.get(e.id, [])
                },
                "alarms": alarms.get(e.id, []),
            }
        )
    total = len(enterprises)
    return {
        "items": items,
        "total": total,
        "page": page,
        "page_size": page_size,
        "pages": (total + page_size - 1) // page_size,
    }


@router.get("/states/history", summary="State changes of a point or facility")
async def state_history(
    subject_id: str,
    request: Request,
    session: DbSession,
    identity: CurrentIdentity,
    since: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[dict[str, Any]]:
    c = T.state_change.c
    rows = await session.execute(
        select(T.state_change)
        .where(c.subject_id == subject_id, *([c.since >= since] if since else []))
        .order_by(c.since, c.id)
        .limit(limit)
    )
    view = _ctx(request).state["view"]
    out = []
    for r in rows.mappings():
        ent = view.enterprise(r["enterprise_id"])
        if identity.scope.allows(
            district=ent.district_code if ent else None, enterprise_id=r["enterprise_id"]
        ):
            out.append(dict(r))
    return out


@router.get("/thresholds", summary="Configured, defaulted and learned thresholds with suggestions")
async def thresholds(
    enterprise_id: str, request: Request, identity: CurrentIdentity
) -> list[dict[str, Any]]:
    ctx = _ctx(request)
    processor = ctx.state["processor"]
    model = processor.models.get(enterprise_id)
    enterprise = ctx.state["view"].enterprise(enterprise_id)
    if model is None or not identity.scope.allows(
        district=enterprise.district_code if enterprise else None, enterprise_id=enterprise_id
    ):
        raise NotFound(f"enterprise {enterprise_id} not found")
    out = []
    for pm in model.points.values():
        learned = pm.learned.rated_kw
        suggestion = None
        if learned:
            if pm.threshold_kw > 0.8 * learned:
                suggestion = "启停阈值高于学习额定负荷的 80%，可能配置过高"
            elif pm.threshold_kw < 0.02 * learned:
                suggestion = "启停阈值低于学习额定负荷的 2%，可能配置过低"
        ratio = 0.1 if pm.kind == "control" else 0.2
        out.append(
            {
                "point_id": pm.id,
                "name": pm.name,
                "kind": pm.kind,
                "threshold_kw": round(pm.threshold_kw, 3),
                "threshold_source": pm.threshold_source,
                "defaulted": pm.threshold_source != "configured",
                "basis": pm.threshold_basis,
                "idle_kw": round(pm.idle_kw, 3),
                "low_load_kw": pm.low_load_kw,
                "rated_kw": pm.rated_kw,
                "learned_rated_kw": learned,
                "learned_running_median_kw": pm.learned.running_median_kw,
                "suggestion": suggestion,
                "suggested_threshold_kw": round(ratio * learned, 3)
                if suggestion and learned
                else None,
            }
        )
    return out


@router.post("/learning/run", summary="Recompute learned rated load now (normally nightly)")
async def run_learning(request: Request, identity: Identity = _OM) -> dict[str, Any]:
    count = await _ctx(request).state["processor"].learn()
    return {"updated": count}


# ----------------------------------------------------------------------------------- rules


@router.get("/rules", summary="The rule catalogue with parameters and versions")
async def list_rules(identity: CurrentIdentity, session: DbSession) -> list[dict[str, Any]]:
    rows = await session.execute(select(T.rule).order_by(T.rule.c.code))
    return [dict(r) for r in rows.mappings()]


class RuleEdit(BaseModel):
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: bool | None = None
    reason: str = Field(min_length=2)


@router.put("/rules/{code}", summary="Change a rule's parameters (a new version)")
async def edit_rule(
    code: str,
    body: RuleEdit,
    request: Request,
    session: DbSession,
    identity: Identity = _CITY,
) -> dict[str, Any]:
    row = (
        (await session.execute(select(T.rule).where(T.rule.c.code == code).with_for_update()))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"rule {code} not found")
    unknown = set(body.params) - set(DEFAULT_RULES[code].params if code in DEFAULT_RULES else {})
    if unknown:
        raise Problem(f"unknown parameters: {', '.join(sorted(unknown))}", status=422)
    params = {**row["params"], **body.params}
    enabled = row["enabled"] if body.enabled is None else body.enabled
    version = row["version"] + 1
    await session.execute(
        update(T.rule)
        .where(T.rule.c.code == code)
        .values(
            params=params,
            enabled=enabled,
            version=version,
            updated_at=datetime.now(UTC),
            updated_by=identity.subject,
        )
    )
    await session.execute(
        T.rule_version.insert().values(
            code=code,
            version=version,
            enabled=enabled,
            params=params,
            changed_by=identity.subject,
            reason=body.reason,
        )
    )
    await session.commit()
    await _ctx(request).state["processor"].reload_rules()
    return {"code": code, "version": version, "params": params, "enabled": enabled}


# --------------------------------------------------------------------------- notifications


@router.get("/notifications", summary="The notification log")
async def notifications(
    session: DbSession,
    alarm_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    identity: Identity = _HANDLER,
) -> list[dict[str, Any]]:
    n = T.notification.c
    query = (
        select(T.notification)
        .join(T.alarm, T.alarm.c.id == n.alarm_id)
        .where(_alarm_scope(identity.scope))
    )
    if alarm_id:
        query = query.where(n.alarm_id == alarm_id)
    rows = await session.execute(query.order_by(n.id.desc()).limit(limit))
    return [dict(r) for r in rows.mappings()]


class DistrictContact(BaseModel):
    district_code: str
    name: str
    phone: str | None = None
    webhook_url: str | None = None
    min_level: int = Field(1, ge=1, le=3)


@router.put("/district-contacts", summary="Add or change a district contact")
async def put_contact(
    body: DistrictContact,
    session: DbSession,
    identity: Identity = _CITY,
) -> dict[str, Any]:
    from sqlalchemy.dialects.postgresql import insert

    values = body.model_dump()
    await session.execute(
        insert(T.district_contact)
        .values(**values)
        .on_conflict_do_update(index_elements=["district_code", "name"], set_=values)
    )
    await session.commit()
    return values


@router.get("/district-contacts", summary="District contacts")
async def get_contacts(
    session: DbSession,
    identity: Identity = _HANDLER,
) -> list[dict[str, Any]]:
    c = T.district_contact.c
    rows = await session.execute(
        select(T.district_contact)
        .where(identity.scope.where(district_column=c.district_code))
        .order_by(c.district_code, c.name)
    )
    return [dict(r) for r in rows.mappings()]
