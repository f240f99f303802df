"""Serve the app's HTTP-triggered functions as a Starlette (ASGI) app under ``/api``.

The request reaches the function as a ``func.HttpRequest`` (route parameters,
query string, headers, body) and the ``func.HttpResponse`` it returns is sent
as is. Keys are checked here, before the function runs, as the Functions host
does.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import azure.functions as func
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from triggers.localhost.functions import HttpFunction, invoke
from triggers.localhost.keys import KeyRing, presented_key
from triggers.localhost.routes import precedence, to_patterns

log = logging.getLogger("geoetl.localhost")
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def _json_error(status: int, code: str, message: str) -> Response:
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}})
    return Response(body, status_code=status, media_type="application/json")


def to_http_request(request: Request, body: bytes) -> func.HttpRequest:
    headers = {k.lower(): v for k, v in request.headers.items()}
    route_params = {k: str(v) for k, v in request.path_params.items()}
    return func.HttpRequest(
        request.method,
        str(request.url),
        headers=headers,
        params=dict(request.query_params),
        route_params=route_params,
        body=body,
    )


def to_starlette_response(result: Any) -> Response:
    if isinstance(result, func.HttpResponse):
        headers = {k: v for k, v in result.headers.items() if k.lower() != "content-type"}
        content_type = result.headers.get("content-type") or f"{result.mimetype}; charset={result.charset}"
        return Response(result.get_body(), status_code=result.status_code, headers=headers, media_type=content_type)
    if isinstance(result, str | bytes):
        return Response(result, status_code=200, media_type="text/plain")
    return Response(status_code=204)


def _endpoint(function: HttpFunction, keys: KeyRing) -> Any:
    async def endpoint(request: Request) -> Response:
        body = await request.body()
        if not keys.allows(function.auth_level, presented_key(dict(request.headers), dict(request.query_params))):
            log.info(
                json.dumps(
                    {
                        "event": "http.request",
                        "method": request.method,
                        "route": function.route,
                        "path": request.url.path,
                        "status": 401,
                        "duration_ms": 0.0,
                        "request_id": request.headers.get("x-request-id", ""),
                        "function": function.name,
                        "rejected_by": "host: missing or wrong key",
                    }
                )
            )
            level = function.auth_level.value
            return _json_error(
                401,
                "unauthorized",
                f"this endpoint needs a valid {level} key (x-functions-key header or code query parameter)",
            )
        started = time.perf_counter()
        try:
            result = await run_in_threadpool(invoke, function.fn, function.arg_name, to_http_request(request, body))
        except Exception:
            log.exception("function %s raised", function.name)
            return _json_error(500, "internal_error", "the function failed; see the host log")
        response = to_starlette_response(result)
        response.headers.setdefault("x-ms-invocation-id", str(uuid.uuid4()))
        log.debug("%s served in %.1f ms", function.name, (time.perf_counter() - started) * 1000)
        return response

    endpoint.__name__ = function.name
    return endpoint


def build_routes(functions: list[HttpFunction], keys: KeyRing) -> list[Route]:
    """One Starlette route per path pattern, most specific first."""
    patterns = [(pattern, fn) for fn in functions for pattern in to_patterns(fn.route)]
    patterns.sort(key=lambda item: precedence(item[0]))
    return [Route(p.path, _endpoint(fn, keys), methods=list(fn.methods or ALL_METHODS)) for p, fn in patterns]


def build_http_app(functions: list[HttpFunction], keys: KeyRing, lifespan: Any = None) -> Starlette:
    async def not_found(request: Request, exc: Exception) -> Response:
        return _json_error(404, "route_not_found", f"no endpoint serves {request.method} {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _json_error(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")

    return Starlette(
        routes=build_routes(functions, keys),
        exception_handlers={404: not_found, 405: not_allowed},
        lifespan=lifespan,
    )
