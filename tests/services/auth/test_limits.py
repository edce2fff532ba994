"""The sliding one-minute window: judged on the past sixty seconds, not the clock's minute."""

from __future__ import annotations

from ecowatt_auth.gateway.limits import rate_exceeded

MINUTE = 60 * 1_000_000  # an instant on a minute boundary


def test_a_burst_across_a_minute_boundary_is_still_one_burst() -> None:
    # three requests at 59 s of last minute, three at 1 s of this one: six in two seconds
    assert rate_exceeded(3, 3, limit=5, now=MINUTE + 1) is not None
    assert rate_exceeded(2, 3, limit=5, now=MINUTE + 1) is None


def test_last_minutes_share_fades_as_this_minute_goes_on() -> None:
    assert rate_exceeded(1, 5, limit=5, now=MINUTE + 6) is not None  # 1 + 5 × 0.9 = 5.5
    assert rate_exceeded(1, 5, limit=5, now=MINUTE + 30) is None  # 1 + 5 × 0.5 = 3.5


def test_retry_after_is_when_one_more_request_fits() -> None:
    limited = rate_exceeded(1, 5, limit=5, now=MINUTE + 6)
    assert limited is not None
    # 1 + 5 × (1 - t/60) ≤ 5 from t = 12 s on: six seconds from now
    assert limited.extensions["retry_after"] == 6
    full = rate_exceeded(6, 0, limit=5, now=MINUTE + 45)
    assert full is not None and full.extensions["retry_after"] == 15
