"""REST API: devices and their sessions, recent rejects, unregistered devices, commands.

Every route needs an identity (the gateway's signed token). Reads are filtered by the
caller's data scope on the server: a device is visible when its enterprise (from the
registry) is in scope; devices the registry does not know are visible only to callers whose
scope is `all`, and to O&M operators on the unregistered list (they bind them). Sending a
command needs the O&M operator or administrator role and is audited (`audit.events`).

Lists answer the kernel's `Page` (`page`, `page_size`): `/unregistered` pages in Redis
(`ZREVRANGE` of a set capped at `unverified_max_mns`); `/devices` pages the registry's
devices (in memory) joined with the verified MNs Redis has seen, and reads the state of
one page's devices in one round trip.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from ecowatt_kernel.app import StateKey, service_context
from ecowatt_kernel.audit import audit_event, mark_audited
from ecowatt_kernel.contracts import DeviceCommand, DeviceSnapshot, encode
from ecowatt_kernel.identity import CurrentIdentity, Identity, Role, require_roles
from ecowatt_kernel.pagination import Page, PageParams
from ecowatt_kernel.problems import NotFound, Problem
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from ecowatt_ingest.commands import SUPPORTED_CNS
from ecowatt_ingest.devices import EXPLANATIONS
from ecowatt_ingest.server import IngestServer

__all__ = ["router"]

router = APIRouter(tags=["ingest"])


class DeviceView(BaseModel):
    mn: str
    online: bool
    registered: bool
    enterprise_id: str | None = None
    name: str | None = None
    last_seen: datetime | None = None
    peer: str | None = None
    protocol_version: str | None = None
    crc_variant: str | None = None
    instance: str | None = None
    connected_at: datetime | None = None
    counters: dict[str, int] = Field(default_factory=dict)


class UnverifiedView(BaseModel):
    """An MN whose frames were refused at the door (never bound, never published)."""

    mn: str
    reason: str | None = Field(
        None,
        description="The last refusal: unknown_mn, device_disabled, pw_not_provisioned, "
        "bad_password, mn_in_use",
    )
    explanation: str | None = None
    registered: bool = Field(description="The registry holds an active device of this MN now.")
    enterprise_id: str | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    last_peer: str | None = None
    last_cn: str | None = None
    frames: int = 0


class DeviceDetail(DeviceView):
    identity: str | None = Field(
        None, description="How the session was verified: ok (PW), pw_not_provisioned (lenient)"
    )
    recent_rejects: list[dict[str, Any]] = Field(default_factory=list)
    unverified: UnverifiedView | None = Field(
        None,
        description="Frames claiming this MN that were refused at the door (e.g. wrong PWs), "
        "kept apart from the device's own state; none in the last unverified_ttl_s",
    )


class CommandRequest(BaseModel):
    cn: str = Field(description="1011 1012 1061 1062 2011 2012 2021 2022 2031 2041 2051 2061")
    params: dict[str, str] = Field(
        default_factory=dict,
        description="CP parameters, e.g. RtdInterval, SystemTime, BeginTime/EndTime "
        "(HJ 212 local time YYYYMMDDhhmmss, or ISO 8601)",
    )
    overtime_s: int = Field(10, ge=1, le=99)
    recount: int = Field(3, ge=0, le=99)


class CommandAccepted(BaseModel):
    command_id: str
    mn: str
    cn: str
    status: str


class CommandState(BaseModel):
    command_id: str
    mn: str
    cn: str
    status: str
    requested_by: str | None = None
    requested_at: str | None = None
    result: dict[str, Any] | None = None


SERVER = StateKey("ingest", IngestServer)
"""The running HJ 212 server (absent when `hj212_enabled` is off)."""


def _server(request: Request) -> IngestServer:
    server = SERVER.find(service_context(request))
    if server is None:
        raise Problem("the HJ 212 server is not running", status=503, type_suffix="unavailable")
    return server


Server = Annotated[IngestServer, Depends(_server)]


def _visible(server: IngestServer, identity: Identity, mn: str) -> DeviceSnapshot | bool | None:
    """The registry device if in scope, None if unknown and visible, False if hidden."""
    device = server.directory.device(mn)
    scope = identity.scope
    if device is None:
        return None if scope.all else False
    district = None
    if device.enterprise_id:
        enterprise = server.registry.enterprise(device.enterprise_id)
        district = enterprise.district_code if enterprise else None
    if scope.allows(district=district, enterprise_id=device.enterprise_id):
        return device
    return False


def _stamp(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC) if value else None
    except ValueError:
        return None


def _view(
    mn: str, device: DeviceSnapshot | None, state: dict[str, str], online: bool
) -> dict[str, Any]:
    return {
        "mn": mn,
        "online": online,
        "registered": device is not None and device.status == "active",
        "enterprise_id": device.enterprise_id if device else None,
        "name": device.name if device else None,
        "last_seen": _stamp(state.get("last_seen")),
        "peer": state.get("peer"),
        "protocol_version": state.get("version") or (device.protocol_version if device else None),
        "crc_variant": state.get("crc_variant") or (device.crc_variant if device else None),
        "instance": state.get("instance") if online else None,
        "connected_at": _stamp(state.get("connected_at")) if online else None,
        "counters": {
            k: int(state[k])
            for k in ("frames", "accepted", "rejected", "duplicates", "bytes")
            if k in state and state[k].lstrip("-").isdigit()
        },
    }


def _unverified_view(server: IngestServer, mn: str, state: dict[str, str]) -> UnverifiedView:
    device = server.directory.device(mn)
    reason = state.get("reason") or None
    frames = state.get("frames", "0")
    return UnverifiedView(
        mn=mn,
        reason=reason,
        explanation=EXPLANATIONS[reason].format(mn=mn) if reason in EXPLANATIONS else None,
        registered=device is not None and device.status == "active",
        enterprise_id=device.enterprise_id if device else None,
        first_seen=_stamp(state.get("first_seen")),
        last_seen=_stamp(state.get("last_seen")),
        last_peer=state.get("peer") or None,
        last_cn=state.get("cn") or None,
        frames=int(frames) if frames.isdigit() else 0,
    )


@router.get("/devices", response_model=Page[DeviceView], summary="Devices with their session state")
async def list_devices(
    server: Server,
    identity: CurrentIdentity,
    page: PageParams,
    status: Literal["online", "offline"] | None = None,
    online: Annotated[bool | None, Query(description="same as status=online|offline")] = None,
) -> Page[DeviceView]:
    """Registry devices and verified devices seen on the wire, filtered by scope and state."""
    if online is not None:
        status = "online" if online else "offline"
    store = server.store
    seen = await store.seen()  # verified MNs only: bounded by the registry
    live = await store.online_mns()
    candidates = sorted({d.id for d in server.registry.all("device")} | set(seen))
    visible: list[tuple[str, DeviceSnapshot | None]] = []
    for mn in candidates:
        device = _visible(server, identity, mn)
        if device is False:
            continue
        is_online = mn in live
        if (status == "online" and not is_online) or (status == "offline" and is_online):
            continue
        visible.append((mn, device if isinstance(device, DeviceSnapshot) else None))
    chosen = visible[page.offset : page.offset + page.page_size]
    states = await store.device_states([mn for mn, _ in chosen])
    items = [
        DeviceView(**_view(mn, device, state, mn in live))
        for (mn, device), state in zip(chosen, states, strict=True)
    ]
    return Page.of(items, len(visible), page)


@router.get("/devices/{mn}", response_model=DeviceDetail, summary="One device and its rejects")
async def device_detail(mn: str, server: Server, identity: CurrentIdentity) -> DeviceDetail:
    device = _visible(server, identity, mn)
    store = server.store
    state = await store.device_state(mn)
    refused = await store.unverified_state(mn) if device is not False else {}
    if device is False or (device is None and not state and not refused):
        raise NotFound(f"no device {mn} in your scope")
    snapshot = device if isinstance(device, DeviceSnapshot) else None
    online = await store.owner(mn) is not None
    view = _view(mn, snapshot, state, online)
    rejects = await store.recent_rejects(mn, server.settings.recent_rejects)
    return DeviceDetail(
        **view,
        identity=state.get("identity"),
        recent_rejects=rejects,
        unverified=_unverified_view(server, mn, refused) if refused else None,
    )


@router.get(
    "/unregistered",
    response_model=Page[UnverifiedView],
    summary="MNs that sent frames but are not (validly) in the registry, most recent first",
)
async def unregistered(
    server: Server,
    identity: Annotated[Identity, require_roles(Role.OM_OPERATOR, Role.CITY_SUPERVISOR)],
    page: PageParams,
) -> Page[UnverifiedView]:
    """Unknown MNs, disabled devices and devices without a PW that tried to report."""
    store = server.store
    if identity.scope.all:
        mns, total = await store.unregistered_page(page.offset, page.page_size)
    else:  # filtered by scope: the whole set, which is capped (`unverified_max_mns`)
        seen = await store.unregistered_seen()
        ordered = [
            mn
            for mn in sorted(seen, key=lambda mn: -seen[mn])
            if _visible(server, identity, mn) not in (False, None)
        ]
        total = len(ordered)
        mns = ordered[page.offset : page.offset + page.page_size]
    states = await store.unverified_states(mns)
    items = [_unverified_view(server, mn, state) for mn, state in zip(mns, states, strict=True)]
    return Page.of(items, total, page)


@router.post(
    "/devices/{mn}/commands",
    response_model=CommandAccepted,
    status_code=202,
    summary="Send a command to a device (O&M operators and administrators)",
)
async def send_command(
    mn: str,
    body: CommandRequest,
    request: Request,
    server: Server,
    identity: Annotated[Identity, require_roles(Role.OM_OPERATOR)],
) -> CommandAccepted:
    device = _visible(server, identity, mn)
    if device is False:
        raise NotFound(f"no device {mn} in your scope")
    if body.cn not in SUPPORTED_CNS:
        raise Problem(
            f"CN {body.cn} is not supported; use one of {', '.join(sorted(SUPPORTED_CNS))}",
            status=422,
            type_suffix="unsupported-command",
        )
    now = datetime.now(UTC)
    command = DeviceCommand(
        command_id=str(uuid.uuid4()),
        mn=mn,
        cn=body.cn,
        params=body.params,
        requested_by=identity.subject,
        requested_at=now,
        overtime_s=body.overtime_s,
        recount=body.recount,
    )
    settings = server.settings
    await server.store.command_update(
        command.command_id,
        {
            "command_id": command.command_id,
            "mn": mn,
            "cn": body.cn,
            "status": "requested",
            "requested_by": identity.subject,
            "requested_at": now.isoformat(),
            "params": body.params,
        },
    )
    audit = audit_event(
        request,
        identity=identity,
        action="device.command",
        resource=f"device:{mn}",
        details={"command_id": command.command_id, "cn": body.cn, "params": body.params},
    )
    await server.bus.publish(
        [
            encode(command, topic=settings.topic_commands),
            encode(audit, topic=settings.topic_audit),
        ]
    )
    mark_audited(request)  # the gateway writes no second event for this request
    return CommandAccepted(command_id=command.command_id, mn=mn, cn=body.cn, status="requested")


@router.get("/commands/{command_id}", response_model=CommandState, summary="A command's state")
async def command_state(command_id: str, server: Server, identity: CurrentIdentity) -> CommandState:
    state = await server.store.command_state(command_id)
    if not state or _visible(server, identity, state.get("mn", "")) is False:
        raise NotFound(f"no command {command_id} in your scope")
    result = json.loads(state["result"]) if state.get("result") else None
    return CommandState(
        command_id=command_id,
        mn=state.get("mn", ""),
        cn=state.get("cn", ""),
        status=state.get("status", "unknown"),
        requested_by=state.get("requested_by"),
        requested_at=state.get("requested_at"),
        result=result,
    )
