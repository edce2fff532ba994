"""Handling endpoints: dispatch (下发), feedback with attachments (反馈), verification (核查),
closure (销号), comments; attachment download. Scope is enforced on the server: an alarm
outside the caller's scope answers 404 whatever the URL says."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentIdentity, Role
from ecowatt_kernel.problems import Conflict, Forbidden, Problem
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ecowatt_alarm.alarms.service import load_alarm
from ecowatt_alarm.dependencies import (
    BUREAU_ROLES,
    Answerer,
    Bureau,
    CitySupervisor,
    Relay,
    Settings,
)
from ecowatt_alarm.handling import service
from ecowatt_alarm.handling.models import VERIFY_RESULTS, Close, Comment, Dispatch, Verify
from ecowatt_alarm.handling.uploads import read_feedback

router = APIRouter(tags=["handling"])


@router.post("/alarms/{alarm_id}/dispatch", summary="Dispatch an alarm to a district (下发)")
async def dispatch(
    alarm_id: str,
    body: Dispatch,
    session: DbSession,
    settings: Settings,
    relay: Relay,
    identity: CitySupervisor,
) -> dict[str, Any]:
    alarm = await load_alarm(session=session, alarm_id=alarm_id, identity=identity)
    if alarm["status"] in ("closed", "retracted"):
        raise Conflict(f"the alarm is {alarm['status']}")
    district = body.district_code or alarm["district_code"]
    await service.act(
        session=session,
        alarm=alarm,
        identity=identity,
        action="dispatched",
        status="dispatched",
        text=body.note,
        topic=settings.alarm_alarms_topic,
        data={"district_code": district},
        values={"dispatched_to": district},
    )
    await session.commit()
    relay.wake()
    return {"id": alarm_id, "status": "dispatched", "dispatched_to": district}


FEEDBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {
                        "text": {"type": "string", "minLength": 1, "maxLength": 5000},
                        "cause": {"type": "string", "maxLength": 500},
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "At most ECOWATT_ALARM_ATTACHMENT_MAX_COUNT, each at "
                            "most ECOWATT_ALARM_ATTACHMENT_MAX_BYTES",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "/alarms/{alarm_id}/feedback",
    summary="Enterprise feedback, with attachments (streamed, limited in count and size)",
    openapi_extra=FEEDBACK_BODY,
)
async def feedback(
    alarm_id: str,
    request: Request,
    session: DbSession,
    settings: Settings,
    relay: Relay,
    identity: Answerer,
) -> dict[str, Any]:
    alarm = await load_alarm(session=session, alarm_id=alarm_id, identity=identity)
    if alarm["status"] in ("closed", "retracted"):
        raise Conflict(f"the alarm is {alarm['status']}")
    form = await read_feedback(
        request,
        max_files=settings.alarm_attachment_max_count,
        max_bytes=settings.alarm_attachment_max_bytes,
    )
    for upload in form.files:
        if upload.content_type not in settings.alarm_attachment_types or not service.sniff(
            upload.content_type, upload.content
        ):
            raise Problem(
                f"attachment {upload.filename}: content type {upload.content_type!r} is not "
                "allowed or does not match the content",
                status=415,
                type_suffix="unsupported-attachment",
            )
    status = "replied" if alarm["status"] in ("open", "dispatched", "replied") else None
    journal_id = await service.act(
        session=session,
        alarm=alarm,
        identity=identity,
        action="feedback",
        status=status,
        text=form.text,
        topic=settings.alarm_alarms_topic,
        data={"cause": form.cause} if form.cause else {},
    )
    ids = [
        await service.store_attachment(
            session=session,
            alarm_id=alarm_id,
            journal_id=journal_id,
            filename=upload.filename,
            content_type=upload.content_type,
            content=upload.content,
            uploaded_by=identity.subject,
            folder=settings.alarm_attachments_dir,
        )
        for upload in form.files
    ]
    await session.commit()
    relay.wake()
    return {"id": alarm_id, "status": status or alarm["status"], "attachments": ids}


@router.get("/alarms/{alarm_id}/attachments/{attachment_id}", summary="Download an attachment")
async def download(
    alarm_id: str, attachment_id: str, identity: CurrentIdentity, session: DbSession
) -> Response:
    await load_alarm(session=session, alarm_id=alarm_id, identity=identity)
    content, content_type, att_id = await service.read_attachment(
        session=session, alarm_id=alarm_id, attachment_id=attachment_id
    )
    return Response(
        content,
        media_type=content_type,
        headers={
            "Content-Disposition": f'attachment; filename="{att_id}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/alarms/{alarm_id}/verify", summary="Verification with a result (核查)")
async def verify(
    alarm_id: str,
    body: Verify,
    session: DbSession,
    settings: Settings,
    relay: Relay,
    identity: Bureau,
) -> dict[str, Any]:
    alarm = await load_alarm(session=session, alarm_id=alarm_id, identity=identity)
    service.check_district(alarm=alarm, identity=identity)
    if alarm["status"] in ("closed", "retracted"):
        raise Conflict(f"the alarm is {alarm['status']}")
    await service.act(
        session=session,
        alarm=alarm,
        identity=identity,
        action="verified",
        status="verified",
        text=body.note,
        topic=settings.alarm_alarms_topic,
        data={"result": body.result, "result_name": VERIFY_RESULTS[body.result]},
        values={"verification": body.result},
    )
    await session.commit()
    relay.wake()
    return {"id": alarm_id, "status": "verified", "verification": body.result}


@router.post("/alarms/{alarm_id}/close", summary="Closure (销号)")
async def close(
    alarm_id: str,
    body: Close,
    session: DbSession,
    settings: Settings,
    relay: Relay,
    identity: CurrentIdentity,
) -> dict[str, Any]:
    if not identity.has_any_role(Role.ADMIN, *BUREAU_ROLES):
        raise Forbidden("only bureau users close alarms; enterprises answer them")
    alarm = await load_alarm(session=session, alarm_id=alarm_id, identity=identity)
    service.check_district(alarm=alarm, identity=identity)
    if alarm["status"] == "closed":
        raise Conflict("the alarm is already closed")
    if alarm["status"] not in ("verified", "suppressed", "retracted"):
        raise Conflict("verify the alarm before closing it (核查后销号)")
    await service.act(
        session=session,
        alarm=alarm,
        identity=identity,
        action="closed",
        status="closed",
        text=body.note,
        topic=settings.alarm_alarms_topic,
        values={"closed_at": datetime.now(UTC)},
    )
    await session.commit()
    relay.wake()
    return {"id": alarm_id, "status": "closed"}


@router.post("/alarms/{alarm_id}/comments", summary="A note in the journal")
async def comment(
    alarm_id: str,
    body: Comment,
    session: DbSession,
    settings: Settings,
    identity: CurrentIdentity,
) -> dict[str, Any]:
    alarm = await load_alarm(session=session, alarm_id=alarm_id, identity=identity)
    await service.act(
        session=session,
        alarm=alarm,
        identity=identity,
        action="comment",
        status=None,
        text=body.text,
        topic=settings.alarm_alarms_topic,
    )
    await session.commit()
    return {"id": alarm_id}
