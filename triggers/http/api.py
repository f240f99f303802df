"""Declaring HTTP endpoints: one decorator registers the Azure function and its OpenAPI entry.

The decorator wraps a handler ``(req) -> model | (status, model)`` into an
Azure function ``(req: func.HttpRequest) -> func.HttpResponse`` that adds a
request id, translates errors through :mod:`triggers.http.errors`, and logs
one JSON line per request.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import azure.functions as func
from pydantic import BaseModel, ValidationError

from triggers.http.errors import error_response, invalid_request

log = logging.getLogger("geoetl.http")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
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
    report_statuses: tuple[int, ...] = ()
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
    """The JSON body validated against ``model``; bad input is InvalidInput naming each field."""
    try:
        return model.model_validate_json(req.get_body() or b"{}")
    except ValidationError as exc:
        raise invalid_request(exc, "body") from None


def parse_query(req: func.HttpRequest, model: type[M]) -> M:
    """The query string validated against ``model``; bad input is InvalidInput naming each parameter."""
    try:
        return model.model_validate(dict(req.params))
    except ValidationError as exc:
        raise invalid_request(exc, "query") from None


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
    report_statuses: tuple[int, ...] = (),
    tags: tuple[str, ...] = (),
    content_type: str = "application/json",
    documented: bool = True,
) -> Callable[[Handler], Handler]:
    """Register ``handler`` on ``bp`` as an HTTP function and (unless ``documented=False``) in OpenAPI.

    ``report_statuses`` are error statuses whose body is ``response_model`` (e.g. health's 503)
    rather than the error shape.
    """

    def decorator(handler: Handler) -> Handler:
        name = handler.__name__
        if documented:
            description = (handler.__doc__ or "").strip()
            REGISTRY.specs.append(
                EndpointSpec(
                    name,
                    route,
                    methods,
                    auth_level,
                    summary,
                    description,
                    response_model,
                    status_code,
                    request_model,
                    query_model,
                    error_statuses,
                    report_statuses,
                    tags,
                    content_type,
                )
            )
        function = _wrap(handler, route, status_code)
        route_decorator = bp.route(route=route, methods=list(methods) or None, auth_level=auth_level)
        bp.function_name(name=name)(route_decorator(function))
        return handler

    return decorator


def request_id_of(req: func.HttpRequest) -> str:
    """The caller's ``x-request-id`` when it is a sane token, else a new one (never echo arbitrary input)."""
    given = req.headers.get("x-request-id") or ""
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _wrap(handler: Handler, route: str, status_code: int) -> Callable[[func.HttpRequest], func.HttpResponse]:
    def function(req: func.HttpRequest) -> func.HttpResponse:
        request_id = request_id_of(req)
        started = time.perf_counter()
        try:
            response = _to_response(handler(req), status_code)
        except Exception as exc:
            response = error_response(exc, request_id)
        response.headers["x-request-id"] = request_id
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        log.info(
            json.dumps(
                {
                    "event": "http.request",
                    "method": req.method,
                    "route": route,
                    "path": _path(req.url),
                    "status": response.status_code,
                    "duration_ms": elapsed,
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
