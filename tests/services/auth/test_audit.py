"""The audit log: events stored append-only in a hash chain that reveals tampering; search,
filters and the Excel export."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

import pytest
from ecowatt_auth.audit.service import append, verify_chain
from ecowatt_kernel.contracts import AuditEvent
from ecowatt_kernel.db import Database
from openpyxl import load_workbook
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.services.auth.conftest import Platform

pytestmark = pytest.mark.integration


def event(n: int) -> tuple[str, str, AuditEvent]:
    return (
        str(uuid.uuid4()),
        uuid.uuid4().hex,
        AuditEvent(
            actor=f"user-{n}",
            actor_kind="user",
            action="PATCH /api/registry/enterprises/{key}",
            resource=f"/api/registry/enterprises/e-{n}",
            outcome="success",
            at=datetime.now(UTC),
            source_ip="10.0.0.1",
            details={"status": 200, "n": n, "note": "修改档案"},
        ),
    )


async def test_the_chain_reveals_changed_and_removed_rows(platform: Platform) -> None:
    database = Database(platform.database_url, schema="auth")
    try:
        batch = [event(n) for n in range(20)]
        async with database.transaction() as session:
            assert await append(session, batch) == 20
            assert await append(session, batch[:5]) == 0  # redelivered: stored once
        async with database.session() as session:
            check = await verify_chain(session)
        assert check.ok and check.checked >= 20
        seq = check.first_seq + 7  # type: ignore[operator]

        # the database itself refuses changes and deletions
        for statement in (
            f"UPDATE auth.audit_log SET actor = 'someone-else' WHERE seq = {seq}",
            f"DELETE FROM auth.audit_log WHERE seq = {seq}",
            "TRUNCATE auth.audit_log",
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                async with database.transaction() as session:
                    await session.execute(text(statement))

        # a superuser who switches the trigger off is found out by the chain
        async with database.transaction() as session:
            await session.execute(text("ALTER TABLE auth.audit_log DISABLE TRIGGER USER"))
            await session.execute(
                text(
                    "UPDATE auth.audit_log SET details = details || '{\"status\": 403}' "
                    f"WHERE seq = {seq}"
                )
            )
            await session.execute(text("ALTER TABLE auth.audit_log ENABLE TRIGGER USER"))
        async with database.session() as session:
            tampered = await verify_chain(session)
        assert not tampered.ok and tampered.broken_at == seq
        assert "content" in (tampered.reason or "")

        async with database.transaction() as session:
            await session.execute(text("ALTER TABLE auth.audit_log DISABLE TRIGGER USER"))
            await session.execute(
                text(f"DELETE FROM auth.audit_log WHERE seq >= {seq} AND seq <= {seq + 1}")
            )
            await session.execute(text("ALTER TABLE auth.audit_log ENABLE TRIGGER USER"))
        async with database.session() as session:
            removed = await verify_chain(session)
        assert not removed.ok and removed.broken_at == seq + 2
        assert "missing" in (removed.reason or "")
    finally:
        await database.dispose()


async def test_requests_are_searchable_and_exported(platform: Platform) -> None:
    admin = await platform.admin("10.9.8.7")
    created = await admin.post(
        "/api/registry/enterprises",
        json={"name": "审计检索测试", "district_code": "610112", "performance_grade": "C"},
    )
    assert created.status_code == 201
    stranger = await platform.client("10.9.8.8").get("/api/registry/enterprises")
    assert stranger.status_code == 401

    async def logged() -> bool:
        rows = await platform.audit_rows(source_ip="10.9.8.7")
        return any(r["action"] == "POST /api/registry/enterprises" for r in rows)

    await platform.wait_for(logged)
    found = await admin.get(
        "/api/auth/audit", params={"action": "POST /api/registry", "source_ip": "10.9.8.7"}
    )
    assert found.status_code == 200
    items = found.json()["items"]
    assert len(items) == 1 and items[0]["outcome"] == "success"
    assert items[0]["details"]["status"] == 201 and items[0]["details"]["name"] == "系统管理员"
    logins = await admin.get("/api/auth/audit", params={"action": "auth.login"})
    assert any(i["details"]["username"] == "admin" for i in logins.json()["items"])
    refused = await admin.get(
        "/api/auth/audit", params={"outcome": "denied", "source_ip": "10.9.8.8"}
    )
    assert refused.json()["items"][0]["actor"] == "anonymous"

    export = await admin.get("/api/auth/audit.xlsx", params={"source_ip": "10.9.8.7"})
    assert export.status_code == 200
    sheet = load_workbook(io.BytesIO(export.content), read_only=True)["审计日志"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("序号", "时间", "操作人")
    assert any(r[5] == "POST /api/registry/enterprises" and r[7] == "成功" for r in rows[1:])
    verified = await admin.get("/api/auth/audit/verify")
    assert verified.status_code == 200 and verified.json()["ok"] is True
