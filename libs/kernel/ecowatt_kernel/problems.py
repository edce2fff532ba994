"""RFC 9457 problem details for every HTTP error.

Raise `Problem` (or a subclass) anywhere in a request; the handlers installed by the app
factory render it as `application/problem+json` (a `retry_after=<seconds>` extension also
becomes the `Retry-After` header). Request validation errors become a 422
problem whose `errors` list names each field (`loc`, `msg`, `type`).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ecowatt_kernel.tracing import current_trace_id

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "Conflict",
    "Forbidden",
    "NotFound",
    "Problem",
    "Unauthorized",
    "install_problem_handlers",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
_logger = logging.getLogger(__name__)


class Problem(Exception):
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

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
