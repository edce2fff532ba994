"""The CRUD endpoints every archive entity shares, built from a `Resource` description.

Each feature folder (`enterprises/`, `facilities/`, …) describes its entity — its kind,
models, sortable fields, filters and extra read fields — and gets list, export, read,
create, update and delete endpoints that enforce scope and roles the same way.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE
from ecowatt_kernel.identity import CurrentIdentity, DataScope, Identity, district_condition
from ecowatt_kernel.pagination import (
    Page,
    PageParams,
    SearchParam,
    SortParam,
    fetch_sorted_page,
    order_by,
)
from ecowatt_kernel.passwords import hash_password
from ecowatt_kernel.problems import Conflict, NotFound
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, SQLColumnExpression, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_registry import access, validation
from ecowatt_registry.archive import ArchiveWriter, Kind
from ecowatt_registry.checks import ReferenceChecker
from ecowatt_registry.enterprises.models import Enterprise
from ecowatt_registry.events.relay import commit
from ecowatt_registry.reference import tables
from ecowatt_registry.schemas import field_error, field_problem

Conditions = list[ColumnElement[bool]]
Extras = Callable[[AsyncSession, list[str]], Awaitable[dict[str, dict[str, Any]]]]
Dependents = Callable[[AsyncSession, str], Awaitable[list[str]]]
CrossCheck = Callable[[dict[str, Any]], list[tuple[str, str]]]


def enterprise_filters(
    district: Annotated[
        list[str] | None,
        Query(description="GB/T 2260 codes; a city code (…00) covers its districts"),
    ] = None,
    zone: Annotated[list[str] | None, Query(description="Management zone codes")] = None,
    industry: Annotated[
        list[str] | None,
        Query(description="GB/T 4754 code or prefix: C (section), 33, 336 or 3360"),
    ] = None,
    grade: Annotated[
        list[str] | None, Query(description="Performance grades: A B C D leading none")
    ] = None,
    production_status: Annotated[
        list[str] | None, Query(description="normal, suspended, closed")
    ] = None,
    enterprise_id: Annotated[list[str] | None, Query(description="Only these enterprises")] = None,
) -> Conditions:
    """Filters on the enterprise an entity belongs to."""
    conditions: Conditions = []
    if district:
        conditions.append(district_condition(district, Enterprise.district_code))
    if zone:
        conditions.append(Enterprise.zone.in_(zone))
    if industry:
        conditions.append(industry_condition(industry))
    if grade:
        conditions.append(Enterprise.performance_grade.in_(grade))
    if production_status:
        conditions.append(Enterprise.production_status.in_(production_status))
    if enterprise_id:
        conditions.append(Enterprise.id.in_(enterprise_id))
    return conditions


def industry_condition(prefixes: Sequence[str]) -> ColumnElement[bool]:
    """Enterprises whose industry code is, or lies under, one of `prefixes`."""
    codes: set[str] = set()
    for prefix in prefixes:
        for code in tables.industries():
            if prefix.isalpha():
                section = tables.industry_path(code).get("section")
                if section is not None and section.code == prefix:
                    codes.add(code)
            elif code.startswith(prefix):
                codes.add(code)
    return Enterprise.industry_code.in_(sorted(codes))


EnterpriseFilters = Annotated[Conditions, Depends(enterprise_filters)]


@dataclass
class Resource:
    """One archive entity exposed over REST."""

    kind: Kind
    path: str
    tag: str
    label: str
    create_model: type[BaseModel]
    update_model: type[BaseModel]
    read_model: type[BaseModel]
    sortable: dict[str, SQLColumnExpression[Any]]
    default_sort: str
    search: Sequence[SQLColumnExpression[Any]]
    filters: Callable[..., Conditions]
    required: tuple[str, ...] = ()
    extras: Extras | None = None
    dependents: Dependents | None = None
    cross_check: CrossCheck | None = None
    to_read: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    export: Callable[[AsyncSession, Select[Any]], Awaitable[bytes]] | None = None
    immutable: tuple[str, ...] = field(default=())

    @property
    def table(self) -> Any:
        return self.kind.table

    @property
    def pk_column(self) -> Any:
        return self.table.c[self.kind.pk]

    def default_order(self) -> list[ColumnElement[Any]]:
        """The ORDER BY of the default sort."""
        return order_by(None, self.sortable, self.default_sort)

    def base_query(self, scope: DataScope, conditions: Conditions, q: str | None) -> Select[Any]:
        """Ids of the entities the scope may see that match the filters."""
        if self.kind.name == "enterprise":
            query = select(self.pk_column)
        elif self.kind.name == "device":
            query = select(self.pk_column).outerjoin(
                Enterprise, self.table.c.enterprise_id == Enterprise.id
            )
        else:
            query = select(self.pk_column).join(
                Enterprise, self.table.c.enterprise_id == Enterprise.id
            )
        query = query.where(access.visible(scope), *conditions)
        if q:
            query = query.where(or_(*(c.icontains(q, autoescape=True) for c in self.search)))
        return query

    async def read_many(self, session: AsyncSession, ids: list[str]) -> list[BaseModel]:
        rows = await ArchiveWriter(session, actor=None).load(self.kind, ids)
        extras = await self.extras(session, list(rows)) if self.extras else {}
        result = []
        for key in ids:
            row = rows.get(key)
            if row is None:
                continue
            data = self.kind.snapshot(row).model_dump()
            data |= {
                "revision": row["revision"],
                "created_at": row["created_at"],
                "created_by": row["created_by"],
                "updated_by": row["updated_by"],
            }
            if self.to_read is not None:
                data |= self.to_read(row)
            data |= extras.get(key, {})
            result.append(self.read_model.model_validate(data))
        return result

    async def read_one(self, session: AsyncSession, scope: DataScope, key: str) -> BaseModel:
        query = self.base_query(scope, [self.pk_column == key], None)
        if await session.scalar(query) is None:
            raise NotFound(f"{self.label} {key} not found")
        return (await self.read_many(session, [key]))[0]

    async def stored(self, session: AsyncSession, key: str) -> dict[str, Any]:
        """The stored row of `key` (control-group members included)."""
        return (await ArchiveWriter(session, actor=None).load(self.kind, [key]))[key]

    async def write(
        self,
        session: AsyncSession,
        identity: Identity,
        key: str,
        state: dict[str, Any],
        *,
        reason: str | None,
        merged: dict[str, Any] | None = None,
    ) -> None:
        """Check and write one entity's state (complete for a new entity).

        `merged` is the whole entity after a partial change: the rules are checked on it,
        while only `state` is written.
        """
        whole = {self.kind.pk: key, **(merged if merged is not None else state)}
        issues = await ReferenceChecker(
            session, {self.kind.name: {key: whole}}, scope=identity.scope
        ).check()
        if issues:
            if any(i.field == "credit_code" for i in issues):
                raise Conflict(issues[0].en, errors=[field_error(i.field, i.en) for i in issues])
            raise field_problem([field_error(i.field, i.en) for i in issues])
        writer = ArchiveWriter(session, actor=access.actor_of(identity), reason=reason)
        with access.conflicts_as_409():
            await writer.upsert(self.kind, [{self.kind.pk: key, **state}])


def build_router(resource: Resource) -> APIRouter:
    """The REST endpoints of `resource`."""
    router = APIRouter(prefix=resource.path, tags=[resource.tag])
    Filters = Annotated[Conditions, Depends(resource.filters)]
    label = resource.label
    create_model = resource.create_model
    update_model = resource.update_model
    read_model = resource.read_model

    @router.get("", summary=f"List {label}s", response_model=Page[read_model])  # type: ignore[valid-type]
    async def list_items(
        db_session: DbSession,
        identity: CurrentIdentity,
        filters: Filters,
        page: PageParams,
        sort: SortParam = None,
        q: SearchParam = None,
    ) -> Page[Any]:
        rows, total = await fetch_sorted_page(
            db_session,
            resource.base_query(identity.scope, filters, q),
            page,
            sort=sort,
            allowed=resource.sortable,
            default=resource.default_sort,
            tiebreak=resource.pk_column,
        )
        items = await resource.read_many(db_session, [row[0] for row in rows])
        return Page[Any].of(items, total, page)

    if resource.export is not None:
        export = resource.export

        @router.get(
            ".xlsx",
            summary=f"Export {label}s as Excel (same filters as the list)",
            response_class=Response,
            responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}},
        )
        async def export_items(
            db_session: DbSession,
            identity: CurrentIdentity,
            filters: Filters,
            sort: SortParam = None,
            q: SearchParam = None,
        ) -> Response:
            query = resource.base_query(identity.scope, filters, q).order_by(
                *order_by(sort, resource.sortable, resource.default_sort), resource.pk_column
            )
            data = await export(db_session, query)
            return Response(
                data,
                media_type=XLSX_MEDIA_TYPE,
                headers={
                    "Content-Disposition": f'attachment; filename="{resource.kind.name}s.xlsx"'
                },
            )

    @router.get("/{key}", summary=f"Read one {label}", response_model=read_model)
    async def read_item(key: str, db_session: DbSession, identity: CurrentIdentity) -> Any:
        return await resource.read_one(db_session, identity.scope, key)

    @router.post(
        "",
        summary=f"Create a {label}",
        status_code=201,
        response_model=read_model,
        dependencies=[access.CanEdit],
    )
    async def create_item(
        body: create_model,  # type: ignore[valid-type]
        request: Request,
        db_session: DbSession,
        identity: CurrentIdentity,
    ) -> Any:
        data = body.model_dump(exclude={"reason", "password"})  # type: ignore[attr-defined]
        key = data.pop(resource.kind.pk, None) or access.new_id()
        if problem := (
            validation.mn_problem(key) if resource.kind.pk == "mn" else validation.id_problem(key)
        ):
            raise field_problem([field_error(resource.kind.pk, problem)])
        if resource.kind.name == "enterprise":
            access.check_district_allowed(identity, data["district_code"])
        elif data.get("enterprise_id") is not None:
            await access.visible_enterprise(db_session, identity.scope, data["enterprise_id"])
        elif resource.kind.name == "device" and not identity.scope.all:
            raise field_problem([field_error("enterprise_id", "give the device's enterprise")])
        if await db_session.scalar(select(resource.pk_column).where(resource.pk_column == key)):
            raise Conflict(f"{label} {key} already exists")
        if resource.cross_check and (problems := resource.cross_check(data)):
            raise field_problem([field_error(f, m) for f, m in problems])
        if resource.kind.name == "device":
            password = body.password  # type: ignore[attr-defined]
            if password is not None:
                secret = password.get_secret_value()
                data["password_hash"] = await asyncio.to_thread(hash_password, secret)
        await resource.write(db_session, identity, key, data, reason=body.reason)  # type: ignore[attr-defined]
        await commit(request, db_session)
        return await resource.read_one(db_session, identity.scope, key)

    @router.patch(
        "/{key}",
        summary=f"Change a {label}",
        response_model=read_model,
        dependencies=[access.CanEdit],
    )
    async def update_item(
        key: str,
        body: update_model,  # type: ignore[valid-type]
        request: Request,
        db_session: DbSession,
        identity: CurrentIdentity,
    ) -> Any:
        await resource.read_one(db_session, identity.scope, key)  # 404 outside the scope
        patch = body.model_dump(exclude_unset=True, exclude={"reason"})  # type: ignore[attr-defined]
        nulls = [f for f in resource.required if f in patch and patch[f] is None]
        if nulls:
            raise field_problem([field_error(f, "may not be null") for f in nulls])
        if "district_code" in patch:
            access.check_district_allowed(identity, patch["district_code"])
        stored = await resource.stored(db_session, key)
        changed = [n for n in resource.immutable if n in patch and patch[n] != stored.get(n)]
        if changed:
            raise field_problem([field_error(n, f"{n} cannot be changed") for n in changed])
        merged = {f: stored.get(f) for f in resource.kind.fields} | patch
        if resource.cross_check and (problems := resource.cross_check(merged)):
            raise field_problem([field_error(f, m) for f, m in problems])
        await resource.write(
            db_session,
            identity,
            key,
            patch,
            reason=body.reason,  # type: ignore[attr-defined]
            merged=merged,
        )
        await commit(request, db_session)
        return await resource.read_one(db_session, identity.scope, key)

    @router.delete(
        "/{key}", summary=f"Delete a {label}", status_code=204, dependencies=[access.CanEdit]
    )
    async def delete_item(
        key: str,
        request: Request,
        db_session: DbSession,
        identity: CurrentIdentity,
        reason: str | None = Query(None, max_length=500, description="Why (kept in the history)"),
    ) -> Response:
        await resource.read_one(db_session, identity.scope, key)
        if resource.dependents is not None and (
            found := await resource.dependents(db_session, key)
        ):
            raise Conflict(
                f"{label} {key} is still referred to: {'; '.join(found)}", referred_by=found
            )
        writer = ArchiveWriter(db_session, actor=access.actor_of(identity), reason=reason)
        with access.conflicts_as_409():
            await writer.delete(resource.kind, [key])
        await commit(request, db_session)
        return Response(status_code=204)

    return router
