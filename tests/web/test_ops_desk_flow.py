"""The O&M desk in a real browser against the real standalone platform (issue 16's "in the
web application").

One story: an enterprise user files a data-correction request (its enterprise filled in from
its scope, another enterprise's request never in its list, the incident pages refused); an
O&M operator accepts and resolves it; the enterprise closes it. The O&M operator finds an
incident opened through the API on the incident list with its running clocks, responds and
resolves it (both clocks met), links the similar knowledge-base article the page suggests;
the knowledge base finds that article by a Chinese fragment; the abnormal-event report of
the month counts the incidents as the API does and downloads as Excel and PDF. Every desk
page is photographed on the way (docs/ui.md).

The file's name sorts after the asynchronous tests of this folder on purpose: the
session's synchronous Playwright keeps an event loop running once it starts, and
pytest-asyncio cannot run a test inside it.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import Platform, login, shoot

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def api_get(platform: Platform, path: str, **params: Any) -> Any:
    with platform.api() as client:
        answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def api_post(platform: Platform, path: str, body: dict[str, Any]) -> Any:
    with platform.api() as client:
        answer = client.post(path, json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def seeded_enterprises(platform: Platform, limit_s: float = 600.0) -> list[dict[str, Any]]:
    """Two enterprises of the synthetic city (a fresh platform seeds it after it starts)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        items = api_get(platform, "/api/registry/enterprises", page_size=2)["items"]
        if len(items) == 2:
            return list(items)
        time.sleep(2)
    raise AssertionError(f"the synthetic city was not seeded within {limit_s:.0f} s")


def act(page: Any, action: str, text: str | None = None) -> None:
    page.click(f"[data-test=action-{action}]")
    page.wait_for_selector(f"[data-test=form-{action}]")
    if text is not None:
        page.fill("textarea[data-test=action-text]", text)
    page.click("[data-test=action-submit]")


def settle(page: Any) -> None:
    """Let the toasts of the last steps go before a photograph."""
    page.evaluate("document.querySelectorAll('.el-message').forEach(m => m.remove())")


def header_status(page: Any, kind: str, text: str) -> None:
    page.wait_for_selector(f".page-header [data-test={kind}-status]:has-text('{text}')")


@pytest.mark.timeout(1500)  # a fresh platform seeds its city first; slow on a shared machine
def test_request_and_incident_through_the_desk(
    platform: Platform, browser_context_factory: Any
) -> None:
    tag = uuid.uuid4().hex[:6]
    enterprises = seeded_enterprises(platform)
    own, other = enterprises[0]["id"], enterprises[1]["id"]
    # Set-up through the API: another enterprise's request, an incident, an article.
    foreign = api_post(
        platform,
        "/api/ops/requests",
        {"kind": "question", "title": f"其他企业的问题 {tag}", "enterprise_id": other},
    )
    incident = api_post(
        platform,
        "/api/ops/incidents",
        {
            "title": f"消费者组积压严重，数据处理延迟 {tag}",
            "level": "major",
            "affected_function": "数据接入",
            "impact": "报警判定延迟约 10 分钟",
        },
    )
    article = api_post(
        platform,
        "/api/ops/kb/articles",
        {
            "title": f"消费者组积压严重时的处理 {tag}",
            "category": "平台运行",
            "tags": ["Kafka", "积压"],
            "summary": "先看死信主题，再扩容消费者",
            "body": "1. 系统状态页查看消费积压\n2. 检查死信主题\n3. 扩容或重启消费者",
            "visibility": "everyone",
        },
    )

    # --- the enterprise files a data correction; only its own requests are in its list
    company_id = platform.create_user(
        f"desk.enterprise.{tag}",
        "enterprise_user",
        {"kind": "enterprises", "enterprises": [own]},
        "Start-Pass!d1e2s3",
    )
    company = browser_context_factory().new_page()
    login(company, platform, f"desk.enterprise.{tag}", "Start-Pass!d1e2s3", "Desk-Ent!x9q2026")
    menu = company.inner_text(".aside")
    assert "运维服务台" in menu and "服务请求" in menu and "维护知识库" in menu
    assert "运维工单" not in menu and "异常事件报送" not in menu
    company.goto(f"{platform.base_url}/desk/requests")
    company.click("[data-test=request-new]")
    company.click("[data-test=request-kind] >> text=数据修改")
    assert "2 个工作日内完成" in company.inner_text("[data-test=request-form]")
    company.fill("input[data-test=request-title]", f"更正治污设施额定功率 {tag}")
    company.fill(
        "textarea[data-test=request-description]", "除尘风机额定功率应为 75 kW，档案中为 55 kW。"
    )
    assert company.input_value("input[data-test=request-enterprise]") == own
    company.click("[data-test=request-submit]")
    header_status(company, "request", "待受理")
    company.wait_for_selector("[data-test=request-clock] [data-test=clock-running]")
    request_id = company.url.rsplit("/", 1)[-1]
    filed = api_get(platform, f"/api/ops/requests/{request_id}")
    assert filed["kind"] == "data_correction" and filed["enterprise_id"] == own
    assert filed["requester"] == company_id and filed["clock"]["status"] == "running"
    assert company.is_visible("[data-test=action-withdraw]")
    assert not company.is_visible("[data-test=action-accept]")
    company.goto(f"{platform.base_url}/desk/requests")
    company.wait_for_selector(f"[data-test=request-list] tr:has-text('更正治污设施额定功率 {tag}')")
    company.wait_for_load_state("networkidle")
    assert foreign["title"] not in company.inner_text("[data-test=request-list]")
    company.goto(f"{platform.base_url}/desk/requests/{foreign['id']}")
    company.wait_for_selector("text=加载失败")  # another enterprise's request: 404
    company.goto(f"{platform.base_url}/desk/incidents")
    company.wait_for_selector("text=无权访问此页面")

    # --- an O&M operator accepts and resolves it
    platform.create_user(f"desk.om.{tag}", "om_operator", {"kind": "city"}, "Start-Pass!o1m2x3")
    operator = browser_context_factory().new_page()
    login(operator, platform, f"desk.om.{tag}", "Start-Pass!o1m2x3", "Desk-Oper!x7w2026")
    operator.click("[data-test=menu-requests]")
    operator.wait_for_selector(f"[data-test=request-list] tr:has-text('{foreign['title']}')")
    row = f"[data-test=request-list] tr:has-text('更正治污设施额定功率 {tag}')"
    assert "待受理" in operator.inner_text(row)
    shoot(operator, platform, "desk-requests")
    operator.click(row)
    header_status(operator, "request", "待受理")
    assert not operator.is_visible("[data-test=action-withdraw]")  # only the requester's
    act(operator, "accept")
    header_status(operator, "request", "处理中")
    act(operator, "resolve", "已将除尘风机额定功率更正为 75 kW，阈值同步重算。")
    header_status(operator, "request", "已完成")
    operator.wait_for_selector("[data-test=request-clock] [data-test=clock-met]")
    timeline = operator.inner_text("[data-test=timeline]")
    for word in ("提交", "受理", "完成", "已将除尘风机额定功率更正为 75 kW"):
        assert word in timeline
    settle(operator)
    shoot(operator, platform, "desk-request")
    resolved = api_get(platform, f"/api/ops/requests/{request_id}")
    assert resolved["status"] == "resolved" and resolved["clock"]["status"] == "met"
    steps = [e["kind"] for e in resolved["timeline"] if e["kind"] != "escalated"]
    assert steps == ["submitted", "accepted", "resolved"]

    # --- the enterprise sees the answer and closes the request
    company.goto(f"{platform.base_url}/desk/requests/{request_id}")
    header_status(company, "request", "已完成")
    assert "75 kW" in company.inner_text("[data-test=request-resolution]")
    act(company, "close")
    header_status(company, "request", "已关闭")
    assert api_get(platform, f"/api/ops/requests/{request_id}")["status"] == "closed"

    # --- the incident opened through the API is on the list with its clocks; O&M works it
    operator.click("[data-test=menu-incidents]")
    row = f"[data-test=incident-list] tr:has-text('{incident['number']}')"
    operator.wait_for_selector(row)
    assert "待响应" in operator.inner_text(row) and "严重" in operator.inner_text(row)
    assert operator.locator(f"{row} [data-test=clock-running]").count() == 2
    operator.wait_for_function(
        "() => Number(document.querySelector('[data-test=count-open]')"
        "?.textContent.replace(/\\D/g, '')) >= 1"
    )
    shoot(operator, platform, "desk-incidents")
    operator.click(row)
    header_status(operator, "incident", "待响应")
    assert not operator.is_visible("[data-test=action-verify]")  # the city bureau verifies
    act(operator, "respond")
    header_status(operator, "incident", "处理中")
    operator.wait_for_selector("[data-test=response-clock] [data-test=clock-met]")
    act(operator, "resolve", "扩容消费者至 3 个实例，积压已消除。")
    header_status(operator, "incident", "已解决")
    operator.wait_for_selector("[data-test=resolution-clock] [data-test=clock-met]")
    assert "扩容消费者" in operator.inner_text("[data-test=incident-resolution]")

    # --- "similar past cases" suggests the article; linking it is recorded
    operator.wait_for_selector(f"[data-test=similar-article-{article['id']}]")
    operator.click(f"[data-test=link-{article['id']}]")
    operator.wait_for_selector(f"[data-test=linked-articles] >> text={article['title']}")
    settle(operator)
    shoot(operator, platform, "desk-incident")
    worked = api_get(platform, f"/api/ops/incidents/{incident['id']}")
    assert worked["status"] == "resolved"
    assert worked["response"]["status"] == "met" and worked["resolution_clock"]["status"] == "met"
    assert [a["id"] for a in worked["articles"]] == [article["id"]]
    kinds = [e["kind"] for e in worked["timeline"] if e["kind"] != "escalated"]
    assert kinds[:3] == ["opened", "responded", "resolved"] and "article_linked" in kinds

    # --- the knowledge base finds it by a fragment of a Chinese phrase
    operator.click("[data-test=menu-knowledge]")
    operator.fill("input[data-test=kb-search]", f"组积压 {tag}")
    operator.click("[data-test=kb-search-go]")
    operator.wait_for_selector(f"[data-test=article-list] tr:has-text('{article['title']}')")
    shoot(operator, platform, "desk-knowledge")
    operator.fill("input[data-test=kb-search]", f"组积压没有的词 {tag}")
    operator.click("[data-test=kb-search-go]")
    operator.wait_for_selector("[data-test=article-list] >> text=没有包含")
    company.goto(f"{platform.base_url}/desk/kb/{article['id']}")  # visible to everyone
    company.wait_for_selector("[data-test=article-body] >> text=检查死信主题")
    assert not company.is_visible("[data-test=article-edit]")

    # --- the month's abnormal-event report counts what the API counts; Excel and PDF
    operator.click("[data-test=menu-abnormal]")
    operator.wait_for_selector("[data-test=figure-events] .value")
    month = operator.input_value("[data-test=report-month] input")
    assert re.fullmatch(r"\d{4}-\d{2}", month)

    def events() -> int:
        report = api_get(platform, "/api/ops/reports/abnormal-events", month=month)
        return int(report["figures"]["events"])

    # The platform's own checks may open an incident meanwhile: the page's count lies
    # between the API's counts before and after it recomputed.
    before = events()
    with operator.expect_response(lambda r: "/reports/abnormal-events?" in r.url):
        operator.click("[data-test=report-recompute]")
    operator.wait_for_timeout(500)
    shown = int(operator.inner_text("[data-test=figure-events] .value"))
    assert before <= shown <= events()
    expected = api_get(platform, "/api/ops/reports/abnormal-events", month=month)
    assert any(e["number"] == incident["number"] for e in expected["events"])
    assert incident["number"] in operator.inner_text("[data-test=report-events]")
    shoot(operator, platform, "desk-abnormal")
    with operator.expect_download() as excel:
        operator.click("[data-test=abnormal] [data-test=export] >> nth=0")
    assert Path(excel.value.path()).read_bytes()[:2] == b"PK"
    with operator.expect_download() as pdf:
        operator.click("[data-test=abnormal] [data-test=export] >> nth=1")
    assert Path(pdf.value.path()).read_bytes()[:5] == b"%PDF-"
