"""Reduction-list endpoints: list and history, edits (each a new version), Excel in and out."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any, Literal

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE, WorkbookError, errors_to_xlsx
from ecowatt_kernel.identity import CurrentIdentity, CurrentScope, Identity
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import Conflict, NotFound, Problem
from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from sqlalchemy import select

from ecowatt_control_plan import access
from ecowatt_control_plan.measures import excel, service
from ecowatt_control_plan.measures.models import (
    Action,
    Level,
    MeasureChange,
    MeasureCreate,
    MeasureFields,
    MeasurePatch,
    MeasureRead,
    VersionRead,
    list_version,
    measure,
)
from ecowatt_control_plan.runtime import CurrentRuntime, Runtime, require_archive

router = APIRouter(prefix="/measures", tags=["reduction list"])
_XLSX: dict[int | str, dict[str, Any]] = {200: {"content": {XLSX_MEDIA_TYPE: {}}}}
_MAX_UPLOAD = 32 * 1024 * 1024


def attachment(data: bytes, filename: str) -> Response:
    """An .xlsx download."""
    return Response(
        data,
        media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _read(row: Any) -> MeasureRead:
    return MeasureRead.model_validate(dict(row))


@router.get("", summary="The reduction list (current, or as of a version), in your scope")
async def list_measures(
    db_session: DbSession,
    scope: CurrentScope,
    page: PageParams,
    level: Level | None = None,
    action: Action | None = None,
    enterprise_id: str | None = None,
    district: str | None = Query(None, description="GB/T 2260 code"),
    version: int | None = Query(None, ge=1, description="The list as it was at this version"),
) -> Page[MeasureRead]:
    query = service.as_of(version) if version else service.current()
    query = service.scoped(query, scope)
    if level:
        query = query.where(measure.c.level == level)
    if action:
        query = query.where(measure.c.action == action)
    if enterprise_id:
        query = query.where(measure.c.enterprise_id == enterprise_id)
    if district:
        query = query.where(measure.c.district_code == district)
    query = query.order_by(measure.c.enterprise_id, measure.c.level, measure.c.measure_id)
    rows, total = await fetch_page(db_session, query, page)
    return Page[MeasureRead].of([_read(r._mapping) for r in rows], total, page)


@router.get("/versions", summary="List versions: who changed what, when and why")
async def list_versions(
    db_session: DbSession, _: CurrentIdentity, page: PageParams
) -> Page[VersionRead]:
    query = select(list_version).order_by(list_version.c.version.desc())
    rows, total = await fetch_page(db_session, query, page)
    return Page[VersionRead].of(
        [VersionRead.model_validate(dict(r._mapping)) for r in rows], total, page
    )


@router.get("/versions/{version}/changes", summary="What a version changed (or since `against`)")
async def version_changes(
    version: int,
    db_session: DbSession,
    scope: CurrentScope,
    against: int | None = Query(None, ge=0, description="Default: the version before"),
) -> list[MeasureChange]:
    newest = await service.current_version(db_session)
    if version < 1 or version > newest:
        raise NotFound(f"list version {version} not found")
    changes = await service.diff(
        db_session, older=version - 1 if against is None else against, newer=version
    )
    return [
        MeasureChange.model_validate(c)
        for c in changes
        if scope.allows(district=c["district_code"], enterprise_id=c["enterprise_id"])
    ]


@router.get(
    "/template.xlsx", summary="The empty list workbook", response_class=Response, responses=_XLSX
)
async def template(runtime: CurrentRuntime, _: CurrentIdentity) -> Response:
    data = await asyncio.to_thread(excel.workbook, runtime.view, [])
    return attachment(data, "reduction-list-template.xlsx")


@router.get(
    "/export.xlsx",
    summary="The list (or a version of it) as an Excel workbook, one sheet per level",
    response_class=Response,
    responses=_XLSX,
)
async def export(
    db_session: DbSession,
    runtime: CurrentRuntime,
    scope: CurrentScope,
    version: int | None = Query(None, ge=1),
    district: str | None = None,
) -> Response:
    query = service.scoped(service.as_of(version) if version else service.current(), scope)
    if district:
        query = query.where(measure.c.district_code == district)
    rows = [dict(r) for r in (await db_session.execute(query)).mappings()]
    data = await asyncio.to_thread(excel.workbook, runtime.view, rows)
    return attachment(data, f"reduction-list{'-v' + str(version) if version else ''}.xlsx")


@router.post(
    "/import",
    summary="Import a list workbook (all or nothing; Chinese row-by-row report)",
    dependencies=[access.CanEditList],
    responses={200: {"content": {"application/json": {}, XLSX_MEDIA_TYPE: {}}}},
)
async def import_list(
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
    file: Annotated[UploadFile, File(description="The .xlsx workbook")],
    mode: Literal["merge", "replace"] = Query(
        "merge", description="replace: measures of the workbook's levels missing from it go"
    ),
    dry_run: bool = Query(False, description="Validate and count, write nothing"),
    reason: str | None = Query(None, max_length=500),
    report: Literal["json", "xlsx"] = Query("json", description="xlsx: the error report"),
) -> Response:
    data = await file.read(_MAX_UPLOAD + 1)
    if len(data) > _MAX_UPLOAD:
        raise Problem("the workbook is larger than 32 MiB", status=413, type_suffix="too-large")
    require_archive(runtime)
    try:
        result = await excel.import_workbook(
            db_session,
            data=data,
            view=runtime.view,
            scope=identity.scope,
            actor=access.actor_of(identity),
            reason=reason,
            mode=mode,
            dry_run=dry_run,
        )
    except WorkbookError as exc:
        raise Problem(str(exc), status=422, type_suffix="invalid-workbook") from None
    if result.applied and result.version is not None:
        await runtime.audit(
            db_session,
            identity=identity,
            action="control_plan.list.import",
            resource=f"reduction-list:v{result.version}",
            details={"mode": mode, "sheets": {k: asdict(v) for k, v in result.sheets.items()}},
            request=request,
        )
        await runtime.commit(db_session)
    else:
        await db_session.rollback()
    if report == "xlsx":
        return attachment(
            await asyncio.to_thread(errors_to_xlsx, result.errors), "import-report.xlsx"
        )
    body = {
        "applied": result.applied,
        "dry_run": result.dry_run,
        "mode": result.mode,
        "version": result.version,
        "sheets": {title: asdict(counts) for title, counts in result.sheets.items()},
        "errors": [asdict(e) for e in result.errors],
    }
    ok = result.applied or (dry_run and not result.errors)
    return JSONResponse(body, status_code=200 if ok else 422)


async def _write(
    request: Request,
    db_session: DbSession,
    runtime: Runtime,
    identity: Identity,
    change: service.Change,
    reason: str | None,
    action: str,
) -> int | None:
    values = change.values
    require_archive(runtime)
    if change.kind != "delete":
        problems = service.target_problems(view=runtime.view, values=values)
        if problems:
            raise Problem(
                "; ".join(p.en for p in problems),
                status=422,
                type_suffix="validation-error",
                errors=[
                    {"loc": ["body", p.field], "msg": p.en, "type": "archive"} for p in problems
                ],
            )
        enterprise = runtime.view.enterprise(values["enterprise_id"])
        assert enterprise is not None
        access.check_allowed(
            identity, district=enterprise.district_code, enterprise_id=enterprise.id
        )
        siblings = await service.load_current(db_session, enterprise_ids=[values["enterprise_id"]])
        siblings[change.measure_id] = {**values, "measure_id": change.measure_id}
        conflicts = service.conflict_problems(siblings.values()).get(change.measure_id)
        if conflicts:
            raise Conflict("; ".join(p.en for p in conflicts))
    version = await service.apply_changes(
        db_session,
        changes=[change],
        view=runtime.view,
        actor=access.actor_of(identity),
        reason=reason,
        source="api",
    )
    if version is not None:
        await runtime.audit(
            db_session,
            identity=identity,
            action=f"control_plan.measure.{action}",
            resource=f"measure:{change.measure_id}",
            details={"version": version, "values": values, "reason": reason},
            request=request,
        )
    await runtime.commit(db_session)
    return version


async def _current_row(db_session: DbSession, scope: Any, measure_id: str) -> dict[str, Any]:
    row = (
        (
            await db_session.execute(
                service.scoped(service.current(), scope).where(measure.c.measure_id == measure_id)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"measure {measure_id} not found")
    return dict(row)


@router.post(
    "",
    status_code=201,
    summary="Add a measure (a new list version)",
    dependencies=[access.CanEditList],
)
async def create_measure(
    body: MeasureCreate,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> MeasureRead:
    values = body.model_dump(exclude={"measure_id", "reason"})
    measure_id = body.measure_id or service.new_measure_id()
    existing = await service.load_current(db_session, enterprise_ids=[body.enterprise_id])
    if measure_id in existing:
        raise Conflict(f"measure {measure_id} already exists")
    await _write(
        request,
        db_session,
        runtime,
        identity,
        service.Change("create", measure_id, service.normalised(values)),
        body.reason,
        "create",
    )
    return _read(await _current_row(db_session, identity.scope, measure_id))


@router.get("/{measure_id}", summary="One measure, current")
async def read_measure(measure_id: str, db_session: DbSession, scope: CurrentScope) -> MeasureRead:
    return _read(await _current_row(db_session, scope, measure_id))


@router.get("/{measure_id}/history", summary="Every version of one measure")
async def measure_history(
    measure_id: str, db_session: DbSession, scope: CurrentScope
) -> list[MeasureRead]:
    query = (
        select(measure)
        .where(measure.c.measure_id == measure_id, access.visible(scope, measure))
        .order_by(measure.c.version_from)
    )
    rows = (await db_session.execute(query)).mappings().all()
    if not rows:
        raise NotFound(f"measure {measure_id} not found")
    return [_read(r) for r in rows]


@router.patch(
    "/{measure_id}",
    summary="Change a measure (a new list version)",
    dependencies=[access.CanEditList],
)
async def update_measure(
    measure_id: str,
    body: MeasurePatch,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> MeasureRead:
    stored = await _current_row(db_session, identity.scope, measure_id)
    patch = body.model_dump(exclude_unset=True, exclude={"reason"})
    merged = service.normalised(stored) | patch
    if (
        "target_kind" in patch
        and patch["target_kind"] == "enterprise"
        and "target_ids" not in patch
    ):
        merged["target_ids"] = []
    validated = MeasureFields.model_validate(merged)
    await _write(
        request,
        db_session,
        runtime,
        identity,
        service.Change("update", measure_id, service.normalised(validated.model_dump())),
        body.reason,
        "update",
    )
    return _read(await _current_row(db_session, identity.scope, measure_id))


@router.delete(
    "/{measure_id}",
    status_code=204,
    summary="Remove a measure (a new list version; its history stays)",
    dependencies=[access.CanEditList],
)
async def delete_measure(
    measure_id: str,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
    reason: str | None = Query(None, max_length=500),
) -> Response:
    stored = await _current_row(db_session, identity.scope, measure_id)
    access.check_allowed(
        identity, district=stored["district_code"], enterprise_id=stored["enterprise_id"]
    )
    await _write(
        request,
        db_session,
        runtime,
        identity,
        service.Change("delete", measure_id, {}),
        reason,
        "delete",
    )
    return Response(status_code=204)
