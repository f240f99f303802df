"""System endpoints: ping, health, the OpenAPI document and its page, and JSON 404s for unknown routes."""

from __future__ import annotations

from typing import Literal

import azure.functions as func
from pydantic import BaseModel

from core import __version__
from infrastructure.context import get_app_context
from services.health import HealthReport, check_health
from triggers.http.api import endpoint, json_response
from triggers.http.errors import error_json
from triggers.http.openapi import openapi_document, render_docs_page

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@endpoint(
    bp,
    route="health",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("system",),
    summary="Health of every component",
    response_model=HealthReport,
    error_statuses=(503,),
    report_statuses=(503,),
)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 when PostgreSQL, PostGIS, pgstac, the schema, storage, the queue and GDAL are all healthy;
    503 naming the failing components otherwise."""
    ctx = get_app_context()
    report = check_health(ctx.settings, ctx.db, lambda: ctx.storage)
    return json_response(report, 200 if report.status == "healthy" else 503)


class Ping(BaseModel):
    status: Literal["ok"] = "ok"
    app_version: str = __version__


@endpoint(
    bp,
    route="ping",
    methods=("GET",),
    auth_level=func.AuthLevel.ANONYMOUS,
    tags=("system",),
    summary="Liveness: the app answers (no dependency is checked)",
    response_model=Ping,
)
def ping(req: func.HttpRequest) -> Ping:
    """For load balancers and App Service health checks, which call without a key."""
    return Ping()


@endpoint(
    bp,
    route="openapi.json",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("system",),
    summary="The OpenAPI 3.1 document of this API",
    response_model=None,
)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """Generated from the same pydantic models the handlers use."""
    return json_response(openapi_document())


@endpoint(
    bp,
    route="docs",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("system",),
    summary="Human-readable API documentation (HTML)",
    response_model=None,
    content_type="text/html",
)
def docs(req: func.HttpRequest) -> func.HttpResponse:
    """A self-contained page rendered from the OpenAPI document (no scripts from elsewhere)."""
    return func.HttpResponse(render_docs_page(openapi_document()), mimetype="text/html")


@endpoint(
    bp,
    route="{*path}",
    methods=(),
    auth_level=func.AuthLevel.ANONYMOUS,
    summary="Unknown routes",
    response_model=None,
    documented=False,
)
def route_not_found(req: func.HttpRequest) -> func.HttpResponse:
    """Catch-all with the lowest route precedence: unknown routes get a JSON 404 (and a log line)."""
    path = req.route_params.get("path", "")
    return error_json(404, "route_not_found", f"no endpoint serves {req.method} /api/{path}", {"path": f"/api/{path}"})
