"""Account administration: the first administrator, opening accounts (one by one and from
Excel), roles and scopes (an O&M company resolved from the archive), changes that end a
person's sessions, and the Excel export."""

from __future__ import annotations

import io

import pytest
from ecowatt_kernel.excel import Column, rows_to_xlsx
from ecowatt_kernel.identity import Role
from openpyxl import load_workbook

from tests.services.auth.conftest import (
    ADMIN_PASSWORD,
    Platform,
    isolated_redis_url,
    start_platform,
)

pytestmark = pytest.mark.integration


async def test_first_start_prints_a_generated_password_once(
    empty_database: str, redis_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    printed = ""
    async for platform in start_platform(
        empty_database, isolated_redis_url(redis_url), admin_password=None
    ):
        printed = capfd.readouterr().err
        assert "初始密码 password:" in printed
        password = printed.split("初始密码 password:")[1].split()[0]
        first = await platform.login(platform.client(), "admin", password)
        assert first.status_code == 403  # a console-printed password must be replaced
        assert first.json()["change_reason"] == "initial"
    async for _ in start_platform(
        empty_database, isolated_redis_url(redis_url), admin_password=None
    ):
        assert "初始密码" not in capfd.readouterr().err  # accounts exist: nothing is created


async def test_roles_and_their_scopes(platform: Platform) -> None:
    admin = await platform.admin()
    roles = (await admin.get("/api/auth/roles")).json()
    by_code = {r["role"]: r for r in roles}
    assert by_code["district_officer"]["name"] == "区县分局人员"
    assert "partner" not in by_code  # keys, not accounts
    wrong = await admin.post(
        "/api/auth/users",
        json={
            "username": "wrong.scope",
            "display_name": "错配",
            "role": "district_officer",
            "scope": {"kind": "city"},
        },
    )
    assert wrong.status_code == 422
    empty = await admin.post(
        "/api/auth/users",
        json={
            "username": "empty.scope",
            "display_name": "空范围",
            "role": "enterprise_user",
            "scope": {"kind": "enterprises", "enterprises": []},
        },
    )
    assert empty.status_code == 422
    taken = await admin.post(
        "/api/auth/users",
        json={
            "username": "ADMIN",
            "display_name": "重名",
            "role": "admin",
            "scope": {"kind": "city"},
        },
    )
    assert taken.status_code == 409


async def test_an_om_company_scope_follows_the_archive(platform: Platform) -> None:
    admin = await platform.admin()
    ours = []
    for n, company in enumerate(("秦川运维有限公司", "秦川运维有限公司", "别家运维")):
        created = await admin.post(
            "/api/registry/enterprises",
            json={
                "name": f"运维范围{n}",
                "district_code": "610112",
                "performance_grade": "C",
                "om_company": company,
            },
        )
        assert created.status_code == 201, created.text
        if company.startswith("秦川"):
            ours.append(created.json()["id"])
    view = platform.runtime.view
    assert view is not None
    await platform.wait_for(lambda: all(view.enterprise(i) for i in ours))
    _, username, password = await platform.person(
        Role.OM_OPERATOR, {"kind": "om_company", "om_company": "秦川运维有限公司"}
    )
    browser = platform.client()
    me = (await platform.login(browser, username, password)).json()["user"]
    assert sorted(me["effective_enterprises"]) == sorted(ours)
    listed = await browser.get("/api/registry/enterprises")
    assert sorted(e["id"] for e in listed.json()["items"]) == sorted(ours)


async def test_a_role_change_ends_the_persons_sessions(platform: Platform) -> None:
    user_id, username, password = await platform.person(Role.CITY_SUPERVISOR)
    browser = platform.client()
    assert (await platform.login(browser, username, password)).status_code == 200
    admin = await platform.admin()
    changed = await admin.patch(
        f"/api/auth/users/{user_id}",
        json={"role": "district_officer", "scope": {"kind": "districts", "districts": ["610113"]}},
    )
    assert changed.status_code == 200 and changed.json()["role"] == "district_officer"
    assert (await browser.get("/api/auth/me")).status_code == 401
    again = await platform.login(platform.client(), username, password)
    assert again.json()["user"]["effective_districts"] == ["610113"]
    # a change of the phone number alone does not log anyone out
    session = platform.client()
    assert (await platform.login(session, username, password)).status_code == 200
    await admin.patch(f"/api/auth/users/{user_id}", json={"phone": "13900000000"})
    assert (await session.get("/api/auth/me")).status_code == 200
    own = (await admin.get("/api/auth/me")).json()["id"]
    demote = await admin.patch(f"/api/auth/users/{own}", json={"status": "disabled"})
    assert demote.status_code == 409


async def test_reset_password_and_revoke_sessions(platform: Platform) -> None:
    user_id, username, password = await platform.person(Role.OM_OPERATOR, {"kind": "city"})
    browser = platform.client()
    assert (await platform.login(browser, username, password)).status_code == 200
    admin = await platform.admin()
    revoked = await admin.post(f"/api/auth/users/{user_id}/revoke-sessions")
    assert revoked.status_code == 200
    assert (await browser.get("/api/auth/me")).status_code == 401
    reset = await admin.post(f"/api/auth/users/{user_id}/reset-password", json={})
    temporary = reset.json()["initial_password"]
    assert temporary and reset.json()["must_change_password"]
    assert (await platform.login(platform.client(), username, password)).status_code == 401
    must = await platform.login(platform.client(), username, temporary)
    assert must.status_code == 403 and must.json()["change_reason"] == "initial"


def workbook(rows: list[dict[str, object]]) -> bytes:
    columns = [
        Column(key, header)
        for key, header in (
            ("username", "登录名"),
            ("display_name", "姓名"),
            ("role", "角色"),
            ("scope_kind", "数据范围"),
            ("districts", "区县代码"),
            ("enterprises", "企业ID"),
            ("phone", "手机号"),
        )
    ]
    return rows_to_xlsx(columns, rows, title="账号")


async def test_excel_import_is_all_or_nothing_and_export_lists_accounts(platform: Platform) -> None:
    admin = await platform.admin()
    template = await admin.get("/api/auth/users/import/template")
    assert template.status_code == 200
    sheet = load_workbook(io.BytesIO(template.content), read_only=True)["账号"]
    header = next(sheet.iter_rows(values_only=True))
    assert header[:4] == ("登录名*", "姓名*", "角色*", "数据范围*")

    rows = [
        {
            "username": "wang.fang",
            "display_name": "王芳",
            "role": "区县分局人员",
            "scope_kind": "区县",
            "districts": "610112、610113",
            "phone": "13800000001",
        },
        {
            "username": "zhao.lei",
            "display_name": "赵磊",
            "role": "enterprise_user",
            "scope_kind": "企业",
            "enterprises": "ent-1,ent-2",
        },
        {"username": "bad row", "display_name": "", "role": "市长", "scope_kind": "区县"},
    ]
    files = {"file": ("accounts.xlsx", workbook(rows), "application/octet-stream")}
    refused = await admin.post("/api/auth/users/import", files=files)
    assert refused.status_code == 422
    errors = refused.json()["errors"]
    assert {e["row"] for e in errors} == {4} and not refused.json()["created"]
    assert (await admin.get("/api/auth/users", params={"q": "wang.fang"})).json()["total"] == 0

    files = {"file": ("accounts.xlsx", workbook(rows[:2]), "application/octet-stream")}
    dry = await admin.post("/api/auth/users/import", files=files, params={"dry_run": "true"})
    assert dry.status_code == 200 and not dry.json()["created"]
    done = await admin.post("/api/auth/users/import", files=files)
    assert done.status_code == 200, done.text
    created = {c["username"]: c for c in done.json()["created"]}
    assert set(created) == {"wang.fang", "zhao.lei"}
    assert all(c["initial_password"] for c in created.values())
    again = await admin.post("/api/auth/users/import", files=files)
    assert again.status_code == 422  # the names are taken now
    officer = (await admin.get("/api/auth/users", params={"q": "wang.fang"})).json()["items"][0]
    assert officer["scope"] == {
        "kind": "districts",
        "districts": ["610112", "610113"],
        "enterprises": [],
        "om_company": None,
    }
    assert officer["role_name"] == "区县分局人员"

    export = await admin.get("/api/auth/users.xlsx", params={"role": "district_officer"})
    sheet = load_workbook(io.BytesIO(export.content), read_only=True)["账号"]
    rows_out = list(sheet.iter_rows(values_only=True))
    assert rows_out[0][:3] == ("登录名", "姓名", "角色")
    assert [r[0] for r in rows_out[1:]] == ["wang.fang"]
    listed = await admin.get("/api/auth/users", params={"district": "610113"})
    assert [u["username"] for u in listed.json()["items"]] == ["wang.fang"]
    assert ADMIN_PASSWORD  # the administrator's own password never appears in an export
    assert ADMIN_PASSWORD.encode() not in export.content
