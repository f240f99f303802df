"""The one table from errors to HTTP statuses, and the ``{"error": {...}}`` body.

Only 5xx are logged as errors; a 500 never shows a stack trace or an
exception text to the caller, only a request id to find it in the logs.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func
from pydantic import BaseModel, Field, ValidationError

from core import errors

log = logging.getLogger("geoetl.http")

STATUS_BY_ERROR: tuple[tuple[type[errors.GeoetlError], int], ...] = (
    (errors.InvalidInput, 400),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.ServiceUnavailable, 503),
)


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. invalid_input")
    message: str = Field(description="What went wrong, for a human")
    details: dict[str, Any] = Field(default_factory=dict, description="Structured context (fields, names, ids)")


class ErrorResponse(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorBody


def status_for(exc: BaseException) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return status
    return 500


def error_json(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> func.HttpResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details or {}))
    return func.HttpResponse(body.model_dump_json(), status_code=status, mimetype="application/json")


def error_response(exc: BaseException, request_id: str) -> func.HttpResponse:
    """Translate any exception into the API error shape; a 500 body holds only the request id."""
    status = status_for(exc)
    if status == 500:
        log.error("request %s failed with an unexpected error", request_id, exc_info=exc)
        return error_json(500, "internal_error", "An unexpected error occurred.", {"request_id": request_id})
    assert isinstance(exc, errors.GeoetlError)
    if status >= 500:
        log.error("request %s failed: %s", request_id, exc.message)
    return error_json(
        status,
        exc.code,
        exc.message,
        {**_jsonable(exc.details), "request_id": request_id} if status >= 500 else _jsonable(exc.details),
    )


def invalid_request(exc: ValidationError, where: str) -> errors.InvalidInput:
    """InvalidInput naming each bad field of the request's ``where`` (body, query), without echoing input."""
    problems = [
        {"field": ".".join(str(p) for p in err["loc"]) or f"({where})", "problem": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:10])
    return errors.InvalidInput(f"invalid request {where}: {summary}", errors=problems)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(details, default=str))
    return result
