"""The alarm REST API (mounted at /api/alarm in standalone mode): one router per feature
folder — `alarms` (lists, export, statistics), `handling`, `filings`, `notifications`,
`rules`, `states`. Scope is enforced on the server: every query is filtered by the caller's
data scope, and a record outside it answers 404 whatever the URL says; every list is one page
of the kernel's `Page`."""

from __future__ import annotations

from fastapi import APIRouter

from ecowatt_alarm.alarms.views import router as alarms
from ecowatt_alarm.filings.views import router as filings
from ecowatt_alarm.handling.views import router as handling
from ecowatt_alarm.notifications.views import router as notifications
from ecowatt_alarm.rules.views import router as rules
from ecowatt_alarm.states.views import router as states

__all__ = ["router"]

router = APIRouter()
for feature in (alarms, handling, filings, notifications, rules, states):
    router.include_router(feature)
