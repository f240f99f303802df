"""Fixtures for the job API tests (the local host with queue workers running).

``jobs_context`` is the process app context over a fresh database and tmp storage,
with fast retries; ``jobs_api`` serves function_app.py over it with two workers per
queue and yields the base URL. :func:`wait_for_job` polls a job to a terminal status.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import DatabaseSettings, LocalHostSettings, OrchestrationSettings
from infrastructure.context import AppContext, set_app_context
from tests.helpers.servers import serve
from tests.plugins.app import make_context
from triggers.localhost.functions import FunctionTable
from triggers.localhost.host import LocalHost

FAST_API = OrchestrationSettings(task_retry_base_seconds=0.05, janitor_stale_seconds=0)
TERMINAL = frozenset({"completed", "failed", "cancelled"})


@pytest.fixture
def jobs_context(fresh_db: DatabaseSettings, tmp_path: Path) -> Iterator[AppContext]:
    """The process app context (restored afterwards) over a fresh database, with fast retries."""
    context = make_context(fresh_db, tmp_path / "storage", orchestration=FAST_API)
    previous = set_app_context(context)
    try:
        yield context
    finally:
        set_app_context(previous)
        context.close()


@pytest.fixture
def jobs_api(app_functions: FunctionTable, jobs_context: AppContext) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:<port>/api``) of function_app.py with queue workers running (keys off)."""
    host = LocalHost(
        app_functions,
        LocalHostSettings(local_host_timers=False, local_host_workers=2),
        message_source=jobs_context.message_source,
    )
    with serve(host.asgi_app()) as url:  # the lifespan starts the workers and stops them on exit
        yield f"{url}/api"


def wait_for_job(status_url: str, timeout: float = 30.0, interval: float = 0.05) -> dict[str, Any]:
    """GET ``status_url`` until the job is completed, failed or cancelled; its last status body."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(status_url, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in TERMINAL:
            return body
        time.sleep(interval)
    raise AssertionError(f"job still {body.get('status')!r} after {timeout} s: {body}")
