"""The knowledge base: an article is found by a Chinese phrase that is not a whole token
(trigram search), versions keep their authors, a stale save is refused, enterprise users see
only articles meant for everyone, and incidents and requests list similar past cases."""

from __future__ import annotations

import io
from typing import Any

import pytest
from ecowatt_kernel.excel import load_workbook_bytes
from ecowatt_kernel.identity import Role

from tests.services.ops.conftest import Desk, bearer

pytestmark = pytest.mark.integration

OM = bearer(Role.OM_OPERATOR, subject="om-zhang")
CITY = bearer(Role.CITY_SUPERVISOR, subject="city-li")
ENTERPRISE = bearer(Role.ENTERPRISE_USER, enterprises=("ent-001",))

LAG = {
    "title": "告警模块消费者组积压的处理方法",
    "category": "平台运行",
    "tags": ["Kafka", "积压"],
    "summary": "alarm.points 消费者组滞后超过一万条时的排查步骤。",
    "body": (
        "现象：报警延迟。\n原因：治污设施状态计算过慢，消费者组积压严重。\n处理：扩容分区后重启。"
    ),
}
EXPORT = {
    "title": "如何导出本月报警统计",
    "category": "操作指南",
    "tags": ["报表"],
    "summary": "企业用户导出报警统计表。",
    "body": "在报警统计页面选择月份，点击导出 Excel。",
    "visibility": "everyone",
}


async def search(desk: Desk, q: str, headers: Any = OM) -> list[str]:
    response = await desk.client.get("/kb/articles", params={"q": q}, headers=headers)
    assert response.status_code == 200, response.text
    return [a["title"] for a in response.json()["items"]]


@pytest.fixture(scope="module")
async def articles(desk: Desk) -> dict[str, Any]:
    made = {}
    for name, body in (("lag", LAG), ("export", EXPORT)):
        response = await desk.client.post("/kb/articles", json=body, headers=OM)
        assert response.status_code == 201, response.text
        made[name] = response.json()
    return made


async def test_found_by_a_chinese_phrase_that_is_not_a_whole_token(
    desk: Desk, articles: dict[str, Any]
) -> None:
    # "组积压" spans two words of a segmenter (消费者组 | 积压); trigrams find it
    assert await search(desk, "组积压") == [LAG["title"]]
    assert await search(desk, "治污设施状态") == [LAG["title"]]
    # two characters (no trigram index) and mixed scripts still match as substrings
    assert await search(desk, "分区") == [LAG["title"]]
    assert await search(desk, "ALARM.points 滞后") == [LAG["title"]]
    # every term must occur
    assert await search(desk, "积压 导出") == []
    assert set(await search(desk, "报警")) == {LAG["title"], EXPORT["title"]}
    # LIKE wildcards are searched for literally
    assert await search(desk, "%") == []
    tagged = await desk.client.get("/kb/articles", params={"tag": "Kafka"}, headers=OM)
    assert [a["title"] for a in tagged.json()["items"]] == [LAG["title"]]


async def test_versions_keep_their_authors_and_stale_saves_are_refused(
    desk: Desk, articles: dict[str, Any]
) -> None:
    article_id = articles["lag"]["id"]
    assert articles["lag"]["version"] == 1 and articles["lag"]["author"] == "om-zhang"
    response = await desk.client.patch(
        f"/kb/articles/{article_id}",
        json={
            "version": 1,
            "body": LAG["body"] + "\n补充：检查死信主题。",
            "change_note": "补充死信",
        },
        headers=CITY,
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2 and response.json()["updated_by"] == "city-li"
    stale = await desk.client.patch(
        f"/kb/articles/{article_id}", json={"version": 1, "title": "覆盖"}, headers=OM
    )
    assert stale.status_code == 409
    history = (await desk.client.get(f"/kb/articles/{article_id}/versions", headers=OM)).json()
    assert [(v["version"], v["author"], v["change_note"]) for v in history] == [
        (2, "city-li", "补充死信"),
        (1, "om-zhang", "新建"),
    ]
    assert "检查死信主题" in history[0]["body"] and "检查死信主题" not in history[1]["body"]
    # the new text is searchable, the old title still the same
    assert await search(desk, "死信主题") == [LAG["title"]]


async def test_enterprise_users_see_only_articles_for_everyone(
    desk: Desk, articles: dict[str, Any]
) -> None:
    assert await search(desk, "报警", headers=ENTERPRISE) == [EXPORT["title"]]
    hidden = await desk.client.get(f"/kb/articles/{articles['lag']['id']}", headers=ENTERPRISE)
    assert hidden.status_code == 404
    # only O&M and the bureau write
    response = await desk.client.post("/kb/articles", json=EXPORT, headers=ENTERPRISE)
    assert response.status_code == 403
    categories = (await desk.client.get("/kb/categories", headers=ENTERPRISE)).json()
    counts = {c["category"]: c["articles"] for c in categories}
    assert counts["操作指南"] == 1 and counts["平台运行"] == 0


async def test_similar_past_cases_and_links(desk: Desk, articles: dict[str, Any]) -> None:
    response = await desk.client.post(
        "/incidents",
        json={
            "title": "消费者组积压导致报警延迟",
            "level": "moderate",
            "affected_function": "报警",
        },
        headers=OM,
    )
    incident_id = response.json()["id"]
    similar = (await desk.client.get(f"/incidents/{incident_id}/similar", headers=OM)).json()
    assert similar["articles"][0]["id"] == articles["lag"]["id"]
    assert similar["articles"][0]["linked"] is False
    link = await desk.client.post(
        f"/incidents/{incident_id}/articles", json={"article_id": articles["lag"]["id"]}, headers=OM
    )
    assert link.status_code == 200 and link.json()["articles"][0]["id"] == articles["lag"]["id"]
    similar = (await desk.client.get(f"/incidents/{incident_id}/similar", headers=OM)).json()
    assert similar["articles"][0]["linked"] is True
    # once resolved, this incident is a past case for the next one like it
    for step, text in (("resolve", "扩容分区"),):
        await desk.client.post(f"/incidents/{incident_id}/{step}", json={"text": text}, headers=OM)
    response = await desk.client.post(
        "/incidents",
        json={"title": "消费者组积压，报警延迟十分钟", "level": "moderate"},
        headers=OM,
    )
    next_one = (
        await desk.client.get(f"/incidents/{response.json()['id']}/similar", headers=OM)
    ).json()
    assert [c["id"] for c in next_one["incidents"]] == [incident_id]
    # an article written from an incident is linked to it at once
    written = await desk.client.post(
        "/kb/articles",
        json={**LAG, "title": "报警延迟复盘", "from_incident": response.json()["id"]},
        headers=OM,
    )
    assert written.status_code == 201
    assert written.json()["links"][0]["subject_id"] == response.json()["id"]


async def test_export(desk: Desk, articles: dict[str, Any]) -> None:
    response = await desk.client.get("/kb/articles.xlsx", params={"q": "积压"}, headers=OM)
    assert response.status_code == 200
    sheet = load_workbook_bytes(io.BytesIO(response.content).getvalue())["维护知识库"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("标题", "分类", "标签")
    titles = {r[0] for r in rows[1:]}
    assert LAG["title"] in titles and EXPORT["title"] not in titles
