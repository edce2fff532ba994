"""Every table of the `reporting` schema, by feature (imported for the migrations)."""

from __future__ import annotations

from ecowatt_reporting.archive import models as archive
from ecowatt_reporting.database import metadata
from ecowatt_reporting.events import models as events
from ecowatt_reporting.history import models as history
from ecowatt_reporting.reports import models as reports

__all__ = ["archive", "events", "history", "metadata", "reports"]
