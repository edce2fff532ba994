"""Rate limits and daily quotas in Redis: a sliding one-minute window per identity, per API
key and per address (public endpoints); a daily request quota per API key (local days).

The sliding window is the usual two-counter estimate: this minute's count plus last
minute's, weighted by how much of last minute still lies inside the past sixty seconds. A
fixed window would let a caller send twice its limit across a minute boundary, and would
forget a burst the moment the clock turns a minute.

Counters are added to the pipeline that also looks up the caller, so a request costs one
Redis round trip.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ecowatt_kernel.problems import Problem
from ecowatt_kernel.redis_client import Redis
from redis.asyncio.client import Pipeline

__all__ = ["RateLimited", "add_quota", "add_rate", "quota_used", "retry_after_quota"]


class RateLimited(Problem):
    status, type_suffix = 429, "rate-limited"


def add_rate(pipe: Pipeline, who: str, now: float | None = None) -> None:
    """Count one request of `who` (three pipeline results: this minute's count, the expire,
    last minute's count), to be judged by `rate_exceeded`."""
    minute = int((time.time() if now is None else now) // 60)
    key = f"auth:rl:{who}:{minute}"
    pipe.incr(key)
    pipe.expire(key, 120)
    pipe.get(f"auth:rl:{who}:{minute - 1}")


def rate_exceeded(
    current: int, previous: int, limit: int, now: float | None = None
) -> RateLimited | None:
    """A 429 when the requests of the past sixty seconds, this one included, exceed `limit`."""
    now = time.time() if now is None else now
    elapsed = (now % 60) / 60
    if current + previous * (1 - elapsed) <= limit:
        return None
    if current < limit and previous:
        # last minute's share fades until this one request fits again
        retry = math.ceil((1 - (limit - current) / previous - elapsed) * 60)
    else:
        retry = 60 - int(now % 60)
    retry = min(60, max(1, retry))
    return RateLimited(
        f"请求过于频繁，请 {retry} 秒后再试 "
        f"(more than {limit} requests per minute; retry in {retry} s)",
        retry_after=retry,
        limit=limit,
    )


def _day(zone: str, now: float) -> str:
    return datetime.fromtimestamp(now, ZoneInfo(zone)).strftime("%Y%m%d")


def add_quota(pipe: Pipeline, key_id: str, zone: str, now: float | None = None) -> None:
    """Count one request against the key's quota of the local day (two results)."""
    key = f"auth:quota:{key_id}:{_day(zone, time.time() if now is None else now)}"
    pipe.incr(key)
    pipe.expire(key, 2 * 86400)


def retry_after_quota(zone: str, now: float | None = None) -> int:
    """Seconds until the next local midnight."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, ZoneInfo(zone))
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - moment).total_seconds()))


async def quota_used(redis: Redis, key_id: str, zone: str) -> int:
    value = await redis.get(f"auth:quota:{key_id}:{_day(zone, time.time())}")
    return int(value or 0)
