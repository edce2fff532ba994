"""`POST /alertmanager`: Alertmanager's webhook receiver (on the service port only).

Alertmanager authenticates with a bearer token (`http_config.authorization` in its receiver,
`ECOWATT_OPS_ALERTMANAGER_TOKEN` here); the gateway does not serve this path (the permission
matrix marks it `not_served`), so it is reached inside the cluster only. Without a token
configured the receiver refuses every call.
"""

from __future__ import annotations

import hmac

from ecowatt_kernel.problems import Forbidden, Unauthorized
from fastapi import APIRouter, Depends, Request

from ecowatt_ops.desk.access import ALERTMANAGER, publish_audit
from ecowatt_ops.desk.runtime import Runtime
from ecowatt_ops.signals.models import AlertmanagerPayload, ReceiverResult
from ecowatt_ops.signals.service import receive_alertmanager

__all__ = ["router"]

router = APIRouter(tags=["alerts"])


def _check_token(request: Request, runtime: Runtime) -> None:
    expected = runtime.settings.ops_alertmanager_token
    if expected is None or not expected.get_secret_value():
        raise Forbidden("the Alertmanager receiver is disabled: set ECOWATT_OPS_ALERTMANAGER_TOKEN")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.get_secret_value().encode()
    ):
        raise Unauthorized("Alertmanager must send `Authorization: Bearer <token>`")


@router.post(
    "/alertmanager",
    summary="Alertmanager webhook: open, update and resolve incidents (idempotent)",
    response_model=ReceiverResult,
    dependencies=[Depends(_check_token)],
)
async def alertmanager(
    payload: AlertmanagerPayload, request: Request, runtime: Runtime
) -> ReceiverResult:
    """Each alert opens or updates the incident of its condition; a repeat changes nothing."""
    outcomes = await receive_alertmanager(
        db=runtime.context.database,
        payload=payload,
        settings=runtime.settings,
        now=runtime.now(),
    )
    if any(o.outcome == "opened" for o in outcomes):
        runtime.wake_escalation()
    changed = [o for o in outcomes if o.outcome != "unchanged"]
    if changed:
        await publish_audit(
            request,
            identity=None,
            actor=ALERTMANAGER,
            action="incident.alert",
            resource="alertmanager",
            details={"alerts": [o.model_dump() for o in changed][:50]},
        )
    return ReceiverResult(alerts=outcomes)
