"""Data scopes: only known GB/T 2260 codes, and `allows()` agrees with `where()` for every
scope and every record — checked by Hypothesis against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import string
from collections.abc import Iterator

import pytest
from ecowatt_kernel.db import scratch_database
from ecowatt_kernel.identity import (
    DataScope,
    Identity,
    InvalidTokenError,
    TokenSigner,
    TokenVerifier,
    dev_key_pair,
    known_district_codes,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import Column, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

pytestmark = pytest.mark.integration

CODES = sorted(known_district_codes())
METADATA = MetaData()
RECORDS = Table(
    "scope_records",
    METADATA,
    Column("id", String, primary_key=True),
    Column("district", String, nullable=True),
    Column("enterprise_id", String, nullable=True),
)

enterprise_ids = st.text(
    alphabet=string.ascii_letters + string.digits + "-_%.", min_size=1, max_size=8
)
# Districts of records: known codes (every level), near misses (7 digits, 5 digits, other
# provinces), LIKE wildcards, and nothing at all.
record_districts = st.one_of(
    st.sampled_from(CODES),
    st.sampled_from(CODES).map(lambda c: c + "0"),
    st.sampled_from(CODES).map(lambda c: c[:5]),
    st.from_regex(r"\A[0-9]{6}\Z"),
    st.sampled_from(["61%", "6101_2", "", "61"]),
    st.none(),
)
scopes = st.builds(
    DataScope,
    all=st.just(False),  # `all` is drawn below on its own: it makes every row visible
    districts=st.frozensets(st.sampled_from(CODES), max_size=4),
    enterprises=st.frozensets(enterprise_ids, max_size=3),
)
records = st.lists(
    st.tuples(record_districts, st.one_of(enterprise_ids, st.none())), min_size=1, max_size=12
)


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[tuple[asyncio.AbstractEventLoop, AsyncEngine]]:
    """One engine on a scratch database, driven from this module's own event loop (the
    Hypothesis test is synchronous)."""
    loop = asyncio.new_event_loop()
    scratch = scratch_database(database_url)
    url = loop.run_until_complete(scratch.__aenter__())
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))

    async def create() -> None:
        async with engine.begin() as connection:
            await connection.run_sync(METADATA.create_all)

    loop.run_until_complete(create())
    try:
        yield loop, engine
    finally:
        loop.run_until_complete(engine.dispose())
        loop.run_until_complete(scratch.__aexit__(None, None, None))
        loop.close()


async def _visible_in_sql(
    engine: AsyncEngine, scope: DataScope, rows: list[tuple[str | None, str | None]]
) -> set[str]:
    async with engine.begin() as connection:
        await connection.execute(RECORDS.delete())
        await connection.execute(
            insert(RECORDS),
            [{"id": str(i), "district": d, "enterprise_id": e} for i, (d, e) in enumerate(rows)],
        )
        condition = scope.where(
            district_column=RECORDS.c.district, enterprise_column=RECORDS.c.enterprise_id
        )
        found = await connection.scalars(select(RECORDS.c.id).where(condition))
        return set(found)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scope=st.one_of(scopes, st.just(DataScope(all=True)), st.just(DataScope())), rows=records)
def test_allows_and_where_agree_for_every_scope_and_record(
    engine: tuple[asyncio.AbstractEventLoop, AsyncEngine],
    scope: DataScope,
    rows: list[tuple[str | None, str | None]],
) -> None:
    loop, database = engine
    in_sql = loop.run_until_complete(_visible_in_sql(database, scope, rows))
    in_python = {
        str(i) for i, (d, e) in enumerate(rows) if scope.allows(district=d, enterprise_id=e)
    }
    assert in_sql == in_python, (scope, rows)


def test_coverage_follows_the_gbt2260_levels() -> None:
    city = DataScope(districts=frozenset({"610100"}))
    assert city.allows(district="610112") and not city.allows(district="610202")
    county = DataScope(districts=frozenset({"610112"}))
    assert county.allows(district="610112")
    assert not county.allows(district="6101120"), "a county covers itself only"
    province = DataScope(districts=frozenset({"610000"}))
    assert province.allows(district="610928") and not province.allows(district="620100")


@pytest.mark.parametrize("code", ["999999", "110000", "6101", "61011 ", "610112\n", "%"])
def test_unknown_district_codes_are_refused_in_a_scope(code: str) -> None:
    with pytest.raises(ValidationError, match="unknown GB/T 2260"):
        DataScope(districts=frozenset({code}))


@pytest.mark.parametrize("key", ["", "x" * 129, "e1\x00", "e1\r\n"])
def test_malformed_enterprise_ids_are_refused_in_a_scope(key: str) -> None:
    with pytest.raises(ValidationError, match="invalid enterprise id"):
        DataScope(enterprises=frozenset({key}))


def test_a_token_naming_an_unknown_district_is_refused() -> None:
    private, public = dev_key_pair()
    signer = TokenSigner(private, issuer="ecowatt-auth", audience="ecowatt")
    verifier = TokenVerifier(public, issuer="ecowatt-auth", audience="ecowatt")
    good = signer.sign(Identity(subject="u", scope=DataScope(districts=frozenset({"610112"}))))
    assert verifier.verify(good).scope.districts == {"610112"}
    # A scope the kernel would refuse, signed anyway (as a misconfigured issuer could).
    forged_scope = DataScope.model_construct(
        all=False, districts=frozenset({"999999"}), enterprises=frozenset()
    )
    forged = signer.sign(
        Identity.model_construct(
            subject="u",
            kind="user",
            name=None,
            roles=frozenset(),
            scope=forged_scope,
            token_id=None,
            expires_at=None,
        )
    )
    with pytest.raises(InvalidTokenError, match="unknown GB/T 2260"):
        verifier.verify(forged)
