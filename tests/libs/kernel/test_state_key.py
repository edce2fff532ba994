"""`StateKey`: a typed entry of the service context, and the dependency that reads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import pytest
from ecowatt_kernel.app import ServiceContext, StateKey
from ecowatt_kernel.settings import KernelSettings
from fastapi import Depends, FastAPI


@dataclass
class _Runtime:
    greeting: str


@dataclass
class _Other:
    pass


KEY = StateKey("probe", _Runtime)
CurrentRuntime = Annotated[_Runtime, Depends(KEY.from_request)]


def _context() -> ServiceContext:
    # No connection is used: the key only reads and writes `state`.
    infrastructure: Any = None
    return ServiceContext(
        name="probe",
        settings=KernelSettings(environment="test"),
        infrastructure=infrastructure,
        db=None,
    )


def test_a_stored_value_is_read_back_with_its_type() -> None:
    ctx = _context()
    assert KEY.find(ctx) is None
    runtime = _Runtime("你好")
    KEY.set(ctx, runtime)
    assert KEY.get(ctx) is runtime
    assert ctx.state["probe"] is runtime, "the entry lives in the context's state"
    assert KEY.pop(ctx) is runtime
    assert KEY.find(ctx) is None and "probe" not in ctx.state


def test_reading_before_start_up_says_so() -> None:
    with pytest.raises(RuntimeError, match=r"probe.*not started"):
        KEY.get(_context())


def test_a_value_of_another_type_is_refused_at_the_look_up() -> None:
    ctx = _context()
    ctx.state["probe"] = _Other()
    with pytest.raises(TypeError, match="_Other, not a _Runtime"):
        KEY.get(ctx)


async def test_request_handlers_get_it_through_an_annotated_dependency() -> None:
    app = FastAPI()
    ctx = _context()
    app.state.context = ctx

    @app.get("/greeting")
    async def greeting(runtime: CurrentRuntime) -> dict[str, str]:
        return {"greeting": runtime.greeting}

    KEY.set(ctx, _Runtime("hello"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        response = await client.get("/greeting")
    assert response.status_code == 200
    assert response.json() == {"greeting": "hello"}
