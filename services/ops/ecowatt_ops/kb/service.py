"""Articles, their versions, search and "similar past cases".

Search is PostgreSQL trigram search (`pg_trgm`), not a Chinese segmenter: every term of the
query must occur in the article as a substring (`LIKE '%term%'`, served by a GIN trigram
index for terms of three characters or more), and results are ranked by `word_similarity`.
Why: people search the knowledge base with fragments of what they saw — 消费者组积压,
死信, a device MN, an error code — and a segmenter (jieba) only finds whole tokens of its
dictionary: "组积压" is not a token of "消费者组积压严重", and domain words (治污设施, 数采仪,
HJ 212 codes) are segmented unpredictably unless a custom dictionary is kept up to date.
Trigrams find any substring in any script, need no dictionary and no extra dependency, and
the same index ranks similar titles for "similar past cases". The price: one- and
two-character terms cannot use the index (a scan, cheap at a knowledge base's size), and the
database's LC_CTYPE must be a UTF-8 locale (C.UTF-8, zh_CN.UTF-8) for pg_trgm to count
Chinese characters as word characters — `make run` and `make infra-up` create it so; with
plain `C` the ILIKE match still works and only the ranking degrades.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ecowatt_kernel.ids import new_id
from ecowatt_kernel.problems import Conflict, NotFound
from sqlalchemy import ColumnElement, RowMapping, Select, any_, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_ops.desk import timeline
from ecowatt_ops.desk.access import Actor
from ecowatt_ops.incidents.models import incident, incident_event
from ecowatt_ops.kb.models import (
    ArticleIn,
    ArticleOut,
    ArticleSummary,
    ArticleUpdate,
    ArticleVersion,
    LinkOut,
    SimilarCase,
    SimilarCases,
    kb_article,
    kb_link,
    kb_version,
)
from ecowatt_ops.support.models import request_event, support_request

__all__ = [
    "article_query",
    "create_article",
    "get_article",
    "link_article",
    "link_case",
    "search_terms",
    "similar_cases",
    "unlink_article",
    "update_article",
    "versions",
]

SIMILARITY_FLOOR = 0.2
"""Below this trigram similarity a case is not shown as similar."""
SIMILAR_LIMIT = 5


def _search_text(values: dict[str, Any]) -> str:
    parts = [values["title"], values["category"], " ".join(values["tags"])]
    parts += [values["summary"], values["body"]]
    return "\n".join(parts).lower()


def search_terms(q: str | None) -> list[str]:
    """The terms of a query (whitespace-separated, lower-case, at most 10)."""
    return [t.lower() for t in (q or "").split()][:10]


async def create_article(
    *, session: AsyncSession, data: ArticleIn, actor: Actor, now: datetime
) -> str:
    """Publish a new article as version 1 (and link it to its incident or request)."""
    article_id = new_id()
    values = {
        "title": data.title,
        "category": data.category,
        "tags": data.tags,
        "summary": data.summary,
        "body": data.body,
        "visibility": data.visibility,
        "status": "published",
    }
    await session.execute(
        kb_article.insert().values(
            id=article_id,
            version=1,
            author=actor.subject,
            author_name=actor.name,
            created_at=now,
            updated_by=actor.subject,
            updated_by_name=actor.name,
            updated_at=now,
            search_text=_search_text(values),
            **values,
        )
    )
    await _version(session, article_id, 1, values, actor, now, data.change_note or "新建")
    for kind, subject in (("incident", data.from_incident), ("request", data.from_request)):
        if subject:
            await link_article(
                session=session,
                article_id=article_id,
                subject_kind=kind,
                subject_id=subject,
                actor=actor,
                now=now,
            )
    return article_id


async def _version(
    session: AsyncSession,
    article_id: str,
    version: int,
    values: dict[str, Any],
    actor: Actor,
    now: datetime,
    note: str,
) -> None:
    await session.execute(
        kb_version.insert().values(
            article_id=article_id,
            version=version,
            author=actor.subject,
            author_name=actor.name,
            at=now,
            change_note=note,
            **values,
        )
    )


async def _row(session: AsyncSession, article_id: str, *, lock: bool = False) -> RowMapping:
    query = select(kb_article).where(kb_article.c.id == article_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"article {article_id} not found")
    return row


async def update_article(
    *, session: AsyncSession, article_id: str, data: ArticleUpdate, actor: Actor, now: datetime
) -> int:
    """Save a new version of an article; returns its number (409 on a stale `version`)."""
    row = await _row(session, article_id, lock=True)
    if row["version"] != data.version:
        raise Conflict(
            f"article {article_id} is at version {row['version']}, not {data.version}: "
            "someone saved it meanwhile; reload it and apply your change again"
        )
    changes = data.model_dump(exclude_unset=True, exclude={"version", "change_note"})
    values = {
        k: row[k] for k in ("title", "category", "tags", "summary", "body", "visibility", "status")
    }
    values |= {k: v for k, v in changes.items() if v is not None}
    if values == {k: row[k] for k in values}:
        return int(row["version"])
    version = int(row["version"]) + 1
    await session.execute(
        update(kb_article)
        .where(kb_article.c.id == article_id)
        .values(
            version=version,
            updated_by=actor.subject,
            updated_by_name=actor.name,
            updated_at=now,
            search_text=_search_text(values),
            **values,
        )
    )
    await _version(session, article_id, version, values, actor, now, data.change_note)
    return version


async def get_article(*, session: AsyncSession, article_id: str, everyone_only: bool) -> ArticleOut:
    """One article with its links (404 for an internal article and an enterprise user)."""
    row = await _row(session, article_id)
    if everyone_only and (row["visibility"] != "everyone" or row["status"] != "published"):
        raise NotFound(f"article {article_id} not found")
    links = (
        await session.execute(
            select(kb_link).where(kb_link.c.article_id == article_id).order_by(kb_link.c.linked_at)
        )
    ).mappings()
    return ArticleOut(
        **{k: row[k] for k in ArticleOut.model_fields if k in row},
        links=[] if everyone_only else [LinkOut.model_validate(dict(link)) for link in links],
    )


async def versions(*, session: AsyncSession, article_id: str) -> list[ArticleVersion]:
    """Every version of an article, newest first."""
    await _row(session, article_id)
    rows = (
        await session.execute(
            select(kb_version)
            .where(kb_version.c.article_id == article_id)
            .order_by(kb_version.c.version.desc())
        )
    ).mappings()
    return [ArticleVersion.model_validate(dict(r)) for r in rows]


def article_query(
    *,
    q: str | None,
    category: str | None,
    tag: str | None,
    status: str | None,
    everyone_only: bool,
) -> tuple[Select[Any], ColumnElement[Any] | None]:
    """The articles a search selects (every term a substring) and its relevance column."""
    c = kb_article.c
    terms = search_terms(q)
    score: ColumnElement[Any] | None = None
    columns: list[Any] = [kb_article]
    if terms:
        phrase = " ".join(terms)
        # relevance: the phrase against the whole text, plus its likeness to the title
        score = func.word_similarity(phrase, c.search_text) + func.similarity(
            phrase, func.lower(c.title)
        )
        columns.append(score.label("score"))
    query = select(*columns)
    for term in terms:
        query = query.where(c.search_text.contains(term, autoescape=True))
    if category:
        query = query.where(c.category == category)
    if tag:
        query = query.where(literal(tag) == any_(c.tags))
    if everyone_only:
        query = query.where(c.visibility == "everyone", c.status == "published")
    elif status:
        query = query.where(c.status == status)
    else:
        query = query.where(c.status == "published")
    return query, score


def summary_of(row: RowMapping) -> ArticleSummary:
    score = row.get("score")
    return ArticleSummary(
        **{k: row[k] for k in ArticleSummary.model_fields if k in row and k != "score"},
        score=round(float(score), 3) if score is not None else None,
    )


async def link_article(
    *,
    session: AsyncSession,
    article_id: str,
    subject_kind: str,
    subject_id: str,
    actor: Actor,
    now: datetime,
) -> bool:
    """Link an article to an incident or request; False when it already was."""
    await _row(session, article_id)
    result = await session.execute(
        insert(kb_link)
        .values(
            article_id=article_id,
            subject_kind=subject_kind,
            subject_id=subject_id,
            linked_by=actor.subject,
            linked_at=now,
        )
        .on_conflict_do_nothing()
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def unlink_article(
    *, session: AsyncSession, article_id: str, subject_kind: str, subject_id: str
) -> bool:
    """Remove a link; False when there was none."""
    result = await session.execute(
        kb_link.delete().where(
            kb_link.c.article_id == article_id,
            kb_link.c.subject_kind == subject_kind,
            kb_link.c.subject_id == subject_id,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def link_case(
    *,
    session: AsyncSession,
    subject_kind: str,
    subject_id: str,
    article_id: str,
    actor: Actor,
    now: datetime,
    linked: bool,
) -> None:
    """Link (or unlink) an article and a case, with a timeline entry on the case (404 when
    unlinking what is not linked)."""
    if linked:
        changed = await link_article(
            session=session,
            article_id=article_id,
            subject_kind=subject_kind,
            subject_id=subject_id,
            actor=actor,
            now=now,
        )
    else:
        changed = await unlink_article(
            session=session, article_id=article_id, subject_kind=subject_kind, subject_id=subject_id
        )
        if not changed:
            raise NotFound(f"article {article_id} is not linked to {subject_kind} {subject_id}")
    if changed:
        await timeline.append(
            session,
            incident_event if subject_kind == "incident" else request_event,
            subject_id,
            kind="article_linked" if linked else "article_unlinked",
            actor=actor,
            at=now,
            details={"article_id": article_id},
        )


async def similar_cases(
    *,
    session: AsyncSession,
    text: str,
    subject_kind: str,
    subject_id: str,
    everyone_only: bool = False,
    request_scope: ColumnElement[bool] | None = None,
) -> SimilarCases:
    """Articles (linked first), closed incidents and resolved requests that resemble `text`."""
    probe = text.lower()[:500]
    a = kb_article.c
    linked = (
        await session.execute(
            select(kb_link.c.article_id).where(
                kb_link.c.subject_kind == subject_kind, kb_link.c.subject_id == subject_id
            )
        )
    ).scalars()
    linked_ids = set(linked)
    score = func.word_similarity(probe, a.search_text)
    visible = a.status == "published"
    if everyone_only:
        visible = visible & (a.visibility == "everyone")
    rows = (
        await session.execute(
            select(a.id, a.title, a.status, a.updated_at, score.label("score"))
            .where(visible, (score >= SIMILARITY_FLOOR) | a.id.in_(linked_ids or {""}))
            .order_by(a.id.in_(linked_ids or {""}).desc(), score.desc())
            .limit(SIMILAR_LIMIT + len(linked_ids))
        )
    ).all()
    articles = [
        SimilarCase(
            kind="article",
            id=r.id,
            title=r.title,
            status=r.status,
            score=round(float(r.score), 3),
            at=r.updated_at,
            linked=r.id in linked_ids,
        )
        for r in rows
    ]
    incidents: list[SimilarCase] = []
    if not everyone_only:
        i = incident.c
        iscore = func.similarity(probe, func.lower(i.title + " " + i.affected_function))
        incidents = [
            SimilarCase(
                kind="incident",
                id=r.id,
                title=f"{r.number} {r.title}",
                status=r.status,
                score=round(float(r.score), 3),
                at=r.opened_at,
            )
            for r in (
                await session.execute(
                    select(i.id, i.number, i.title, i.status, i.opened_at, iscore.label("score"))
                    .where(
                        i.status.in_(("resolved", "verified")),
                        i.id != (subject_id if subject_kind == "incident" else ""),
                        iscore >= SIMILARITY_FLOOR,
                    )
                    .order_by(iscore.desc(), i.opened_at.desc())
                    .limit(SIMILAR_LIMIT)
                )
            ).all()
        ]
    r_ = support_request.c
    rscore = func.similarity(probe, func.lower(r_.title))
    condition = [
        r_.status.in_(("resolved", "closed")),
        r_.id != (subject_id if subject_kind == "request" else ""),
        rscore >= SIMILARITY_FLOOR,
    ]
    if request_scope is not None:
        condition.append(request_scope)
    requests = [
        SimilarCase(
            kind="request",
            id=r.id,
            title=f"{r.number} {r.title}",
            status=r.status,
            score=round(float(r.score), 3),
            at=r.received_at,
        )
        for r in (
            await session.execute(
                select(r_.id, r_.number, r_.title, r_.status, r_.received_at, rscore.label("score"))
                .where(*condition)
                .order_by(rscore.desc(), r_.received_at.desc())
                .limit(SIMILAR_LIMIT)
            )
        ).all()
    ]
    return SimilarCases(articles=articles, incidents=incidents, requests=requests)
