"""Knowledge-base tables and API models.

An article has a category (one of `CATEGORIES` or any other), tags, a summary and a body
(Markdown), a visibility (`internal`: bureau and O&M staff; `everyone`: enterprise users too,
for answers to their common questions) and a status (`published`, `archived`). Every save is a
new version: `ops.kb_version` keeps each one in full with its author and change note.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from ecowatt_ops.desk.database import metadata

__all__ = [
    "CATEGORIES",
    "ArticleIn",
    "ArticleOut",
    "ArticleSummary",
    "ArticleUpdate",
    "ArticleVersion",
    "CategoryCount",
    "LinkIn",
    "SimilarCase",
    "SimilarCases",
    "kb_article",
    "kb_link",
    "kb_version",
]

CATEGORIES = (
    "数据接入",
    "设备与采集",
    "报警研判",
    "数据质量",
    "重污染天气管控",
    "报表统计",
    "账号与权限",
    "平台运行",
    "操作指南",
    "其他",
)
Visibility = Literal["internal", "everyone"]
ArticleStatus = Literal["published", "archived"]

kb_article = Table(
    "kb_article",
    metadata,
    Column("id", Text, primary_key=True),
    Column("title", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("tags", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("summary", Text, nullable=False, server_default=""),
    Column("body", Text, nullable=False),
    Column("visibility", Text, nullable=False, server_default="internal"),
    Column("status", Text, nullable=False, server_default="published"),
    Column("version", Integer, nullable=False),
    Column("author", Text, nullable=False),
    Column("author_name", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", Text, nullable=False),
    Column("updated_by_name", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("search_text", Text, nullable=False),
    CheckConstraint("visibility IN ('internal','everyone')", name="visibility"),
    CheckConstraint("status IN ('published','archived')", name="status"),
    # Trigram index: substring (ILIKE) search and similarity ranking in any language,
    # Chinese included (needs a UTF-8 LC_CTYPE, see kb/service.py).
    Index(
        "ix_kb_article_search_trgm",
        "search_text",
        postgresql_using="gin",
        postgresql_ops={"search_text": "public.gin_trgm_ops"},
    ),
    Index("ix_kb_article_category", "category"),
)

kb_version = Table(
    "kb_version",
    metadata,
    Column("article_id", Text, ForeignKey("kb_article.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("title", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("tags", ARRAY(Text), nullable=False),
    Column("summary", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("visibility", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("author", Text, nullable=False),
    Column("author_name", Text),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("change_note", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("article_id", "version"),
)

kb_link = Table(
    "kb_link",
    metadata,
    Column("article_id", Text, ForeignKey("kb_article.id"), nullable=False),
    Column("subject_kind", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("linked_by", Text, nullable=False),
    Column("linked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("article_id", "subject_kind", "subject_id"),
    CheckConstraint("subject_kind IN ('incident','request')", name="subject_kind"),
    Index("ix_kb_link_subject", "subject_kind", "subject_id"),
)

Tag = Annotated[str, Field(min_length=1, max_length=30)]


class ArticleIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    category: str = Field(min_length=1, max_length=30, description=f"e.g. {'、'.join(CATEGORIES)}")
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    summary: str = Field("", max_length=1000, description="现象与结论, one paragraph.")
    body: str = Field(min_length=1, max_length=100_000, description="Markdown.")
    visibility: Visibility = "internal"
    change_note: str = Field("", max_length=500)
    from_incident: str | None = Field(None, max_length=64, description="Link it to this incident.")
    from_request: str | None = Field(None, max_length=64, description="Link it to this request.")

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, tags: list[str]) -> list[str]:
        return list(dict.fromkeys(t.strip() for t in tags if t.strip()))


class ArticleUpdate(BaseModel):
    """Fields to change; each save makes a new version. `version` must be the current one
    (someone else's save in between is refused with 409, not overwritten)."""

    version: int = Field(ge=1)
    title: str | None = Field(None, min_length=1, max_length=200)
    category: str | None = Field(None, min_length=1, max_length=30)
    tags: list[Tag] | None = Field(None, max_length=20)
    summary: str | None = Field(None, max_length=1000)
    body: str | None = Field(None, min_length=1, max_length=100_000)
    visibility: Visibility | None = None
    status: ArticleStatus | None = None
    change_note: str = Field("", max_length=500)


class ArticleSummary(BaseModel):
    id: str
    title: str
    category: str
    tags: list[str]
    summary: str
    visibility: Visibility
    status: ArticleStatus
    version: int
    author: str
    author_name: str | None
    updated_by: str
    updated_by_name: str | None
    updated_at: datetime
    score: float | None = Field(None, description="Search relevance (0–1) when searching.")


class ArticleOut(ArticleSummary):
    body: str
    created_at: datetime
    links: list[LinkOut] = Field(default_factory=list)


class LinkOut(BaseModel):
    subject_kind: Literal["incident", "request"]
    subject_id: str
    linked_by: str
    linked_at: datetime


class ArticleVersion(BaseModel):
    version: int
    title: str
    category: str
    tags: list[str]
    summary: str
    body: str
    visibility: Visibility
    status: ArticleStatus
    author: str
    author_name: str | None
    at: datetime
    change_note: str


class CategoryCount(BaseModel):
    category: str
    articles: int


class LinkIn(BaseModel):
    article_id: str = Field(min_length=1, max_length=64)


class SimilarCase(BaseModel):
    kind: Literal["article", "incident", "request"]
    id: str
    title: str
    status: str
    score: float
    at: datetime
    linked: bool = Field(False, description="Linked by hand (shown first).")


class SimilarCases(BaseModel):
    """ "Similar past cases": articles (linked ones first) and closed incidents and requests
    whose text resembles this one's."""

    articles: list[SimilarCase]
    incidents: list[SimilarCase]
    requests: list[SimilarCase]


ArticleOut.model_rebuild()
