"""The auth service definition: what `create_app` builds and standalone mode mounts.

At start-up it builds the runtime the gateway and the handlers share (signing key and the
published key set, session store, password policy), puts revocations back into Redis,
creates the first administrator when there are no accounts, attaches a view of the archive
(O&M-company scopes), and subscribes the audit writer (`auth.audit-log`) and the security
monitor (`auth.monitor`).
"""

from __future__ import annotations

import logging
import sys
from datetime import timedelta
from pathlib import Path

from ecowatt_kernel.app import ServiceContext, ServiceSpec, StateKey
from ecowatt_kernel.identity import (
    KeySet,
    TokenVerifier,
    public_keys_from_settings,
    signer_from_settings,
)
from ecowatt_kernel.registry_view import RegistryView

from ecowatt_auth.accounts.policy import PasswordPolicy
from ecowatt_auth.accounts.service import ensure_first_admin
from ecowatt_auth.accounts.views import router as accounts
from ecowatt_auth.apikeys.views import router as api_keys
from ecowatt_auth.audit.service import append, decode_audit
from ecowatt_auth.audit.views import router as audit
from ecowatt_auth.authz.views import router as keys_and_permissions
from ecowatt_auth.crypto import DataCipher
from ecowatt_auth.gateway.audit import AuditEmitter
from ecowatt_auth.gateway.live import LiveBoard
from ecowatt_auth.gateway.principal import Authenticator
from ecowatt_auth.monitoring.service import Monitor
from ecowatt_auth.monitoring.views import router as monitoring
from ecowatt_auth.runtime import RUNTIME, AuthRuntime
from ecowatt_auth.sessions.store import SessionStore
from ecowatt_auth.sessions.views import router as login
from ecowatt_auth.settings import AuthSettings

_logger = logging.getLogger(__name__)

MONITOR = StateKey("monitor", Monitor)
"""The security monitor (tests read its state)."""


def policy_of(settings: AuthSettings) -> PasswordPolicy:
    return PasswordPolicy(
        min_length=settings.auth_password_min_length,
        min_classes=settings.auth_password_min_classes,
        history=settings.auth_password_history,
        max_age_days=settings.auth_password_max_age_days,
    )


def announce_admin_password(username: str, password: str) -> None:
    """Print the generated first password once, on the console (never to the log)."""
    line = "=" * 72
    print(
        f"\n{line}\n  EcoWatt 首次启动：已创建管理员账号 (first start: administrator created)\n"
        f"  用户名 user name: {username}\n  初始密码 password:  {password}\n"
        "  此密码只显示这一次，首次登录后须修改。(shown once; change it at first login)\n"
        f"{line}\n",
        file=sys.stderr,
        flush=True,
    )


async def on_startup(context: ServiceContext) -> None:
    settings = context.settings
    assert isinstance(settings, AuthSettings)
    policy = policy_of(settings)
    signer = signer_from_settings(settings)
    published = KeySet([signer.public_key, *public_keys_from_settings(settings)])
    verifier = TokenVerifier(
        published,
        issuer=settings.identity_issuer,
        audience=settings.identity_audience,
        max_lifetime=timedelta(seconds=settings.identity_max_token_lifetime_s),
    )
    sessions = SessionStore(
        context.redis,
        idle_s=settings.auth_session_idle_s,
        absolute_s=settings.auth_session_absolute_s,
    )
    async with context.database.session() as session:
        denied, users = await sessions.restore(session)
    if denied or users:
        _logger.info("restored %d revoked tokens and %d not-before times into Redis", denied, users)
    async with context.database.transaction() as session:
        admin_password = (
            settings.admin_password.get_secret_value() if settings.admin_password else None
        )
        generated = await ensure_first_admin(
            session, username=settings.admin_username, password=admin_password, policy=policy
        )
    if generated is not None:
        announce_admin_password(settings.admin_username, generated)
        _logger.info(
            "first administrator %s created; its password was printed once", settings.admin_username
        )
    view = RegistryView()
    await view.attach(context.bus, group_prefix="auth")
    emitter = AuditEmitter(
        context.bus, topic=settings.auth_monitor_audit_topic, capacity=settings.gateway_audit_queue
    )
    emitter.start()
    runtime = AuthRuntime(
        context=context,
        settings=settings,
        policy=policy,
        cipher=DataCipher(settings.auth_data_key.get_secret_value()),
        sessions=sessions,
        signer=signer,
        published_keys=published,
        verifier=verifier,
        authenticator=Authenticator(
            settings=settings,
            redis=context.redis,
            database=context.database,
            sessions=sessions,
            signer=signer,
            verifier=verifier,
        ),
        audit=emitter,
        view=view,
        live=LiveBoard(view),
    )
    RUNTIME.set(context, runtime)
    assert runtime.live is not None
    await runtime.live.attach(context.bus)

    async def store_audit(records):  # type: ignore[no-untyped-def]
        events = decode_audit(records)
        if events:
            async with context.database.transaction() as session:
                await append(session, events)

    await context.subscribe(
        name="audit-log", topics=[settings.auth_monitor_audit_topic], handler=store_audit
    )
    monitor = Monitor(database=context.database, redis=context.redis, settings=settings)
    MONITOR.set(context, monitor)
    await context.subscribe(
        name="monitor",
        topics=[settings.auth_monitor_audit_topic, settings.auth_monitor_frames_topic],
        handler=monitor.handle,
    )


async def on_shutdown(context: ServiceContext) -> None:
    runtime = RUNTIME.find(context)
    if runtime is not None:
        await runtime.audit.stop()


SERVICE = ServiceSpec(
    name="auth",
    title="EcoWatt auth and gateway",
    description=(
        "Owns users, roles, data scopes, API keys, sessions and the audit log; the "
        "gateway every request passes (authentication, rate limits, audit, forwarding a "
        "signed identity to the services)."
    ),
    settings_class=AuthSettings,
    schema="auth",
    migrations=Path(__file__).parent / "migrations",
    on_startup=on_startup,
    on_shutdown=on_shutdown,
    routers=[login, accounts, api_keys, audit, monitoring, keys_and_permissions],
)
