"""Local host overhead: a no-op Azure function through the local host vs the same route on bare Starlette.

Both run on the same uvicorn, on this machine; a keep-alive httpx client sends
the requests one after another. Prints requests/s, mean latency, and the ratio
to the bare-Starlette reference. Usage: ``.venv/bin/python -m bench.http_overhead [--requests N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import azure.functions as func
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.settings import LocalHostSettings
from tests.helpers.servers import serve
from triggers.http.api import endpoint
from triggers.localhost.host import LocalHost


def bare_starlette() -> Starlette:
    async def noop(request: Request) -> Response:
        return Response('{"status":"ok"}', media_type="application/json")

    return Starlette(routes=[Route("/api/noop", noop)])


def raw_function_app() -> Starlette:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="noop", methods=["GET"])
    def noop(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse('{"status":"ok"}', mimetype="application/json")

    return LocalHost(app, LocalHostSettings(local_host_timers=False)).asgi_app()


def wrapped_function_app() -> Starlette:
    """With the project's endpoint decorator: request id, error translation, one JSON log line."""
    import logging

    from pydantic import BaseModel

    logging.getLogger("geoetl.http").setLevel(logging.WARNING)  # measure the work, not the terminal
    bp = func.Blueprint()

    class Ok(BaseModel):
        status: str = "ok"

    @endpoint(
        bp, route="noop", methods=("GET",), auth_level=func.AuthLevel.ANONYMOUS, summary="noop", response_model=Ok
    )
    def noop(req: func.HttpRequest) -> Ok:
        return Ok()

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.register_functions(bp)
    return LocalHost(app, LocalHostSettings(local_host_timers=False)).asgi_app()


def measure(make_app: Callable[[], Starlette], requests: int) -> tuple[float, float]:
    """(requests per second, median latency in ms)."""
    with serve(make_app()) as url, httpx.Client(base_url=url) as client:
        for _ in range(50):
            client.get("/api/noop").raise_for_status()
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(requests):
            t0 = time.perf_counter()
            client.get("/api/noop").raise_for_status()
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    return requests / elapsed, statistics.median(latencies) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    rows = [
        ("bare Starlette route (reference)", bare_starlette),
        ("Azure function via local host", raw_function_app),
        ("+ geoetl endpoint wrapper", wrapped_function_app),
    ]
    results = [(label, *measure(factory, args.requests)) for label, factory in rows]
    reference = results[0][1]
    print(f"\nHTTP overhead, {args.requests} sequential keep-alive requests, uvicorn on 127.0.0.1\n")
    print(f"{'server':<36} {'req/s':>9} {'median ms':>10} {'vs reference':>13}")
    for label, rps, median in results:
        print(f"{label:<36} {rps:>9.0f} {median:>10.2f} {rps / reference:>12.2f}x")


if __name__ == "__main__":
    main()
