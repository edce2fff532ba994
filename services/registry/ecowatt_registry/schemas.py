"""Helpers for request models: partial (PATCH) models and field-level validation problems."""

from __future__ import annotations

from typing import Any, TypeVar

from ecowatt_kernel.problems import Problem
from pydantic import BaseModel, ValidationError, create_model

M = TypeVar("M", bound=BaseModel)


def partial_model(model: type[M], name: str) -> type[M]:
    """`model` with every field optional and unset by default (for PATCH bodies)."""
    fields: dict[str, Any] = {
        field_name: (info.annotation | None, None)  # type: ignore[operator]
        for field_name, info in model.model_fields.items()
    }
    return create_model(name, __base__=model, **fields)


def field_problem(errors: list[dict[str, Any]]) -> Problem:
    """A 422 problem naming each invalid field, shaped like request validation errors."""
    return Problem(
        "the request is invalid; see `errors` for each field",
        status=422,
        type_suffix="validation-error",
        errors=errors,
    )


def field_error(field: str, message: str, kind: str = "value_error") -> dict[str, Any]:
    """One entry of a validation problem's `errors`, for a body field."""
    return {"loc": ["body", field], "msg": message, "type": kind}


def validate_merged(model: type[M], data: dict[str, Any]) -> M:
    """Validate a merged (current + patch) state, raising a 422 problem for body fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise field_problem(
            [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        ) from None
