"""Links to the raw-frame archive: one per device, the window in UTC on DataTime, queries
that survive URL decoding, and a text download kept within the archive's 31 days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

from ecowatt_kernel.frame_links import MAX_TEXT_WINDOW, frame_links

SHANGHAI = timezone(timedelta(hours=8))


def test_one_link_per_device_with_its_points_and_the_window_in_utc() -> None:
    start = datetime(2026, 11, 20, 10, 0, 0, 500_000, tzinfo=SHANGHAI)
    end = datetime(2026, 11, 20, 12, 0, tzinfo=SHANGHAI)
    links = frame_links({"MN-B": ["p2", "p1", "p1"], "MN-A": []}, start=start, end=end)
    assert [(link["mn"], link["point_ids"]) for link in links] == [
        ("MN-A", []),
        ("MN-B", ["p1", "p2"]),
    ]
    link = links[1]
    assert link["from"] == start and link["from"].tzinfo == UTC
    assert link["to"] == end
    url = urlsplit(link["url"])
    assert url.path == "/api/ingest-hj212/archive/frames"
    query = parse_qs(url.query)
    assert query == {
        "mn": ["MN-B"],
        "data_from": ["2026-11-20T02:00:00.500000Z"],
        "data_to": ["2026-11-20T04:00:00Z"],
    }
    assert datetime.fromisoformat(query["data_from"][0].replace("Z", "+00:00")) == start
    text = urlsplit(link["text_url"])
    assert text.path == "/api/ingest-hj212/archive/frames.txt"
    assert parse_qs(text.query) == query | {"meta": ["true"]}


def test_the_text_link_of_a_long_window_covers_its_last_31_days() -> None:
    end = datetime(2027, 3, 1, tzinfo=UTC)
    start = end - timedelta(days=45)
    (link,) = frame_links({"MN": ["p"]}, start=start, end=end)
    assert parse_qs(urlsplit(link["url"]).query)["data_from"] == ["2027-01-15T00:00:00Z"]
    text_from = parse_qs(urlsplit(link["text_url"]).query)["data_from"][0]
    assert datetime.fromisoformat(text_from.replace("Z", "+00:00")) == end - MAX_TEXT_WINDOW


def test_no_devices_no_links() -> None:
    now = datetime.now(UTC)
    assert frame_links({}, start=now - timedelta(hours=1), end=now) == []
