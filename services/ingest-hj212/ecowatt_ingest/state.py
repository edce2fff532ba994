"""Session state in Redis: rebuildable, written in batches, readable by every instance.

Keys (prefix `ingest` by default):

| Key | Type | Holds |
|---|---|---|
| `ingest:dev:{mn}` | hash | session fields and counters (see below) |
| `ingest:devices` | zset | every verified MN seen → last seen (epoch s) |
| `ingest:rejects:{mn}` | list | a verified device's recent rejects (JSON), newest first, capped |
| `ingest:unverified` | zset, capped | MNs whose frames were refused at the door → last seen |
| `ingest:unverified:{mn}` | hash, TTL | why, from where, when first and last, how many frames |
| `ingest:unregistered` | zset, capped | refused MNs with no usable registry entry → last seen |
| `ingest:instance:{id}` | string, TTL | heartbeat of a running ingest instance |
| `ingest:sessions:{id}` | set | MNs with a session on instance `id` |
| `ingest:cmd:{command_id}` | hash | a command's request and latest result |
| `ingest:cmdclaim:{command_id}` | string, TTL | the instance that took a command |
| `ingest:qns:{mn}` | list, capped, TTL | `QN|CRC-32` of a device's recent durable uploads |
| `ingest:bound` | pub/sub channel | "instance\nMN connected_at\n…": sessions just bound |

The last two serve several workers only: the duplicate check across workers, and the
announcement that makes the worker holding an older connection of a device close it.

Once a session is bound (`bind`, unconditional: the newest connection wins), later writes of
its fields are conditional on the hash still naming its session id, so an instance whose
connection of the device was taken over by another never writes over the new session.

A device is online when its hash says so *and* the instance holding it is alive (its
heartbeat key exists);
`ingest:dev:{mn}` holds online, instance, session_id, peer, connected_at, last_seen,
disconnected_at, version, crc_variant, registered, identity and the counters of the
current (or last) session: frames, accepted, rejected, duplicates, bytes. A crashed
instance's sessions therefore read as offline once its heartbeat expires. Everything
here is rebuilt from live connections.

Only verified devices (bounded by the registry) get `dev`, `rejects` and `devices` entries.
What comes from MNs refused at the door is bounded however many MNs a sender invents:
`unverified` holds at most `keep` MNs (the least recently seen are dropped with their
hash), every hash expires `ttl_s` after its last frame, members older than that are
trimmed, and `unregistered` is a subset of `unverified`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ecowatt_kernel.redis_client import Redis

__all__ = ["SessionStore", "Unverified"]


@dataclass(slots=True)
class Unverified:
    """What one flush learned about an MN refused at the door."""

    mn: str
    first_seen: float
    last_seen: float = 0.0
    reason: str = ""
    peer: str = ""
    cn: str | None = None
    frames: int = 0
    listed: bool = False
    """Listed under `/unregistered` (the registry holds no usable entry for the MN)."""


# Mark a session offline only if the hash still belongs to that session: the device may
# already be connected to another instance.
_MARK_OFFLINE = """
if redis.call('HGET', KEYS[1], 'session_id') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'online', '0', 'disconnected_at', ARGV[2])
  return 1
end
return 0
"""

# Write a session's fields only while the hash still belongs to it (ARGV[1]: its id).
_UPDATE_SESSION = """
if redis.call('HGET', KEYS[1], 'session_id') == ARGV[1] then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
  return 1
end
return 0
"""

# Remember durable uploads: ARGV = prefix, keep, ttl, then (MN, member) pairs. One call per
# publish batch, whatever the number of devices in it.
_REMEMBER_QNS = """
local prefix, keep, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 4, #ARGV, 2 do
  local key = prefix .. ARGV[i]
  redis.call('LPUSH', key, ARGV[i + 1])
  redis.call('LTRIM', key, 0, keep - 1)
  redis.call('EXPIRE', key, ttl)
end
return 0
"""


class SessionStore:
    """Redis access for sessions, devices and command status."""

    def __init__(self, redis: Redis, *, prefix: str = "ingest", instance: str = "local") -> None:
        self.redis = redis
        self.prefix = prefix
        self.instance = instance
        self._remember_qns = redis.register_script(_REMEMBER_QNS)

    # ------------------------------------------------------------------------ keys
    def dev(self, mn: str) -> str:
        return f"{self.prefix}:dev:{mn}"

    def rejects(self, mn: str) -> str:
        return f"{self.prefix}:rejects:{mn}"

    @property
    def devices(self) -> str:
        return f"{self.prefix}:devices"

    @property
    def unregistered(self) -> str:
        return f"{self.prefix}:unregistered"

    @property
    def unverified(self) -> str:
        return f"{self.prefix}:unverified"

    def unverified_key(self, mn: str) -> str:
        return f"{self.prefix}:unverified:{mn}"

    def instance_key(self, instance: str) -> str:
        return f"{self.prefix}:instance:{instance}"

    def sessions_key(self, instance: str) -> str:
        return f"{self.prefix}:sessions:{instance}"

    def command(self, command_id: str) -> str:
        return f"{self.prefix}:cmd:{command_id}"

    def claim_key(self, command_id: str) -> str:
        return f"{self.prefix}:cmdclaim:{command_id}"

    def qns(self, mn: str) -> str:
        return f"{self.prefix}:qns:{mn}"

    @property
    def bound_channel(self) -> str:
        return f"{self.prefix}:bound"

    # ----------------------------------------------------------------- instance
    async def heartbeat(self, ttl_s: int) -> None:
        await self.redis.set(self.instance_key(self.instance), str(time.time()), ex=ttl_s)

    async def instance_alive(self, instance: str) -> bool:
        return bool(await self.redis.exists(self.instance_key(instance)))

    async def retire(self) -> None:
        """A clean shutdown: this instance holds no session any more."""
        await self.redis.delete(self.instance_key(self.instance), self.sessions_key(self.instance))

    # ------------------------------------------------------------------ sessions
    async def bind(
        self, sessions: list[tuple[str, Mapping[str, Any]]], *, announce: bool = False
    ) -> list[float | None]:
        """Write new sessions (one pipeline) and return each device's previous last seen.

        With `announce`, the MNs are published on `bound_channel` so that another instance
        (another worker) still holding one of these devices closes its older connection.
        """
        pipe = self.redis.pipeline(transaction=False)
        for mn, fields in sessions:
            pipe.hget(self.dev(mn), "last_seen")
            pipe.hset(self.dev(mn), mapping={k: _text(v) for k, v in fields.items()})
        pipe.sadd(self.sessions_key(self.instance), *(mn for mn, _ in sessions))
        if announce:
            lines = [f"{mn} {fields['connected_at']}" for mn, fields in sessions]
            pipe.publish(self.bound_channel, "\n".join([self.instance, *lines]))
        results = await pipe.execute()
        previous: list[float | None] = []
        for value in results[0 : 2 * len(sessions) : 2]:
            try:
                previous.append(float(value) if value is not None else None)
            except ValueError:
                previous.append(None)
        return previous

    async def write(
        self,
        updates: Iterable[tuple[str, Mapping[str, Any], bool | None]],
        rejects: Mapping[str, list[str]],
        offline: Iterable[tuple[str, str, float]],
        keep_rejects: int,
    ) -> None:
        """One pipeline: session fields, indexes, rejects, offline marks.

        `updates` holds (mn, fields, registered) per changed session; a session's fields are
        written only while the device's hash still names its `session_id` (another
        instance may hold the device now). The indexes are written with one command each
        for all sessions.
        """
        pipe = self.redis.pipeline(transaction=False)
        sessions = self.sessions_key(self.instance)
        seen: dict[str, float] = {}
        registered: list[str] = []
        online: list[str] = []
        for mn, fields, is_registered in updates:
            flat: list[str] = []
            for name, value in fields.items():
                flat += (name, _text(value))
            pipe.eval(_UPDATE_SESSION, 1, self.dev(mn), str(fields["session_id"]), *flat)
            last_seen = fields.get("last_seen")
            if last_seen is not None:
                seen[mn] = float(last_seen)
                if is_registered:
                    registered.append(mn)
            if fields.get("online") == 1:
                online.append(mn)
        if seen:
            pipe.zadd(self.devices, seen)
        if registered:
            pipe.zrem(self.unregistered, *registered)
        if online:
            pipe.sadd(sessions, *online)
        for mn, items in rejects.items():
            pipe.lpush(self.rejects(mn), *items)
            pipe.ltrim(self.rejects(mn), 0, keep_rejects - 1)
        for mn, session_id, at in offline:
            pipe.eval(_MARK_OFFLINE, 1, self.dev(mn), session_id, str(at))
            pipe.srem(sessions, mn)
        await pipe.execute()

    async def write_unverified(
        self, entries: Sequence[Unverified], *, keep: int, ttl_s: float
    ) -> None:
        """Note MNs refused at the door; keep at most `keep` of them, none beyond `ttl_s`."""
        if not entries:
            return
        ttl = max(1, int(ttl_s))
        pipe = self.redis.pipeline(transaction=False)
        members: dict[str, float] = {}
        listed: dict[str, float] = {}
        for entry in entries:
            key = self.unverified_key(entry.mn)
            pipe.hset(
                key,
                mapping={
                    "mn": entry.mn,
                    "reason": entry.reason,
                    "peer": entry.peer,
                    "last_seen": round(entry.last_seen, 3),
                    "cn": entry.cn or "",
                },
            )
            pipe.hsetnx(key, "first_seen", round(entry.first_seen, 3))
            pipe.hincrby(key, "frames", entry.frames)
            pipe.expire(key, ttl)
            members[entry.mn] = entry.last_seen
            if entry.listed:
                listed[entry.mn] = entry.last_seen
        pipe.zadd(self.unverified, members)
        if listed:
            pipe.zadd(self.unregistered, listed)
        cutoff = max(members.values()) - ttl
        pipe.zremrangebyscore(self.unverified, "-inf", cutoff)
        pipe.zremrangebyscore(self.unregistered, "-inf", cutoff)
        pipe.zcard(self.unverified)
        results = await pipe.execute()
        excess = int(results[-1]) - keep
        if excess <= 0:
            return
        popped: Any = await self.redis.zpopmin(self.unverified, excess)
        gone = [_s(member) for member, _ in popped]
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(gone), 1000):
            chunk = gone[start : start + 1000]
            pipe.delete(*(self.unverified_key(mn) for mn in chunk))
            pipe.zrem(self.unregistered, *chunk)
        await pipe.execute()

    # ------------------------------------------------------------------ uploads
    async def remember_qns(
        self, uploads: Sequence[tuple[str, str]], *, keep: int, ttl_s: int
    ) -> None:
        """Note durable uploads as (MN, "QN|content CRC"), newest first, `keep` per device."""
        if not uploads:
            return
        args: list[str | int] = [f"{self.prefix}:qns:", keep, ttl_s]
        for mn, member in uploads:
            args += (mn, member)
        await self._remember_qns(keys=[], args=args)

    async def recent_qns(self, mn: str) -> list[str]:
        """The device's recent durable uploads ("QN|content CRC"), newest first."""
        return [_s(m) for m in await self.redis.lrange(self.qns(mn), 0, -1)]

    async def device_state(self, mn: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.dev(mn))
        return {_s(k): _s(v) for k, v in raw.items()}

    async def device_states(self, mns: Sequence[str]) -> list[dict[str, str]]:
        """`device_state` of several MNs in one round trip."""
        return await self._hashes([self.dev(mn) for mn in mns])

    async def unverified_state(self, mn: str) -> dict[str, str]:
        [state] = await self._hashes([self.unverified_key(mn)])
        return state

    async def unverified_states(self, mns: Sequence[str]) -> list[dict[str, str]]:
        return await self._hashes([self.unverified_key(mn) for mn in mns])

    async def unregistered_page(self, offset: int, count: int) -> tuple[list[str], int]:
        """MNs of `/unregistered`, most recently seen first: one page and the total."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrevrange(self.unregistered, offset, offset + count - 1)
        pipe.zcard(self.unregistered)
        members, total = await pipe.execute()
        return [_s(m) for m in members], int(total)

    async def _hashes(self, keys: Sequence[str]) -> list[dict[str, str]]:
        if not keys:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        results = await pipe.execute()
        return [{_s(k): _s(v) for k, v in raw.items()} for raw in results]

    async def recent_rejects(self, mn: str, limit: int = 50) -> list[dict[str, Any]]:
        items = await self.redis.lrange(self.rejects(mn), 0, limit - 1)
        return [json.loads(item) for item in items]

    async def alive_instances(self) -> set[str]:
        prefix = self.instance_key("")
        found: set[str] = set()
        async for key in self.redis.scan_iter(match=prefix + "*", count=500):
            found.add(_s(key)[len(prefix) :])
        return found

    async def online_mns(self) -> set[str]:
        """MNs with a session on a live instance."""
        instances = await self.alive_instances()
        if not instances:
            return set()
        members = await self.redis.sunion([self.sessions_key(i) for i in instances])
        return {_s(m) for m in members}

    async def owner(self, mn: str) -> str | None:
        """The live instance holding `mn`'s session, if any."""
        values = await self.redis.hmget(self.dev(mn), ["online", "instance"])
        online, instance = values
        if online != b"1" or instance is None:
            return None
        name = _s(instance)
        return name if await self.instance_alive(name) else None

    async def seen(self) -> dict[str, float]:
        pairs: Any = await self.redis.zrange(self.devices, 0, -1, withscores=True)
        return {_s(m): float(score) for m, score in pairs}

    async def unregistered_seen(self) -> dict[str, float]:
        """Every MN of `/unregistered` → last seen (at most `unverified_max_mns`)."""
        pairs: Any = await self.redis.zrange(self.unregistered, 0, -1, withscores=True)
        return {_s(m): float(score) for m, score in pairs}

    # ------------------------------------------------------------------ commands
    async def claim(self, command_id: str, ttl_s: int = 86_400) -> bool:
        """True for the one instance that takes `command_id`."""
        return bool(
            await self.redis.set(self.claim_key(command_id), self.instance, nx=True, ex=ttl_s)
        )

    async def command_update(self, command_id: str, fields: Mapping[str, Any]) -> None:
        key = self.command(command_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping={k: _text(v) for k, v in fields.items()})
        pipe.expire(key, 7 * 86_400)
        await pipe.execute()

    async def command_state(self, command_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.command(command_id))
        return {_s(k): _s(v) for k, v in raw.items()}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
