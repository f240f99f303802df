"""The real function_app.py served by the local host, over a per-test database and storage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import (
    AppSettings,
    DatabaseSettings,
    LocalHostSettings,
    OrchestrationSettings,
    QueueSettings,
    Settings,
    StorageSettings,
)
from infrastructure.context import AppContext, set_app_context
from tests.helpers.servers import serve
from triggers.localhost.functions import FunctionTable, read_functions
from triggers.localhost.host import LocalHost


@pytest.fixture(scope="session")
def app_functions() -> FunctionTable:
    """function_app.py's functions, read once (get_functions() works once per app object)."""
    import function_app

    return read_functions(function_app.app)


def make_context(
    database: DatabaseSettings,
    storage_root: Path,
    orchestration: OrchestrationSettings | None = None,
    queue: QueueSettings | None = None,
    storage: StorageSettings | None = None,
    **app_settings: object,
) -> AppContext:
    """An app context over ``database``; storage is local under ``storage_root`` unless ``storage`` is given."""
    storage = storage or StorageSettings(storage_backend="local", storage_local_root=storage_root)
    settings = Settings(
        database=database,
        storage=storage,
        queue=queue,
        orchestration=orchestration,
        app=AppSettings.model_validate(app_settings),
    )
    context = AppContext(settings)
    for container in storage.containers:
        context.storage.ensure_container(container)
    return context


@pytest.fixture
def app_context(fresh_db: DatabaseSettings, tmp_path: Path) -> Iterator[AppContext]:
    context = make_context(fresh_db, tmp_path / "storage")
    previous = set_app_context(context)
    yield context
    set_app_context(previous)
    context.close()


@pytest.fixture
def api(app_functions: FunctionTable, app_context: AppContext) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:<port>/api``) of the app served by the local host, keys off."""
    host = LocalHost(app_functions, LocalHostSettings(local_host_timers=False))
    with serve(host.asgi_app()) as url:
        yield f"{url}/api"
