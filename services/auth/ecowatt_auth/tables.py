"""Every table of the `auth` schema, imported for the migrations (each feature declares its
own on the shared metadata)."""

from __future__ import annotations

from ecowatt_auth.accounts.models import known_address, password_history, user
from ecowatt_auth.apikeys.models import api_key
from ecowatt_auth.audit.models import audit_log
from ecowatt_auth.database import metadata
from ecowatt_auth.monitoring.models import security_alert, security_alert_action
from ecowatt_auth.sessions.store import revoked_token

__all__ = [
    "api_key",
    "audit_log",
    "known_address",
    "metadata",
    "password_history",
    "revoked_token",
    "security_alert",
    "security_alert_action",
    "user",
]
