"""FastAPI dependencies of the alarm API, as `Annotated` aliases: the running service's
pieces (one place reads them from the service context) and the caller's roles.

Handling roles: city supervisors dispatch, verify and close anywhere; district officers
verify and close their own district's alarms; enterprise users answer (feedback with
attachments) and file planned outages for their own enterprise, but never verify or close.
"""

from __future__ import annotations

from typing import Annotated

from ecowatt_kernel.app import StateKey, service_context
from ecowatt_kernel.identity import Identity, Role, require_roles
from ecowatt_kernel.outbox import OutboxRelay
from ecowatt_kernel.registry_view import RegistryView
from fastapi import Depends, Request

from ecowatt_alarm.notifications.notifier import Notifier as AlarmNotifier
from ecowatt_alarm.processor import AlarmProcessor
from ecowatt_alarm.settings import AlarmSettings

__all__ = [
    "BUREAU_ROLES",
    "NOTIFIER",
    "PROCESSOR",
    "VIEW",
    "Answerer",
    "Bureau",
    "CitySupervisor",
    "Filer",
    "Notifier",
    "OmOperator",
    "Processor",
    "Relay",
    "Settings",
    "View",
]

PROCESSOR = StateKey("processor", AlarmProcessor)
VIEW = StateKey("view", RegistryView)
NOTIFIER = StateKey("notifier", AlarmNotifier)
BUREAU_ROLES = (Role.CITY_SUPERVISOR, Role.DISTRICT_OFFICER)


def _settings(request: Request) -> AlarmSettings:
    settings = service_context(request).settings
    assert isinstance(settings, AlarmSettings)
    return settings


def _relay(request: Request) -> OutboxRelay:
    return PROCESSOR.from_request(request).relay


Processor = Annotated[AlarmProcessor, Depends(PROCESSOR.from_request)]
View = Annotated[RegistryView, Depends(VIEW.from_request)]
Settings = Annotated[AlarmSettings, Depends(_settings)]
Relay = Annotated[OutboxRelay, Depends(_relay)]
Notifier = Annotated[AlarmNotifier, Depends(NOTIFIER.from_request)]

CitySupervisor = Annotated[Identity, require_roles(Role.CITY_SUPERVISOR)]
Bureau = Annotated[Identity, require_roles(*BUREAU_ROLES)]
Answerer = Annotated[Identity, require_roles(Role.ENTERPRISE_USER, Role.OM_OPERATOR)]
Filer = Annotated[Identity, require_roles(Role.ENTERPRISE_USER, Role.OM_OPERATOR, *BUREAU_ROLES)]
OmOperator = Annotated[Identity, require_roles(Role.OM_OPERATOR)]
