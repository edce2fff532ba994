"""The web application in a real browser against a real standalone platform (issue 14).

One story, in order, as the bureau works: a city supervisor logs in (changing the initial
password the administrator gave), shortens R1's confirmation period on the rule page so that
the simulator's showcase faults (control facilities switched off while production runs)
become R1 alarms within a minute or two, opens the overview, drills into the enterprise of an
R1 alarm and dispatches it; the enterprise's user logs in and answers it with an attachment;
the supervisor verifies and closes it; a district officer of another district sees none of
it; and a session ended on the server shows the login again. Every main page is
photographed on the way (docs/ui.md).
"""

from __future__ import annotations

import re
import struct
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import Platform, login, shoot

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def tiny_png() -> bytes:
    """A real 8×8 PNG (the alarm service checks the bytes against the declared type)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\x20\x80\x40" * 8 for _ in range(8))
    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def alarm_status(platform: Platform, alarm_id: str) -> dict[str, Any]:
    with platform.api() as client:
        answer = client.get(f"/api/alarm/alarms/{alarm_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def act(page: Any, action: str, fill: dict[str, str] | None = None) -> None:
    page.click(f"[data-test=action-{action}]")
    page.wait_for_selector(f"[data-test=form-{action}]")
    for selector, value in (fill or {}).items():
        page.fill(selector, value)
    page.click("[data-test=action-submit]")


def status_tag(page: Any) -> str:
    return str(page.inner_text(".page-header [data-test=alarm-status]")).strip()


@pytest.mark.timeout(1200)  # the platform's start and the first R1 alarm take minutes
def test_supervisor_enterprise_and_district_officer(
    platform: Platform, browser_context_factory: Any
) -> None:
    supervisor_pw, enterprise_pw, officer_pw = (
        "Super-Vis0r!x2026",
        "Ent-User!x9q2026",
        "Dist-Off!x7w2026",
    )
    tag = uuid.uuid4().hex[:6]  # fresh accounts also against a platform that ran this before
    supervisor_name, enterprise_name, officer_name = (
        f"web.supervisor.{tag}",
        f"web.enterprise.{tag}",
        f"web.officer.{tag}",
    )
    platform.create_user(supervisor_name, "city_supervisor", {"kind": "city"}, "Start-Pass!q1w2e3")

    # --- the supervisor logs in (forced password change) and lands on the overview
    supervisor = browser_context_factory().new_page()
    supervisor.goto(f"{platform.base_url}/")
    supervisor.wait_for_selector("[data-test=login-form]")
    assert "涉气排污单位治理设施用电监管平台" in supervisor.inner_text("body")
    shoot(supervisor, platform, "login")
    login(supervisor, platform, supervisor_name, "Start-Pass!q1w2e3", supervisor_pw)
    supervisor.wait_for_url(re.compile(r".*/overview$"))
    menu = supervisor.inner_text(".aside")
    for entry in ("一张图", "报警处置", "数据质量", "应急管控", "统计报表"):
        assert entry in menu
    assert "账号管理" not in menu and "审计日志" not in menu  # administrators' and auditors'

    # --- R1's confirmation period is shortened on the rule page (a new rule version)
    supervisor.goto(f"{platform.base_url}/admin/rules")
    supervisor.click("[data-test=rule-edit-R1]")
    supervisor.fill("[data-test=param-confirm_min] input", "1")
    supervisor.fill("textarea[data-test=rule-reason]", "浏览器测试：缩短确认时长")
    supervisor.click("[data-test=rule-save]")
    supervisor.wait_for_selector("text=confirm_min=1")
    shoot(supervisor, platform, "rules")

    alarm = platform.wait_for_r1()
    enterprise_id, district = alarm["enterprise_id"], alarm["district_code"]

    # --- the overview counts it live; the supervisor drills into the enterprise
    supervisor.goto(f"{platform.base_url}/overview")
    supervisor.wait_for_selector("[data-test=live-state]:has-text('实时更新中')")
    supervisor.wait_for_function(
        "() => Number(document.querySelector(\"[data-test='count-state.violating'] .value\")"
        "?.textContent.replace(/,/g, '')) >= 1",
        timeout=60_000,
    )
    enterprises_total = int(
        supervisor.inner_text("[data-test=count-enterprises] .value").replace(",", "")
    )
    assert enterprises_total >= 200
    shoot(supervisor, platform, "overview")
    # a live batch moves an enterprise's point between the states' series, and the districts
    # (drawn once) stay: the map is patched, not redrawn
    quiet = supervisor.evaluate(
        """() => {
          const live = window.__ecowattLive
          const quiet = [...live.enterprises.values()].find(
            (e) => !e.alarms.length && e.longitude != null && e.latitude != null)
          live.apply([{ type: 'alarm', enterprise_id: quiet.id, alarm_id: 'browser-check',
                        rule_code: 'R1', status: 'open', level: 1, active: true }])
          return quiet.id
        }"""
    )
    in_violating = """([id, wanted]) => {
        const option = window.__ecowattOverviewMap()
        const e = window.__ecowattLive.enterprises.get(id)
        return option && option.geo.length === 1
          && option.series[0].data.some((p) => p.id === id
               && p.value[0] === e.longitude && p.value[1] === e.latitude) === wanted
      }"""
    supervisor.wait_for_function(in_violating, arg=[quiet, True], timeout=10_000)
    supervisor.evaluate(
        """(id) => window.__ecowattLive.apply([{ type: 'alarm', enterprise_id: id,
             alarm_id: 'browser-check', rule_code: 'R1', status: 'closed', level: 1 }])""",
        quiet,
    )
    supervisor.wait_for_function(in_violating, arg=[quiet, False], timeout=10_000)

    # a click on a point opens its enterprise (ECharts' large mode finds the point hit)
    point = supervisor.evaluate("() => window.__ecowattOverviewPoint(0, 0)")
    assert point is not None, "no violating point on the map"
    supervisor.mouse.move(point["x"], point["y"])
    supervisor.mouse.click(point["x"], point["y"])
    supervisor.wait_for_url(f"**/enterprises/{point['id']}", timeout=10_000)
    supervisor.wait_for_selector("[data-test=enterprise-name]")

    supervisor.click("[data-test=menu-alarms]")
    supervisor.wait_for_selector(f"tr:has-text('{alarm['enterprise_name']}')")
    shoot(supervisor, platform, "alarms")
    supervisor.goto(f"{platform.base_url}/enterprises/{enterprise_id}")
    supervisor.wait_for_selector("[data-test=enterprise-name]")
    assert supervisor.inner_text("[data-test=enterprise-name]") == alarm["enterprise_name"]
    shoot(supervisor, platform, "enterprise")
    supervisor.click("text=设施与治理线")
    supervisor.wait_for_selector("[data-test=facilities] .el-tag")
    supervisor.click("#tab-alarms")
    supervisor.click(f"tr:has-text('{alarm['rule_name']}') >> nth=0")
    supervisor.wait_for_selector("[data-test=explanation]")
    alarm_id = supervisor.url.rsplit("/", 1)[-1]
    assert alarm_status(platform, alarm_id)["rule_code"] == "R1"
    assert "产污" in supervisor.inner_text("[data-test=explanation]")
    supervisor.wait_for_selector("[data-test=alarm] canvas")  # the evidence curves
    # the raw frames (原始报文) behind the curves, through the gateway and the archive
    detail = alarm_status(platform, alarm_id)
    mn = detail["frames"][0]["mn"]
    supervisor.click(f"[data-test=frames-link]:has-text('{mn}')")
    supervisor.wait_for_selector("[data-test=frames-dialog] [data-test=frame-text]")
    assert supervisor.inner_text("[data-test=frames-dialog] [data-test=frames-mn]") == mn
    assert f"MN={mn}" in supervisor.inner_text("[data-test=frames-dialog] [data-test=frame-text]")
    shoot(supervisor, platform, "alarm-frames")
    supervisor.keyboard.press("Escape")
    supervisor.wait_for_selector("[data-test=frames-dialog]", state="hidden")
    assert supervisor.is_visible("[data-test=action-dispatch]")
    assert not supervisor.is_visible("[data-test=action-feedback]")

    act(
        supervisor,
        "dispatch",
        {"textarea[data-test=action-note]": "请区县分局督促企业立即开启治污设施"},
    )
    supervisor.wait_for_selector(".page-header [data-test=alarm-status]:has-text('已下发')")
    assert alarm_status(platform, alarm_id)["status"] == "dispatched"
    shoot(supervisor, platform, "alarm")

    # --- the enterprise answers with an attachment
    platform.create_user(
        enterprise_name,
        "enterprise_user",
        {"kind": "enterprises", "enterprises": [enterprise_id]},
        "Start-Pass!a1s2d3",
    )
    company = browser_context_factory().new_page()
    login(company, platform, enterprise_name, "Start-Pass!a1s2d3", enterprise_pw)
    company.wait_for_url(re.compile(rf".*/enterprises/{enterprise_id}$"))
    company.wait_for_selector("[data-test=enterprise-name]")
    company_menu = company.inner_text(".aside")
    assert "本企业档案" in company_menu and "一张图" not in company_menu
    company.goto(f"{platform.base_url}/alarms/{alarm_id}")
    company.wait_for_selector("[data-test=action-feedback]")
    assert not company.is_visible("[data-test=action-dispatch]")
    assert not company.is_visible("[data-test=action-verify]")
    company.click("[data-test=action-feedback]")
    company.fill("input[data-test=feedback-cause]", "风机变频器故障")
    company.fill(
        "textarea[data-test=feedback-text]", "已更换变频器，治污设施 14:20 恢复运行，附现场照片。"
    )
    company.set_input_files(
        ".action-form input[type=file]",
        files=[{"name": "现场照片.png", "mimeType": "image/png", "buffer": tiny_png()}],
    )
    company.click("[data-test=action-submit]")
    company.wait_for_selector(".page-header [data-test=alarm-status]:has-text('企业已反馈')")
    company.wait_for_selector("[data-test=attachment]:has-text('现场照片.png')")
    shoot(company, platform, "alarm-feedback")
    answered = alarm_status(platform, alarm_id)
    assert answered["status"] == "replied"
    assert [a["filename"] for a in answered["attachments"]] == ["现场照片.png"]
    with company.expect_download() as download:
        company.click("[data-test=attachment]")
    assert Path(download.value.path()).read_bytes() == tiny_png()

    # --- the supervisor verifies and closes
    supervisor.reload()
    supervisor.wait_for_selector("[data-test=attachment]:has-text('现场照片.png')")
    assert not supervisor.is_visible("[data-test=action-close]")  # not before verification
    supervisor.click("[data-test=action-verify]")
    supervisor.click("[data-test=verify-result] >> text=企业问题")
    supervisor.fill("textarea[data-test=action-note]", "现场核实属实")
    supervisor.click("[data-test=action-submit]")
    supervisor.wait_for_selector(".page-header [data-test=alarm-status]:has-text('已核查')")
    act(supervisor, "close", {"textarea[data-test=action-note]": "整改完成，销号"})
    supervisor.wait_for_selector(".page-header [data-test=alarm-status]:has-text('已销号')")
    closed = alarm_status(platform, alarm_id)
    assert closed["status"] == "closed" and closed["verification"] == "enterprise_problem"
    actions = [entry["action"] for entry in closed["journal"]]
    assert actions[-4:] == ["dispatched", "feedback", "verified", "closed"]
    journal = supervisor.inner_text("[data-test=journal]")
    for word in ("下发", "企业反馈", "核查", "销号", "风机变频器故障"):
        assert word in journal

    # --- a district officer of another district sees none of it
    with platform.api() as client:
        districts = client.get("/api/registry/reference/districts").json()
        counts = {
            d["code"]: client.get(
                "/api/registry/enterprises", params={"district": d["code"], "page_size": 1}
            ).json()["total"]
            for d in districts
            if d["parent"] == "610100" and d["code"] != district
        }
    other = max(counts, key=lambda code: counts[code])
    officer_id = platform.create_user(
        officer_name,
        "district_officer",
        {"kind": "districts", "districts": [other]},
        "Start-Pass!z1x2c3",
    )
    officer = browser_context_factory().new_page()
    login(officer, platform, officer_name, "Start-Pass!z1x2c3", officer_pw)
    officer.wait_for_url(re.compile(r".*/overview$"))
    officer.wait_for_function(
        "n => Number(document.querySelector('[data-test=count-enterprises] .value')"
        "?.textContent.replace(/,/g, '')) === n",
        arg=counts[other],
    )
    officer.goto(f"{platform.base_url}/alarms/{alarm_id}")
    officer.wait_for_selector("text=加载失败")
    assert "已销号" not in officer.inner_text("body")
    officer.goto(f"{platform.base_url}/enterprises/{enterprise_id}")
    officer.wait_for_selector("text=加载失败")
    officer.goto(f"{platform.base_url}/alarms")
    officer.wait_for_selector("[data-test=table]")
    officer.wait_for_load_state("networkidle")
    assert alarm["enterprise_name"] not in officer.inner_text("[data-test=table]")
    officer.goto(f"{platform.base_url}/admin/users")
    officer.wait_for_selector("text=无权访问此页面")

    # --- a session ended on the server: the next request shows the login again
    with platform.api() as client:
        ended = client.post(f"/api/auth/users/{officer_id}/revoke-sessions")
    assert ended.status_code in (200, 204), ended.text
    officer.click("[data-test=menu-enterprises]")
    officer.wait_for_selector("[data-test=relogin]")
    officer.click("[data-test=relogin]")
    officer.wait_for_selector("[data-test=login-form]")
    assert "next=" in officer.url


@pytest.mark.parametrize(
    ("name", "path", "ready"),
    [
        ("enterprises", "/enterprises", "[data-test=table] tbody tr"),
        ("quality", "/quality", "[data-test=table]"),
        ("devices", "/devices", "[data-test=table] tbody tr"),
        ("filings", "/filings", "[data-test=table]"),
        ("plans", "/plans", ".el-tabs"),
        ("reports", "/reports", "canvas"),
        ("users", "/admin/users", "[data-test=table] tbody tr"),
        ("audit", "/admin/audit", "[data-test=table] tbody tr"),
        ("security", "/admin/security", "[data-test=table]"),
        ("status", "/admin/status", ".page-header"),
        ("account", "/account", "[data-test=password-form]"),
        ("desk-duty", "/desk/duty", "[data-test=table]"),
    ],
)
def test_every_main_page_opens_for_the_administrator(
    platform: Platform,
    browser_context_factory: Any,
    admin_page: Any,
    name: str,
    path: str,
    ready: str,
) -> None:
    errors: list[str] = []
    admin_page.on("pageerror", lambda error: errors.append(str(error)))
    admin_page.goto(f"{platform.base_url}{path}")
    admin_page.wait_for_selector(ready)
    admin_page.wait_for_load_state("networkidle")
    assert "无权访问" not in admin_page.inner_text("body")
    shoot(admin_page, platform, name)
    assert errors == []


@pytest.fixture(scope="module")
def admin_page(platform: Platform, browser_context_factory: Any) -> Any:
    page = browser_context_factory().new_page()
    page.goto(f"{platform.base_url}/login")
    page.fill("input[data-test=username]", "admin")
    page.fill("input[data-test=password]", platform.admin_password)
    page.click("[data-test=login]")
    page.wait_for_selector("[data-test=user-menu]")
    return page
