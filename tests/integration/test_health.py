"""GET /api/health through the local host, against real components that are up or really down."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.settings import AppSettings, DatabaseSettings, LocalHostSettings, Settings, StorageSettings
from devstack.postgres import find_bindir, server_major
from devstack.stack import ensure_database
from infrastructure.context import AppContext, set_app_context
from infrastructure.db.setup import setup_database
from tests.helpers.servers import serve
from tests.plugins.app import make_context
from triggers.localhost.functions import FunctionTable
from triggers.localhost.host import LocalHost

COMPONENTS = {"postgresql", "postgis", "pgstac", "schema", "storage", "queue", "gdal"}


@pytest.fixture
def serve_context(app_functions: FunctionTable) -> Iterator[object]:
    """Serve the app over a given context: ``with serve_context(ctx) as api: ...``."""
    from contextlib import contextmanager

    @contextmanager
    def run(context: AppContext) -> Iterator[str]:
        previous = set_app_context(context)
        try:
            with serve(LocalHost(app_functions, LocalHostSettings(local_host_timers=False)).asgi_app()) as url:
                yield f"{url}/api"
        finally:
            set_app_context(previous)
            context.close()

    return run


def by_name(report: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {c["name"]: c for c in report["components"]}


def test_healthy_stack_reports_every_component(api: str) -> None:
    response = httpx.get(f"{api}/health", timeout=30)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["status"] == "healthy" and report["failing"] == []
    components = by_name(report)
    assert set(components) == COMPONENTS
    assert all(c["status"] == "ok" for c in components.values())
    assert components["postgresql"]["version"].split(".")[0] == str(server_major(find_bindir()))
    assert components["postgis"]["version"].startswith("3.")
    assert components["pgstac"]["version"] == "0.10.0"
    assert components["storage"]["details"]["backend"] == "local"
    queue = components["queue"]["details"]
    assert queue["jobs"] == {"queued": 0, "processing": 0, "oldest_seconds": None}
    assert queue["dead_letters_24h"] == 0 and queue["depth"] == {}
    assert components["gdal"]["version"].startswith("3.")
    assert report["app_version"]
    assert response.headers["x-request-id"]


def test_health_never_shows_secrets(fresh_db: DatabaseSettings, tmp_path: Path, serve_context) -> None:  # type: ignore[no-untyped-def]
    """Storage that fails while its connection string (with the account key) is in play."""
    from devstack.azurite import ACCOUNT_KEY, connection_string
    from tests.helpers.servers import free_port

    storage = StorageSettings(
        storage_backend="azure",
        azure_storage_connection_string=connection_string(free_port()),
        azure_storage_max_retries=0,
        azure_storage_timeout_seconds=2,
    )
    settings = Settings(database=fresh_db, storage=storage, app=AppSettings(health_timeout_seconds=5))
    with serve_context(AppContext(settings)) as api:
        response = httpx.get(f"{api}/health", timeout=30)
    assert response.status_code == 503 and response.json()["failing"] == ["storage"]
    assert ACCOUNT_KEY not in response.text and ACCOUNT_KEY[:20] not in response.text


def test_database_without_schema_is_503_naming_components(
    empty_db: DatabaseSettings, tmp_path: Path, serve_context
) -> None:  # type: ignore[no-untyped-def]
    with serve_context(make_context(empty_db, tmp_path)) as api:
        response = httpx.get(f"{api}/health", timeout=30)
    assert response.status_code == 503
    report = response.json()
    assert set(report["failing"]) == {"postgis", "pgstac", "schema"}
    assert "postgis extension is not installed" in by_name(report)["postgis"]["error"]


def test_missing_container_is_503_naming_storage(fresh_db: DatabaseSettings, tmp_path: Path, serve_context) -> None:  # type: ignore[no-untyped-def]
    context = make_context(fresh_db, tmp_path)
    shutil.rmtree(tmp_path / "gold")
    with serve_context(context) as api:
        response = httpx.get(f"{api}/health", timeout=30)
    assert response.status_code == 503
    report = response.json()
    assert report["failing"] == ["storage"]
    assert "gold" in by_name(report)["storage"]["error"]


def test_stopped_database_is_503_naming_postgresql(throwaway_cluster, tmp_path: Path, serve_context) -> None:  # type: ignore[no-untyped-def]
    cluster = throwaway_cluster
    cluster.start()
    settings = DatabaseSettings(pgport=cluster.port, pgdatabase="geoetl", pg_connect_timeout=2)
    ensure_database(settings)
    setup_database(settings)
    with serve_context(make_context(settings, tmp_path)) as api:
        assert httpx.get(f"{api}/health", timeout=30).status_code == 200
        cluster.stop()
        response = httpx.get(f"{api}/health", timeout=30)
    assert response.status_code == 503
    report = response.json()
    assert report["failing"][0] == "postgresql"
    assert f":{cluster.port}/geoetl" in by_name(report)["postgresql"]["error"]
    assert by_name(report)["storage"]["status"] == "ok", "other components are still checked"


def test_a_hanging_component_is_reported_within_the_limit_and_not_piled_up(
    fresh_db: DatabaseSettings, tmp_path: Path
) -> None:
    import threading

    from infrastructure.db.database import Database
    from services.health import check_health

    release = threading.Event()
    context = make_context(fresh_db, tmp_path, health_timeout_seconds=0.5)

    class HangingStore:
        backend = "hanging"

        def container_exists(self, container: str) -> bool:
            release.wait(30)
            return True

    db = Database(fresh_db)
    try:
        first = check_health(context.settings, db, HangingStore)  # type: ignore[arg-type]
        second = check_health(context.settings, db, HangingStore)  # type: ignore[arg-type]
    finally:
        release.set()
        db.close()
        context.close()
    storage = {c.name: c for c in first.components}["storage"]
    assert first.failing == ["storage"] and storage.error == "no answer within 0.5 s"
    again = {c.name: c for c in second.components}["storage"]
    assert again.error is not None and "earlier check has not answered yet" in again.error
