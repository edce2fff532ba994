"""Knowledge-base endpoints: search, export, write, read, versions, categories.

Enterprise users read the articles meant for everyone (`visibility=everyone`); everyone else
with an account reads all published ones; O&M staff and the city bureau write them."""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE, Column, Sheet, xlsx_response
from ecowatt_kernel.identity import Identity
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import Select, func, select

from ecowatt_ops.desk.access import Actor, Editors, People, publish_audit
from ecowatt_ops.desk.exports import EXPORT_LIMIT, local_time, safe_row
from ecowatt_ops.desk.runtime import Runtime
from ecowatt_ops.incidents.service import add_event, load_incident
from ecowatt_ops.kb.models import (
    CATEGORIES,
    ArticleIn,
    ArticleOut,
    ArticleSummary,
    ArticleUpdate,
    ArticleVersion,
    CategoryCount,
    kb_article,
)
from ecowatt_ops.kb.service import (
    article_query,
    create_article,
    get_article,
    summary_of,
    update_article,
    versions,
)
from ecowatt_ops.support.service import add_request_event, load_request

__all__ = ["router"]

router = APIRouter(tags=["knowledge base"])


def everyone_only(identity: Identity) -> bool:
    """Enterprise users (and anyone whose scope is only enterprises) see public articles."""
    scope = identity.scope
    return not scope.all and bool(scope.enterprises) and not scope.districts


def _search(
    identity: People,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Words or fragments (any part of a Chinese phrase)"),
    ] = None,
    category: Annotated[str | None, Query(max_length=30)] = None,
    tag: Annotated[str | None, Query(max_length=30)] = None,
    status: Annotated[Literal["published", "archived"] | None, Query()] = None,
) -> Select[tuple[object, ...]]:
    query, score = article_query(
        q=q, category=category, tag=tag, status=status, everyone_only=everyone_only(identity)
    )
    c = kb_article.c
    order = [score.desc()] if score is not None else []
    return query.order_by(*order, c.updated_at.desc(), c.id)


Search = Annotated[Select[tuple[object, ...]], Depends(_search)]


@router.get(
    "/kb/articles",
    summary="Search the knowledge base (every word must occur; best matches first)",
    response_model=Page[ArticleSummary],
)
async def search_articles(
    _: People, session: DbSession, page: PageParams, query: Search
) -> Page[ArticleSummary]:
    rows, total = await fetch_page(session, query, page)
    return Page.of([summary_of(r._mapping) for r in rows], total, page)


EXPORT_COLUMNS = (
    Column("title", "标题", width=36),
    Column("category", "分类", width=14),
    Column("tags", "标签", width=24),
    Column("summary", "摘要", width=50),
    Column("visibility", "可见范围", width=10),
    Column("status", "状态", width=8),
    Column("version", "版本", width=6),
    Column("author_name", "作者", width=12),
    Column("updated_by_name", "最后修改人", width=12),
    Column("updated_at", "最后修改时间", width=18),
    Column("body", "正文", width=80),
)
_VISIBILITY = {"internal": "内部", "everyone": "全部用户"}
_STATUS = {"published": "已发布", "archived": "已归档"}


@router.get(
    "/kb/articles.xlsx",
    summary="Export the searched articles as Excel (with their text)",
    responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}},
)
async def export_articles(
    _: People, session: DbSession, query: Search, runtime: Runtime
) -> Response:
    zone = ZoneInfo(runtime.settings.timezone)
    rows = []
    for row in (await session.execute(query.limit(EXPORT_LIMIT))).mappings():
        data = dict(row) | {
            "visibility": _VISIBILITY[row["visibility"]],
            "status": _STATUS[row["status"]],
            "author_name": row["author_name"] or row["author"],
            "updated_by_name": row["updated_by_name"] or row["updated_by"],
        }
        rows.append(local_time(safe_row(data), zone))
    return await xlsx_response([Sheet("维护知识库", EXPORT_COLUMNS, rows)], "knowledge-base.xlsx")


@router.post(
    "/kb/articles",
    summary="Write an article (version 1); from_incident / from_request link it at once",
    status_code=201,
    response_model=ArticleOut,
)
async def write_article(
    body: ArticleIn, request: Request, identity: Editors, session: DbSession, runtime: Runtime
) -> ArticleOut:
    now = runtime.now()
    actor = Actor.of(identity)
    if body.from_incident:
        await load_incident(session=session, incident_id=body.from_incident)
    if body.from_request:
        await load_request(session=session, request_id=body.from_request, scope=identity.scope)
    article_id = await create_article(session=session, data=body, actor=actor, now=now)
    details = {"article_id": article_id}
    if body.from_incident:
        await add_event(
            session=session,
            incident_id=body.from_incident,
            kind="article_linked",
            actor=actor,
            at=now,
            details=details,
        )
    if body.from_request:
        await add_request_event(
            session=session,
            request_id=body.from_request,
            kind="article_linked",
            actor=actor,
            at=now,
            details=details,
        )
    await session.commit()
    await publish_audit(
        request,
        identity=identity,
        action="kb.article.create",
        resource=f"kb-article:{article_id}",
        details={"title": body.title[:100]},
    )
    return await get_article(session=session, article_id=article_id, everyone_only=False)


@router.get("/kb/articles/{article_id}", summary="One article", response_model=ArticleOut)
async def read_article(article_id: str, identity: People, session: DbSession) -> ArticleOut:
    return await get_article(
        session=session, article_id=article_id, everyone_only=everyone_only(identity)
    )


@router.patch(
    "/kb/articles/{article_id}",
    summary="Save a new version of an article (send the version you edited)",
    response_model=ArticleOut,
)
async def edit_article(
    article_id: str,
    body: ArticleUpdate,
    request: Request,
    identity: Editors,
    session: DbSession,
    runtime: Runtime,
) -> ArticleOut:
    version = await update_article(
        session=session,
        article_id=article_id,
        data=body,
        actor=Actor.of(identity),
        now=runtime.now(),
    )
    await session.commit()
    await publish_audit(
        request,
        identity=identity,
        action="kb.article.update",
        resource=f"kb-article:{article_id}",
        details={"version": version},
    )
    return await get_article(session=session, article_id=article_id, everyone_only=False)


@router.get(
    "/kb/articles/{article_id}/versions",
    summary="Every version of an article with its author, newest first",
    response_model=list[ArticleVersion],
)
async def article_versions(
    article_id: str, identity: People, session: DbSession
) -> list[ArticleVersion]:
    await get_article(session=session, article_id=article_id, everyone_only=everyone_only(identity))
    return await versions(session=session, article_id=article_id)


@router.get(
    "/kb/categories",
    summary="Categories: the suggested ones and those in use, with article counts",
    response_model=list[CategoryCount],
)
async def categories(identity: People, session: DbSession) -> list[CategoryCount]:
    c = kb_article.c
    query = select(c.category, func.count()).where(c.status == "published").group_by(c.category)
    if everyone_only(identity):
        query = query.where(c.visibility == "everyone")
    used: dict[str, int] = {str(k): int(v) for k, v in (await session.execute(query)).all()}
    names = list(CATEGORIES) + sorted(set(used) - set(CATEGORIES))
    return [CategoryCount(category=name, articles=used.get(name, 0)) for name in names]
