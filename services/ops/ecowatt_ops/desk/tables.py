"""Every table of the desk, imported for the migrations (each feature declares its own)."""

from __future__ import annotations

from ecowatt_ops.clocks.models import calendar_day
from ecowatt_ops.desk.database import metadata
from ecowatt_ops.escalation.models import duty_contact, escalation, notification
from ecowatt_ops.incidents.models import incident, incident_event
from ecowatt_ops.kb.models import kb_article, kb_link, kb_version
from ecowatt_ops.reports.models import abnormal_report
from ecowatt_ops.support.models import request_event, support_request

__all__ = [
    "abnormal_report",
    "calendar_day",
    "duty_contact",
    "escalation",
    "incident",
    "incident_event",
    "kb_article",
    "kb_link",
    "kb_version",
    "metadata",
    "notification",
    "request_event",
    "support_request",
]
