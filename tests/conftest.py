"""Shared set-up: an environment free of the developer's settings, and the fixture plugins.

Fixtures: real PostgreSQL (plugins/postgres.py), Azurite (plugins/azurite.py), PgBouncer
(plugins/pgbouncer.py), and function_app.py served by the local host (plugins/app.py).
"""

from __future__ import annotations

import os

import pytest

from tests.helpers.env import isolate_environment

isolate_environment()

pytest_plugins = [
    "tests.plugins.postgres",
    "tests.plugins.azurite",
    "tests.plugins.app",
    "tests.plugins.pgbouncer",
    "tests.plugins.machine",
    "tests.plugins.jobs_api",
]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI, a run in which no test passed fails, even if pytest would call it a success (all skipped)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter else 0
    if os.environ.get("CI") == "true" and exitstatus == 0 and passed == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
