"""A CoreMachine over a fresh database, with fast retries, driven in the test's thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import DatabaseSettings, OrchestrationSettings
from infrastructure.context import AppContext, set_app_context
from tests.helpers.driver import Driver
from tests.plugins.app import make_context

FAST = OrchestrationSettings(task_retry_base_seconds=0.05, task_lease_seconds=30, janitor_stale_seconds=0)


@pytest.fixture
def machine_context(fresh_db: DatabaseSettings, tmp_path: Path) -> Iterator[AppContext]:
    context = make_context(fresh_db, tmp_path / "storage", orchestration=FAST)
    previous = set_app_context(context)
    yield context
    set_app_context(previous)
    context.close()


@pytest.fixture
def driver(machine_context: AppContext) -> Driver:
    return Driver.of(machine_context)
