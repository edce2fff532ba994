"""Links from what frames produced (an alarm, a finding) back to those frames (原始报文).

Ingest keeps every received frame in its archive and answers, through the gateway,
`GET /api/ingest-hj212/archive/frames?mn=…&data_from=…&data_to=…` (and the same query on
`/archive/frames.txt` as a text download) — see `services/ingest-hj212/README.md`, "Raw-frame
archive and replay". A service showing an alarm or a finding lists, per device behind it, that
query for the window its evidence covers; whoever follows the link does so with their own
identity, and the archive applies their scope. No service calls another for this: the links
are built from the documented path alone.

    frame_links({"0101…A1": ["p-1", "p-2"]}, start=first_at - 30 min, end=last_at)
    → [{"mn": "0101…A1", "point_ids": ["p-1", "p-2"], "from": …, "to": …,
        "url": "/api/ingest-hj212/archive/frames?mn=0101…A1&data_from=…&data_to=…",
        "text_url": "/api/ingest-hj212/archive/frames.txt?…&meta=true"}]

The window is on the frames' DataTime (UTC), both ends included, so late and back-filled
frames that carried the evidence's data are found too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

__all__ = ["FRAMES_PATH", "FRAMES_TEXT_PATH", "MAX_TEXT_WINDOW", "frame_links"]

FRAMES_PATH = "/api/ingest-hj212/archive/frames"
FRAMES_TEXT_PATH = "/api/ingest-hj212/archive/frames.txt"
MAX_TEXT_WINDOW = timedelta(days=31)
"""The archive's longest text download: a longer window's text link covers its last 31 days."""


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def frame_links(
    devices: Mapping[str, Iterable[str]], *, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Per device MN (with the point ids it measures here), the archive queries of its frames
    whose DataTime lies in [start, end]; ordered by MN."""
    links = []
    for mn in sorted(devices):
        query = {"mn": mn, "data_from": _utc(start), "data_to": _utc(end)}
        text_query = query | {"data_from": _utc(max(start, end - MAX_TEXT_WINDOW)), "meta": "true"}
        links.append(
            {
                "mn": mn,
                "point_ids": sorted(set(devices[mn])),
                "from": start.astimezone(UTC),
                "to": end.astimezone(UTC),
                "url": f"{FRAMES_PATH}?{urlencode(query)}",
                "text_url": f"{FRAMES_TEXT_PATH}?{urlencode(text_query)}",
            }
        )
    return links
