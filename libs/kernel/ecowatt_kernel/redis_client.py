"""Redis access (redis-py asyncio). Redis holds only what can be rebuilt (DESIGN §4)."""

from __future__ import annotations

from redis.asyncio import Redis

__all__ = ["Redis", "create_redis", "redis_healthy"]


def create_redis(url: str) -> Redis:
    """A client pool for `url`; values are bytes."""
    return Redis.from_url(
        url, health_check_interval=30, socket_connect_timeout=5, socket_keepalive=True
    )


async def redis_healthy(client: Redis) -> bool:
    """True when Redis answers PING."""
    try:
        return bool(await client.ping())
    except Exception:
        return False
