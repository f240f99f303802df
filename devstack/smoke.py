"""End-to-end smoke test of a running geoetl deployment, for CI pipelines (standard library only).

    python -m devstack.smoke --url URL [--key KEY] [--n 3] [--timeout 300] [--poll-interval 1.0]

URL is the API base: ``http://127.0.0.1:7071/api`` locally, ``https://<app>.azurewebsites.net/api``
in Azure. KEY, a function key, is sent as ``x-functions-key`` and never printed. Both may come from
``GEOETL_URL`` / ``GEOETL_KEY`` instead. Steps, one line each with the elapsed time: ``GET /health``
must be healthy; ``POST /jobs/submit/hello_world`` (n tasks, a unique message) must answer 202;
``GET /jobs/status/{job_id}`` is polled, printing progress changes, until the job completes, fails
or ``--timeout`` seconds pass; its ``result_data`` must be a JSON object.

Exit codes: 0 success, 1 a check failed or the app could not be reached, 2 usage error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

REQUEST_TIMEOUT = 30.0
HEALTHY = ("ok", "healthy")  # the app's report says "healthy", its components "ok"
TERMINAL_FAILURES = ("failed", "cancelled")


class SmokeError(Exception):
    """A check failed; the message is one line for the CI log."""


def _say(step: str, started: float, detail: str) -> None:
    print(f"[{time.monotonic() - started:7.2f}s] {step}: {detail}", flush=True)


def _compact(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_unreachable(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the app running?)"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and type(reason).__name__ == "gaierror":
        return f"cannot resolve host ({reason.strerror or reason})"
    return str(reason) or type(reason).__name__


def request(
    method: str, url: str, key: str | None, body: Any = None, timeout: float = REQUEST_TIMEOUT
) -> tuple[int, Any]:
    """(HTTP status, parsed JSON or raw text) for any answer; SmokeError when nothing answers."""
    headers = {"Accept": "application/json"}
    if key:
        headers["x-functions-key"] = key
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            status, raw = err.code, err.read()
    except urllib.error.URLError as err:
        raise SmokeError(f"cannot reach {url}: {_describe_unreachable(err.reason)}") from None
    except (OSError, http.client.HTTPException) as err:
        raise SmokeError(f"cannot reach {url}: {_describe_unreachable(err)}") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def _http_failure(what: str, status: int, body: Any) -> SmokeError:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return SmokeError(f"{what}: HTTP {status} {error.get('code')}: {error.get('message')}")
    return SmokeError(f"{what}: HTTP {status}: {_compact(body) or '(empty body)'}")


def _unhealthy_components(body: Any) -> list[str]:
    components = body.get("components") if isinstance(body, dict) else None
    if isinstance(components, dict):
        items: list[tuple[Any, Any]] = list(components.items())
    elif isinstance(components, list):
        items = list(enumerate(components))
    else:
        return []
    bad = []
    for key, comp in items:
        if isinstance(comp, dict):
            name, status = comp.get("name", key), comp.get("status")
            if status not in HEALTHY:
                bad.append(f"{name}={status}" + (f" ({comp['error']})" if comp.get("error") else ""))
        elif comp not in HEALTHY:
            bad.append(f"{key}={comp}")
    return bad


def check_health(url: str, key: str | None, started: float) -> None:
    status, body = request("GET", f"{url}/health", key)
    overall = body.get("status") if isinstance(body, dict) else None
    if status != 200 or overall not in HEALTHY:
        bad = _unhealthy_components(body)
        detail = f"not ok: {'; '.join(bad)}" if bad else _compact(body) or "(empty body)"
        raise SmokeError(f"health: HTTP {status}, status={overall}; {detail}")
    components = body.get("components")
    count = len(components) if isinstance(components, list | dict) else 0
    _say("health", started, f"{overall} ({count} components)")


def submit(url: str, key: str | None, n: int, started: float) -> str:
    message = f"smoke {datetime.now(UTC).isoformat(timespec='microseconds')}"
    status, body = request("POST", f"{url}/jobs/submit/hello_world", key, {"n": n, "message": message})
    if status != 202:
        raise _http_failure("submit", status, body)
    if not isinstance(body, dict) or not all(k in body for k in ("job_id", "status", "status_url")):
        raise SmokeError(f"submit: HTTP 202 but not {{job_id, status, status_url}}: {_compact(body)}")
    _say("submit", started, f"job {body['job_id']} {body['status']}")
    return str(body["job_id"])


def _progress_line(body: dict[str, Any]) -> str:
    line = f"{body.get('status')} stage {body.get('stage')}/{body.get('total_stages')}"
    progress = body.get("progress")
    if isinstance(progress, dict):
        counts = ", ".join(f"{k} {progress.get(k)}" for k in ("queued", "processing", "completed", "failed"))
        line += f"; tasks {counts} of {progress.get('total')} ({progress.get('percent')}%)"
    return line


def wait_for_job(url: str, key: str | None, job_id: str, args: argparse.Namespace, started: float) -> dict[str, Any]:
    """The final status body of a completed job; SmokeError when it fails or time runs out."""
    timeout, interval = args.timeout, args.poll_interval
    deadline, last = time.monotonic() + timeout, ""
    while True:
        remaining = deadline - time.monotonic()
        status, body = request(
            "GET", f"{url}/jobs/status/{job_id}", key, timeout=min(REQUEST_TIMEOUT, max(remaining, 1.0))
        )
        if status != 200 or not isinstance(body, dict):
            raise _http_failure("status", status, body)
        line = _progress_line(body)
        if line != last:
            _say("poll", started, line)
            last = line
        if body.get("status") == "completed":
            return body
        if body.get("status") in TERMINAL_FAILURES:
            raise SmokeError(f"job {job_id} {body.get('status')}: {_compact(body.get('error_details'), 500)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SmokeError(f"job {job_id} not finished after {timeout:g}s (last: {line})")
        time.sleep(min(interval, remaining))


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.smoke", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("GEOETL_URL"), help="API base URL (env GEOETL_URL)")
    parser.add_argument("--key", default=os.environ.get("GEOETL_KEY"), help="function key (env GEOETL_KEY)")
    parser.add_argument("--n", type=_positive(int), default=3, help="hello_world tasks (default 3)")
    parser.add_argument("--timeout", type=_positive(float), default=300.0, help="seconds for the job (default 300)")
    parser.add_argument("--poll-interval", type=_positive(float), default=1.0, help="seconds between polls")
    args = parser.parse_args(argv)
    if not args.url or not args.url.startswith(("http://", "https://")):
        parser.error("--url (or GEOETL_URL) must be an http:// or https:// URL, e.g. http://127.0.0.1:7071/api")
    args.url = args.url.rstrip("/")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    print(f"smoke test of {args.url} ({'with' if args.key else 'without'} key)", flush=True)
    try:
        check_health(args.url, args.key, started)
        submitted = time.monotonic()
        job_id = submit(args.url, args.key, args.n, started)
        final = wait_for_job(args.url, args.key, job_id, args, started)
        result = final.get("result_data")
        if not isinstance(result, dict):
            raise SmokeError(f"result_data is not a JSON object: {_compact(result)}")
        _say("result", started, _compact(result))
        _say("ok", started, f"job {job_id} completed {time.monotonic() - submitted:.2f}s after submit")
    except SmokeError as err:
        message = str(err).replace(args.key, "***") if args.key else str(err)  # in case a body echoes it
        _say("FAIL", started, message)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
