"""Serve the app's HTTP-triggered functions as a Starlette (ASGI) app under ``/api``.

The request reaches the function as a ``func.HttpRequest`` (route parameters,
query string, headers, body) and the ``func.HttpResponse`` it returns is sent
as is. Keys are checked here, before the function runs, as the Functions host
does.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

import azure.functions as func
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from triggers.localhost.functions import HttpFunction, invoke
from triggers.localhost.keys import KeyRing, presented_key
from triggers.localhost.routes import precedence, to_patterns

log = logging.getLogger("geoetl.localhost")
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
MAX_BODY_BYTES = 100 * 1024 * 1024  # Azure Functions' HTTP request limit
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class BodyTooLarge(Exception):
    pass


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def host_response(request: Request, status: int, code: str, message: str, function: str = "") -> Response:
    """A response the host itself gives (no function ran): the error shape, a request id, one log line."""
    request_id = _request_id(request)
    body = json.dumps({"error": {"code": code, "message": message, "details": {"request_id": request_id}}})
    log.info(
        json.dumps(
            {
                "event": "http.request",
                "method": request.method,
                "route": None,
                "path": request.url.path,
                "status": status,
                "duration_ms": 0.0,
                "request_id": request_id,
                "function": function or None,
                "answered_by": "local host",
            }
        )
    )
    return Response(body, status_code=status, media_type="application/json", headers={"x-request-id": request_id})


async def read_body(request: Request, limit: int | None = None) -> bytes:
    """The request body, refusing more than ``limit`` bytes (declared or streamed)."""
    limit = MAX_BODY_BYTES if limit is None else limit
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


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
        if not keys.allows(function.auth_level, presented_key(dict(request.headers), dict(request.query_params))):
            level = function.auth_level.value
            message = f"this endpoint needs a valid {level} key (x-functions-key header or code query parameter)"
            return host_response(request, 401, "unauthorized", message, function.name)
        try:
            body = await read_body(request)
        except BodyTooLarge:
            return host_response(
                request,
                413,
                "payload_too_large",
                f"the request body is larger than {MAX_BODY_BYTES} bytes",
                function.name,
            )
        try:
            result = await run_in_threadpool(invoke, function.fn, function.arg_name, to_http_request(request, body))
        except Exception:
            log.exception("function %s raised", function.name)
            return host_response(request, 500, "internal_error", "the function failed; see the host log", function.name)
        response = to_starlette_response(result)
        response.headers.setdefault("x-ms-invocation-id", str(uuid.uuid4()))
        return response

    endpoint.__name__ = function.name
    return endpoint


def build_routes(functions: list[HttpFunction], keys: KeyRing) -> list[Route]:
    """One Starlette route per path pattern, most specific first."""
    patterns = [(pattern, fn) for fn in functions for pattern in to_patterns(fn.route)]
    patterns.sort(key=lambda item: precedence(item[0]))
    return [Route(p.path, _endpoint(fn, keys), methods=list(fn.methods or ALL_METHODS)) for p, fn in patterns]


class _StripTrailingSlash:
    """``/api/health/`` reaches ``/api/health``, as in Azure (no redirect)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        await self.app(scope, receive, send)


def build_http_app(functions: list[HttpFunction], keys: KeyRing, lifespan: Any = None) -> Starlette:
    async def not_found(request: Request, exc: Exception) -> Response:
        return host_response(request, 404, "route_not_found", f"no endpoint serves {request.method} {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return host_response(
            request, 405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}"
        )

    async def failed(request: Request, exc: Exception) -> Response:
        log.error("the local host failed on %s %s", request.method, request.url.path, exc_info=exc)
        return host_response(request, 500, "internal_error", "the local host failed; see its log")

    app = Starlette(
        routes=build_routes(functions, keys),
        exception_handlers={404: not_found, 405: not_allowed, Exception: failed},
        middleware=[Middleware(_StripTrailingSlash)],
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    return app
