"""Writing the synthetic city into the archive, and remembering its seed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from ecowatt_kernel.passwords import hash_password, verify_password
from ecowatt_kernel.synthetic import device_password
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_registry.archive import DEVICE, KINDS, ArchiveWriter
from ecowatt_registry.database import Meta
from ecowatt_registry.enterprises.models import Enterprise
from ecowatt_registry.synthetic.generator import CityOptions, generate_city

META_KEY = "synthetic_city"
ACTOR = "system:synthetic-city"


async def archive_is_empty(session: AsyncSession) -> bool:
    """True when the archive has no enterprise."""
    return await session.scalar(select(Enterprise.id).limit(1)) is None


async def recorded_city(session: AsyncSession) -> dict[str, Any] | None:
    """The options and counts of the synthetic city in the archive, if any."""
    meta = await session.get(Meta, META_KEY)
    return dict(meta.value) if meta else None


async def _password_hashes(
    session: AsyncSession, seed: int, devices: list[dict[str, Any]]
) -> list[str]:
    stored = await ArchiveWriter(session, actor=None).load(DEVICE, [d["mn"] for d in devices])

    def digest(mn: str) -> str:
        password = device_password(seed, mn)
        current = stored.get(mn, {}).get("password_hash")
        if current and verify_password(password, current):
            return str(current)  # same city again: keep the hash, change nothing
        return hash_password(password)

    # hashlib.scrypt releases the GIL; a bounded number of threads uses every core.
    limit = asyncio.Semaphore(4)

    async def one(mn: str) -> str:
        async with limit:
            return await asyncio.to_thread(digest, mn)

    return list(await asyncio.gather(*(one(d["mn"]) for d in devices)))


async def seed_city(session: AsyncSession, options: CityOptions) -> dict[str, Any]:
    """Write the city of `options` (in the session's transaction); its summary."""
    city = await asyncio.to_thread(generate_city, options)
    hashes = await _password_hashes(session, options.seed, city.states["device"])
    for device, digest in zip(city.states["device"], hashes, strict=True):
        device["password_hash"] = digest
    writer = ArchiveWriter(session, actor=ACTOR, reason=f"synthetic city, seed {options.seed}")
    written: dict[str, dict[str, int]] = {}
    for kind in KINDS.values():
        result = await writer.upsert(kind, city.states[kind.name])
        written[kind.name] = {
            "created": len(result.created),
            "updated": len(result.updated),
            "unchanged": len(result.unchanged),
        }
    summary = {
        "seed": options.seed,
        "enterprises": options.enterprises,
        "defect_share": options.defect_share,
        "counts": {kind: city.count(kind) for kind in KINDS},
        "defects": {name: len(ids) for name, ids in city.defects.items()},
        "generated_at": datetime.now(UTC).isoformat(),
        "password_rule": "ecowatt_kernel.synthetic.device_password(seed, mn)",
    }
    await session.execute(
        insert(Meta)
        .values(key=META_KEY, value=summary, updated_at=datetime.now(UTC))
        .on_conflict_do_update(
            index_elements=[Meta.key], set_={"value": summary, "updated_at": datetime.now(UTC)}
        )
    )
    return {**summary, "written": written}
