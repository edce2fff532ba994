"""What the auth service's request handlers and the gateway share while it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ecowatt_kernel.app import ServiceContext, StateKey
from ecowatt_kernel.audit import mark_audited
from ecowatt_kernel.contracts import AuditEvent, encode
from ecowatt_kernel.identity import KeySet, TokenSigner, TokenVerifier
from ecowatt_kernel.registry_view import RegistryView
from fastapi import Depends, Request

from ecowatt_auth.accounts.policy import PasswordPolicy
from ecowatt_auth.crypto import DataCipher
from ecowatt_auth.gateway.audit import AuditEmitter
from ecowatt_auth.gateway.live import LiveBoard
from ecowatt_auth.gateway.principal import Authenticator
from ecowatt_auth.sessions.store import SessionStore
from ecowatt_auth.settings import AuthSettings

__all__ = ["RUNTIME", "AuthRuntime", "Runtime", "publish_audit"]


@dataclass
class AuthRuntime:
    context: ServiceContext
    settings: AuthSettings
    policy: PasswordPolicy
    cipher: DataCipher
    sessions: SessionStore
    signer: TokenSigner
    published_keys: KeySet
    """The keys of the JWKS document: the signing key and the retired ones still trusted."""
    verifier: TokenVerifier
    """Verifies bearer tokens at the gateway (with `published_keys`)."""
    authenticator: Authenticator
    audit: AuditEmitter
    view: RegistryView | None
    live: LiveBoard | None = None
    """Facility and alarm events for the web application's live stream (`/api/live`)."""


RUNTIME = StateKey("auth_runtime", AuthRuntime)
Runtime = Annotated[AuthRuntime, Depends(RUNTIME.from_request)]


async def publish_audit(request: Request, runtime: AuthRuntime, event: AuditEvent) -> None:
    """Publish the request's audit event and tell the gateway not to write another."""
    await runtime.context.bus.publish(
        [encode(event, topic=runtime.settings.auth_monitor_audit_topic)]
    )
    mark_audited(request)
