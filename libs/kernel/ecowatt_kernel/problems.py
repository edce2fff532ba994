"""RFC 9457 problem details for every HTTP error.

Raise `Problem` (or a subclass) anywhere in a request; the handlers installed by the app
factory render it as `application/problem+json` (a `retry_after=<seconds>` extension also
becomes the `Retry-After` header). Request validation errors become a 422
problem whose `errors` list names each field (`loc`, `msg`, `type`).

Bad input that slipped past validation is still the caller's: a value PostgreSQL refuses as
data (SQLSTATE class 22 — out of range, untranslatable, NUL; class 54 — too long for an
index) or that overflows while being converted is answered with a 422
`value-out-of-range` problem, logged with its traceback so that the missing bound gets fixed
(`ecowatt_kernel.inputs` refuses most such input before any handler runs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ecowatt_kernel.errors import EcoWattError
from ecowatt_kernel.tracing import current_trace_id

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "Conflict",
    "Forbidden",
    "NotFound",
    "Problem",
    "TooLargeAsProblem",
    "Unauthorized",
    "data_error_problem",
    "install_problem_handlers",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
# Where Starlette's body-size limit keeps the limit of the request in hand.
_MAX_BODY_SIZE_SCOPE_KEY = "starlette.max_body_size"
_logger = logging.getLogger(__name__)


class Problem(EcoWattError):
    """An HTTP error rendered as problem details."""

    status: int = 400
    type_suffix: str = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        type_suffix: str | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if type_suffix is not None:
            self.type_suffix = type_suffix
        self.title = title or HTTPStatus(self.status).phrase
        self.extensions = extensions

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://ecowatt.dev/problems/{self.type_suffix}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        trace_id = current_trace_id()
        if trace_id:
            body["trace_id"] = trace_id
        body.update(self.extensions)
        return body


class Unauthorized(Problem):
    status, type_suffix = 401, "unauthorized"


class Forbidden(Problem):
    status, type_suffix = 403, "forbidden"


class NotFound(Problem):
    status, type_suffix = 404, "not-found"


class Conflict(Problem):
    status, type_suffix = 409, "conflict"


def _response(problem: Problem, request: Request) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else {}
    retry_after = problem.extensions.get("retry_after")
    if isinstance(retry_after, int) and retry_after >= 0:
        headers["Retry-After"] = str(retry_after)  # 423 locked, 429 rate-limited, 503
    return JSONResponse(
        problem.to_dict(instance=request.url.path),
        status_code=problem.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def data_error_problem(error: BaseException) -> Problem | None:
    """A 422 problem when `error` is bad input the database or a conversion refused."""
    for cause in _chain(error):
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate[:2] in ("22", "54"):
            message = str(getattr(cause, "message", "") or cause).splitlines()[0]
            break
        # asyncpg refuses a value it cannot encode (an integer beyond 64 bits …) as an
        # InterfaceError that is also a ValueError, before anything reaches the server.
        if type(cause).__module__.startswith("asyncpg") and isinstance(cause, ValueError):
            message = str(cause).splitlines()[0]
            break
        if isinstance(cause, OverflowError):
            message = str(cause) or "value out of range"
            break
    else:
        return None
    return Problem(
        f"a value in the request is out of the range this service can store or compute "
        f"with ({json.dumps(message[:200], ensure_ascii=False)})",
        status=422,
        type_suffix="value-out-of-range",
    )


class TooLargeAsProblem:
    """ASGI wrapper: Starlette's body-size limit answers a plain-text 413 of its own (past
    every exception handler); this turns it into problem details stating the limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False

        async def rewrite(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 413:
                content_type = dict(message.get("headers", ())).get(b"content-type", b"")
                if not content_type.startswith(PROBLEM_CONTENT_TYPE.encode()):
                    replaced = True
                    limit = scope.get(_MAX_BODY_SIZE_SCOPE_KEY)
                    problem = _too_large(limit if isinstance(limit, int) else None)
                    body = json.dumps(problem.to_dict(instance=scope.get("path"))).encode()
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 413,
                            "headers": [
                                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                                (b"content-length", str(len(body)).encode()),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
            if replaced:
                return  # the plain-text body of the replaced response
            await send(message)

        await self.app(scope, receive, rewrite)


def _too_large(limit: int | None) -> Problem:
    if limit is None:
        return Problem(
            "the request body is larger than this operation takes",
            status=413,
            type_suffix="content-too-large",
        )
    return Problem(
        f"the request body is larger than this operation takes ({limit} bytes)",
        status=413,
        type_suffix="content-too-large",
        max_bytes=limit,
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error of `app` as problem details."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return _response(exc, request)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        problem = Problem(
            "the request is invalid; see `errors` for each field",
            status=422,
            type_suffix="validation-error",
            errors=errors,
        )
        return _response(problem, request)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 413:
            limit = request.scope.get(_MAX_BODY_SIZE_SCOPE_KEY)
            return _response(_too_large(limit if isinstance(limit, int) else None), request)
        return _response(
            Problem(
                str(exc.detail),
                status=exc.status_code,
                type_suffix=HTTPStatus(exc.status_code).name.lower().replace("_", "-"),
            ),
            request,
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        _logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return _response(
            Problem("an internal error occurred", status=500, type_suffix="internal-error"), request
        )

    async def on_data_error(request: Request, exc: Exception) -> JSONResponse:
        # Handled here rather than by the catch-all, which Starlette re-raises after answering.
        refused = data_error_problem(exc)
        if refused is None:
            return await on_unexpected(request, exc)
        _logger.warning(
            "bad input reached %s %s (answered 422)",
            request.method,
            request.url.path,
            exc_info=exc,
        )
        return _response(refused, request)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(DBAPIError, on_data_error)
    app.add_exception_handler(OverflowError, on_data_error)
    app.add_exception_handler(Exception, on_unexpected)
