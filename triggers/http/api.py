"""Declaring HTTP endpoints: one decorator registers the Azure function and its OpenAPI entry.

The decorator wraps a handler ``(req) -> model | (status, model)`` into an
Azure function ``(req: func.HttpRequest) -> func.HttpResponse`` that adds a
request id, translates errors through :mod:`triggers.http.errors`, and logs
one JSON line per request.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import azure.functions as func
from pydantic import BaseModel, ValidationError

from triggers.http.errors import error_response, validation_error_response

log = logging.getLogger("geoetl.http")
Handler = Callable[[func.HttpRequest], Any]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class EndpointSpec:
    """What the OpenAPI document says about one endpoint."""

    name: str
    route: str
    methods: tuple[str, ...]
    auth_level: func.AuthLevel
    summary: str
    description: str
    response_model: type[BaseModel] | None
    status_code: int
    request_model: type[BaseModel] | None = None
    query_model: type[BaseModel] | None = None
    error_statuses: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    content_type: str = "application/json"


@dataclass
class EndpointRegistry:
    specs: list[EndpointSpec] = field(default_factory=list)


REGISTRY = EndpointRegistry()


def json_response(payload: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    if isinstance(payload, BaseModel):
        body = payload.model_dump_json(by_alias=True)
    else:
        body = json.dumps(payload, default=str)
    return func.HttpResponse(body, status_code=status_code, mimetype="application/json", headers=headers or {})


def parse_body(req: func.HttpRequest, model: type[M]) -> M:
    """The JSON body validated against ``model`` (ValidationError → 400 naming each field)."""
    raw = req.get_body() or b"{}"
    return model.model_validate_json(raw)


def parse_query(req: func.HttpRequest, model: type[M]) -> M:
    return model.model_validate(dict(req.params))


def _to_response(result: Any, status_code: int) -> func.HttpResponse:
    if isinstance(result, func.HttpResponse):
        return result
    if isinstance(result, tuple):
        status, payload = result
        return json_response(payload, status)
    return json_response(result, status_code)


def endpoint(
    bp: func.Blueprint,
    *,
    route: str,
    methods: tuple[str, ...],
    auth_level: func.AuthLevel,
    summary: str,
    response_model: type[BaseModel] | None,
    status_code: int = 200,
    request_model: type[BaseModel] | None = None,
    query_model: type[BaseModel] | None = None,
    error_statuses: tuple[int, ...] = (),
    tags: tuple[str, ...] = (),
    content_type: str = "application/json",
) -> Callable[[Handler], Handler]:
    """Register ``handler`` on ``bp`` as an HTTP function and in the OpenAPI registry."""

    def decorator(handler: Handler) -> Handler:
        name = handler.__name__
        REGISTRY.specs.append(
            EndpointSpec(
                name,
                route,
                methods,
                auth_level,
                summary,
                (handler.__doc__ or "").strip(),
                response_model,
                status_code,
                request_model,
                query_model,
                error_statuses,
                tags,
                content_type,
            )
        )
        function = _wrap(handler, route, status_code)
        bp.function_name(name=name)(bp.route(route=route, methods=list(methods), auth_level=auth_level)(function))
        return handler

    return decorator


def _wrap(handler: Handler, route: str, status_code: int) -> Callable[[func.HttpRequest], func.HttpResponse]:
    def function(req: func.HttpRequest) -> func.HttpResponse:
        request_id = req.headers.get("x-request-id") or uuid.uuid4().hex
        started = time.perf_counter()
        try:
            response = _to_response(handler(req), status_code)
        except ValidationError as exc:
            response = validation_error_response(exc)
        except Exception as exc:
            response = error_response(exc, request_id)
        response.headers["x-request-id"] = request_id
        log.info(
            json.dumps(
                {
                    "event": "http.request",
                    "method": req.method,
                    "route": route,
                    "path": _path(req.url),
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "request_id": request_id,
                    "function": handler.__name__,
                }
            )
        )
        return response

    function.__name__ = handler.__name__
    function.__qualname__ = handler.__qualname__
    function.__doc__ = handler.__doc__
    function.__annotations__ = {"req": func.HttpRequest, "return": func.HttpResponse}
    return function


def _path(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1].split("?", 1)[0] if "/" in rest else "/"
