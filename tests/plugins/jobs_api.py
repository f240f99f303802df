"""Fixtures for the job API tests (the local host with queue workers running).

``jobs_context`` is the process app context over a fresh database and tmp storage,
with fast retries; ``jobs_api`` serves function_app.py over it with two workers per
queue and yields the base URL. ``azurite_jobs_context``/``azurite_jobs_api`` are the
same over Azurite (STORAGE_BACKEND=azure; the containers are created, and shared by
the session's tests: use distinct blob names). :func:`wait_for_job` polls a job to a
terminal status.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import DatabaseSettings, LocalHostSettings, OrchestrationSettings, StorageSettings
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
def azurite_jobs_context(
    fresh_db: DatabaseSettings, tmp_path: Path, azurite_connection_string: str
) -> Iterator[AppContext]:
    """As ``jobs_context``, with the storage on Azurite."""
    storage = StorageSettings(storage_backend="azure", azure_storage_connection_string=azurite_connection_string)
    context = make_context(fresh_db, tmp_path / "unused", orchestration=FAST_API, storage=storage)
    previous = set_app_context(context)
    try:
        yield context
    finally:
        set_app_context(previous)
        context.close()


@pytest.fixture
def jobs_api(app_functions: FunctionTable, jobs_context: AppContext) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:<port>/api``) of function_app.py with queue workers running (keys off)."""
    yield from _serve(app_functions, jobs_context)


@pytest.fixture
def azurite_jobs_api(app_functions: FunctionTable, azurite_jobs_context: AppContext) -> Iterator[str]:
    """As ``jobs_api``, with the storage on Azurite."""
    yield from _serve(app_functions, azurite_jobs_context)


def _serve(app_functions: FunctionTable, jobs_context: AppContext) -> Iterator[str]:
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
