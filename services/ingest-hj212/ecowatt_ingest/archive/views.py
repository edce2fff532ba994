"""REST API of the raw-frame archive (under `/archive`), and its start-up and shutdown.

Reads need an identity and are filtered by its scope (`CurrentScope`; see `service`).
Replays need the O&M operator or administrator role and are audited on `audit.events`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from ecowatt_kernel.app import DbSession, ServiceContext, StateKey, service_context
from ecowatt_kernel.contracts import AuditEvent, encode
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE, Column, rows_to_xlsx
from ecowatt_kernel.identity import CurrentScope, Identity, Role, require_roles
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import NotFound, Problem
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.scheduler import AdvisoryLeader, PeriodicJob
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import insert, select, update

from ecowatt_ingest.archive.models import (
    REPLAYS,
    FrameDetail,
    FrameRead,
    ReplayCreate,
    ReplayRead,
    Verdict,
)
from ecowatt_ingest.archive.replay import ReplayRunner
from ecowatt_ingest.archive.service import (
    ArchiveWriter,
    FrameFilters,
    frame_bytes,
    frame_view,
    get_frame,
    iter_frames,
    list_frames,
    maintain,
    mns_of_subject,
    split_parts,
    visible_mns,
)
from ecowatt_ingest.dispatch import ArchivedParts
from ecowatt_ingest.settings import IngestSettings

__all__ = ["Archive", "router", "start_archive", "stop_archive"]

_logger = logging.getLogger(__name__)

router = APIRouter(prefix="/archive", tags=["archive"])

DEFAULT_WINDOW = timedelta(hours=24)
MAX_DOWNLOAD_WINDOW = timedelta(days=31)
MAX_EXPORT_ROWS = 100_000
MAX_REPLAY_WINDOW = timedelta(days=31)


# ------------------------------------------------------------------------------ wiring


@dataclass
class Archive:
    """What a running archive holds (`ARCHIVE` in the service context)."""

    settings: IngestSettings
    context: ServiceContext
    registry: RegistryView | None
    writer: ArchiveWriter
    maintenance: PeriodicJob
    replays: ReplayRunner


ARCHIVE = StateKey("archive", Archive)
REGISTRY_VIEW = StateKey("registry_view", RegistryView)
"""The HJ 212 server's registry view, which the archive shares when the server runs."""


async def start_archive(context: ServiceContext) -> None:
    """Partitions, the `hj212.frames` consumer, hourly maintenance and the replay runner."""
    settings = context.settings
    assert isinstance(settings, IngestSettings)
    if not settings.archive_enabled:
        return
    if context.db is None:  # (a spec without a schema: the TCP server alone, in tests)
        _logger.info("frame archive off: the service runs without PostgreSQL")
        return
    registry = REGISTRY_VIEW.find(context)
    if registry is None:  # the HJ 212 server is off: a view of our own, for scope checks
        registry = RegistryView(topic=settings.topic_registry)
        await registry.attach(context.bus, group_prefix=f"{settings.service_name}.archive")
        context.subscriptions.append(registry.subscription)  # type: ignore[arg-type]
    db = context.database
    await maintain(db=db, settings=settings)
    writer = ArchiveWriter(db=db, settings=settings)
    await context.subscribe(
        name="archive",
        topics=[settings.topic_frames],
        handler=writer.handle,
        max_batch=settings.archive_max_batch,
    )
    maintenance = PeriodicJob(
        name="ingest.archive-maintenance",
        run=lambda: maintain(db=db, settings=settings),
        every_s=3600,
        initial_delay_s=3600,
        leader=AdvisoryLeader(db.engine, "ingest.archive-maintenance"),
    )
    await maintenance.start()
    replays = ReplayRunner(
        db=db,
        bus=context.bus,
        registry=registry,
        settings=settings,
        topic=settings.topic_readings,
        instance=settings.instance_id,
    )
    await replays.start()
    ARCHIVE.set(context, Archive(settings, context, registry, writer, maintenance, replays))


SPLIT_LOOKBACK = timedelta(days=1)
"""How far back the parts of a split set are looked for: a device keeps an unanswered part
and sends it again after an outage, not days later."""


def archived_parts(context: ServiceContext) -> ArchivedParts | None:
    """The dispatcher's look-up of a split set's archived parts (None: no archive here)."""
    if ARCHIVE.find(context) is None:
        return None
    db = context.database

    async def parts(mn: str, cn: str, data_time: str) -> list[bytes]:
        since = datetime.now(UTC) - SPLIT_LOOKBACK
        return await split_parts(db=db, mn=mn, cn=cn, data_time=data_time, since=since)

    return parts


async def stop_archive(context: ServiceContext) -> None:
    archive = ARCHIVE.pop(context)
    if archive is not None:
        await archive.replays.stop()
        await archive.maintenance.stop()


def _archive(request: Request) -> Archive:
    archive = ARCHIVE.find(service_context(request))
    if archive is None:
        raise Problem("the frame archive is not enabled", status=503, type_suffix="unavailable")
    return archive


ArchiveDep = Annotated[Archive, Depends(_archive)]
Operator = Annotated[Identity, require_roles(Role.OM_OPERATOR)]


# ------------------------------------------------------------------------------ frames


def _visible(archive: Archive, scope: Any) -> list[str] | None:
    if scope.all:
        return None
    if archive.registry is None:
        return []
    return visible_mns(registry=archive.registry, scope=scope)


def _filters(
    archive: Archive,
    *,
    mn: list[str] | None,
    received_from: datetime | None,
    received_to: datetime | None,
    data_from: datetime | None,
    data_to: datetime | None,
    verdict: list[Verdict] | None,
    reason_code: list[str] | None,
    cn: str | None,
    source_key: str | None,
    subject_kind: str | None,
    subject_id: str | None,
) -> FrameFilters:
    mns = set(mn) if mn else None
    data_time = None
    if source_key is not None:
        parts = source_key.split("|")
        if len(parts) < 3 or not all(parts[:3]):
            raise Problem(
                "source_key must be MN|CN|DataTime (a reading's idempotency key),"
                f" got {source_key!r}",
                status=422,
                type_suffix="invalid-source-key",
            )
        mns = {parts[0]} if mns is None else mns & {parts[0]}
        cn, data_time = parts[1], parts[2]
    if (subject_kind is None) != (subject_id is None):
        raise Problem(
            "subject_kind and subject_id go together (e.g. subject_kind=point&subject_id=…)",
            status=422,
            type_suffix="invalid-subject",
        )
    if subject_kind is not None and subject_id is not None:
        behind = (
            mns_of_subject(registry=archive.registry, kind=subject_kind, subject_id=subject_id)
            if archive.registry is not None
            else set()
        )
        mns = behind if mns is None else mns & behind
    for start, end, name in (
        (received_from, received_to, "received"),
        (data_from, data_to, "data"),
    ):
        if start is not None and end is not None and start >= end:
            raise Problem(
                f"{name}_from must be before {name}_to", status=422, type_suffix="invalid-window"
            )
    if (
        received_from is None
        and received_to is None
        and data_from is None
        and data_to is None
        and data_time is None
    ):
        received_to = datetime.now(UTC)
        received_from = received_to - DEFAULT_WINDOW
    return FrameFilters(
        mns=frozenset(mns) if mns is not None else None,
        received_from=received_from,
        received_to=received_to,
        data_from=data_from,
        data_to=data_to,
        verdicts=frozenset(verdict) if verdict else None,
        reason_codes=frozenset(reason_code) if reason_code else None,
        cn=cn,
        data_time=data_time,
    )


SubjectKind = Literal["device", "point", "facility", "group", "enterprise"]


def frame_filters(
    archive: ArchiveDep,
    mn: Annotated[list[str] | None, Query(description="设备MN (repeatable)")] = None,
    received_from: Annotated[
        datetime | None, Query(description="arrival from (default: 24 h ago)")
    ] = None,
    received_to: Annotated[datetime | None, Query(description="arrival before")] = None,
    data_from: Annotated[datetime | None, Query(description="DataTime from (UTC)")] = None,
    data_to: Annotated[datetime | None, Query(description="DataTime up to (UTC)")] = None,
    verdict: Annotated[list[Verdict] | None, Query(description="repeatable")] = None,
    reason_code: Annotated[
        list[str] | None, Query(description="e.g. crc_mismatch (repeatable)")
    ] = None,
    cn: Annotated[str | None, Query(description="e.g. 2011")] = None,
    source_key: Annotated[
        str | None, Query(description="a PointReading's source_key: MN|CN|DataTime")
    ] = None,
    subject_kind: Annotated[
        SubjectKind | None, Query(description="a finding's or an alarm's subject kind")
    ] = None,
    subject_id: Annotated[str | None, Query(description="… and its id")] = None,
) -> FrameFilters:
    return _filters(
        archive,
        mn=mn,
        received_from=received_from,
        received_to=received_to,
        data_from=data_from,
        data_to=data_to,
        verdict=verdict,
        reason_code=reason_code,
        cn=cn,
        source_key=source_key,
        subject_kind=subject_kind,
        subject_id=subject_id,
    )


Filters = Annotated[FrameFilters, Depends(frame_filters)]

EXPORT_COLUMNS = [
    Column("received_at", "接收时间", width=26),
    Column("mn", "设备MN", width=26),
    Column("cn", "命令编码", width=8),
    Column("qn", "请求编码QN", width=20),
    Column("data_time", "数据时间", width=16),
    Column("verdict", "结论", width=12),
    Column("reason_code", "原因代码", width=18),
    Column("reason", "原因说明", width=40),
    Column("peer", "来源地址", width=22),
    Column("size", "字节数", width=8),
    Column("text", "原始报文", width=80),
]
VERDICT_NAMES = {
    "accepted": "接收",
    "rejected": "拒收",
    "unregistered": "未登记",
    "duplicate": "重复",
}


@router.get(
    "/frames",
    response_model=Page[FrameRead],
    summary="Archived frames (原始报文) by MN, time, verdict, reason; or linked from a reading, "
    "a finding or an alarm",
    responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}},
)
async def frames(
    archive: ArchiveDep,
    filters: Filters,
    scope: CurrentScope,
    session: DbSession,
    page: PageParams,
    format: Annotated[Literal["json", "xlsx"], Query(description="json, or xlsx")] = "json",
) -> Any:
    visible = _visible(archive, scope)
    if format == "xlsx":
        exported: list[dict[str, Any]] = []
        async for row in iter_frames(
            db=archive.context.database, filters=filters, visible=visible, limit=MAX_EXPORT_ROWS
        ):
            values = frame_view(row)
            local = values["received_at"].astimezone(ZoneInfo(archive.settings.timezone))
            values["received_at"] = local.replace(tzinfo=None)
            values["verdict"] = VERDICT_NAMES.get(values["verdict"], values["verdict"])
            exported.append(values)
        return Response(
            rows_to_xlsx(EXPORT_COLUMNS, exported, title="原始报文"),
            media_type=XLSX_MEDIA_TYPE,
            headers={"Content-Disposition": 'attachment; filename="frames.xlsx"'},
        )
    rows, total = await list_frames(session=session, filters=filters, visible=visible, page=page)
    return Page.of([FrameRead.model_validate(frame_view(r)) for r in rows], total, page)


@router.get(
    "/frames.txt",
    summary="Download a window of frames as text: each frame's exact bytes, one per line",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def frames_text(
    archive: ArchiveDep,
    filters: Filters,
    scope: CurrentScope,
    meta: Annotated[
        bool, Query(description="precede each frame with a '# arrival MN verdict reason' line")
    ] = False,
) -> StreamingResponse:
    start = filters.received_from or filters.data_from
    end = filters.received_to or filters.data_to or datetime.now(UTC)
    if filters.data_time is None and (start is None or end - start > MAX_DOWNLOAD_WINDOW):
        raise Problem(
            f"a download covers at most {MAX_DOWNLOAD_WINDOW.days} days: give received_from"
            " and received_to (or data_from and data_to)",
            status=422,
            type_suffix="window-too-long",
        )
    visible = _visible(archive, scope)

    async def lines() -> AsyncIterator[bytes]:
        async for row in iter_frames(db=archive.context.database, filters=filters, visible=visible):
            if meta:
                yield (
                    f"# {row.received_at.isoformat()} {row.mn or '-'} {row.verdict}"
                    f" {row.reason_code or ''}".rstrip()
                    + "\r\n"
                ).encode()
            raw = frame_bytes(row)
            yield raw if raw.endswith(b"\n") else raw + b"\r\n"

    return StreamingResponse(
        lines(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="frames.txt"'},
    )


async def _one_frame(
    archive: Archive, session: Any, scope: Any, frame_id: uuid.UUID, received_at: datetime | None
) -> Any:
    row = await get_frame(
        session=session,
        frame_id=frame_id,
        visible=_visible(archive, scope),
        received_at=received_at,
    )
    if row is None:
        raise NotFound(f"no archived frame {frame_id} in your scope")
    return row


@router.get(
    "/frames/{frame_id}",
    response_model=FrameDetail,
    summary="One frame — a TelemetryReading's frame_id leads here",
)
async def frame(
    frame_id: uuid.UUID,
    archive: ArchiveDep,
    scope: CurrentScope,
    session: DbSession,
    received_at: Annotated[
        datetime | None, Query(description="the reading's received_at: finds it faster")
    ] = None,
) -> FrameDetail:
    row = await _one_frame(archive, session, scope, frame_id, received_at)
    return FrameDetail.model_validate(frame_view(row, detail=True))


@router.get(
    "/frames/{frame_id}/raw",
    summary="The exact bytes the device sent, as a text download",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def frame_raw(
    frame_id: uuid.UUID,
    archive: ArchiveDep,
    scope: CurrentScope,
    session: DbSession,
    received_at: datetime | None = None,
) -> Response:
    row = await _one_frame(archive, session, scope, frame_id, received_at)
    name = f"{row.mn or 'frame'}-{row.qn or frame_id}.txt".replace('"', "")
    return Response(
        frame_bytes(row),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# ------------------------------------------------------------------------------ replays


def _replay_view(row: Any) -> ReplayRead:
    values = row._asdict()
    total = values.get("total")
    values["progress"] = (
        round(min(values["processed"] / total, 1.0), 4) if total else (1.0 if total == 0 else None)
    )
    return ReplayRead.model_validate(values)


@router.post(
    "/replays",
    response_model=ReplayRead,
    status_code=202,
    summary="Feed a window of archived frames through validation and alarm again "
    "(O&M operators and administrators; idempotent)",
)
async def create_replay(
    body: ReplayCreate,
    request: Request,
    archive: ArchiveDep,
    identity: Operator,
    session: DbSession,
) -> ReplayRead:
    if body.received_from >= body.received_to:
        raise Problem(
            "received_from must be before received_to", status=422, type_suffix="invalid-window"
        )
    if body.received_to - body.received_from > MAX_REPLAY_WINDOW:
        raise Problem(
            f"a replay covers at most {MAX_REPLAY_WINDOW.days} days; split the window",
            status=422,
            type_suffix="window-too-long",
        )
    visible = _visible(archive, identity.scope)
    if body.mns is not None and visible is not None:
        hidden = sorted(set(body.mns) - set(visible))
        if hidden:
            raise NotFound(f"devices not in your scope: {', '.join(hidden[:10])}")
    job_id = uuid.uuid4()
    now = datetime.now(UTC)
    await session.execute(
        insert(REPLAYS).values(
            id=job_id,
            status="queued",
            received_from=body.received_from,
            received_to=body.received_to,
            mns=body.mns,
            scope=identity.scope.model_dump(mode="json"),
            reason=body.reason,
            requested_by=identity.subject,
            requested_at=now,
            processed=0,
            published=0,
            skipped=0,
        )
    )
    await session.commit()
    await _audit(archive, request, identity, "archive.replay", job_id, body, now)
    archive.replays.wake()
    row = (await session.execute(select(REPLAYS).where(REPLAYS.c.id == job_id))).one()
    return _replay_view(row)


async def _audit(
    archive: Archive,
    request: Request,
    identity: Identity,
    action: str,
    job_id: uuid.UUID,
    body: ReplayCreate | None,
    at: datetime,
) -> None:
    details: dict[str, Any] = {"replay_id": str(job_id)}
    if body is not None:
        details |= body.model_dump(mode="json")
    event = AuditEvent(
        actor=identity.subject,
        actor_kind="api_key" if identity.kind == "api_key" else "user",
        action=action,
        resource=f"replay:{job_id}",
        outcome="success",
        at=at,
        source_ip=request.client.host if request.client else None,
        details=details,
    )
    await archive.context.bus.publish([encode(event, topic=archive.settings.topic_audit)])


def _own(identity: Identity) -> Any:
    """Administrators see every replay; others the ones they asked for."""
    if identity.has_any_role(Role.ADMIN):
        return None
    return REPLAYS.c.requested_by == identity.subject


@router.get("/replays", response_model=Page[ReplayRead], summary="Replay jobs, newest first")
async def replays(identity: Operator, session: DbSession, page: PageParams) -> Page[ReplayRead]:
    query = select(REPLAYS).order_by(REPLAYS.c.requested_at.desc())
    own = _own(identity)
    if own is not None:
        query = query.where(own)
    rows, total = await fetch_page(session, query, page)
    return Page.of([_replay_view(r) for r in rows], total, page)


async def _job(session: Any, identity: Identity, job_id: uuid.UUID) -> Any:
    query = select(REPLAYS).where(REPLAYS.c.id == job_id)
    own = _own(identity)
    if own is not None:
        query = query.where(own)
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFound(f"no replay {job_id} of yours")
    return row


@router.get("/replays/{job_id}", response_model=ReplayRead, summary="A replay and its progress")
async def replay(job_id: uuid.UUID, identity: Operator, session: DbSession) -> ReplayRead:
    return _replay_view(await _job(session, identity, job_id))


@router.post(
    "/replays/{job_id}/cancel",
    response_model=ReplayRead,
    summary="Stop a queued or running replay (what it published stays: it is harmless)",
)
async def cancel_replay(
    job_id: uuid.UUID,
    request: Request,
    archive: ArchiveDep,
    identity: Operator,
    session: DbSession,
) -> ReplayRead:
    row = await _job(session, identity, job_id)
    if row.status in ("queued", "running"):
        await session.execute(
            update(REPLAYS)
            .where(REPLAYS.c.id == job_id, REPLAYS.c.status.in_(["queued", "running"]))
            .values(status="cancelled", finished_at=datetime.now(UTC))
        )
        await session.commit()
        await _audit(
            archive, request, identity, "archive.replay.cancel", job_id, None, datetime.now(UTC)
        )
    return _replay_view(await _job(session, identity, job_id))
