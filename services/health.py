"""Health of every component the platform needs, each checked for real and timed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from core import __version__
from core.settings import Settings
from infrastructure.db.database import Database
from infrastructure.db.migrations import applied_versions, load_migrations
from infrastructure.storage import BlobStore

Status = Literal["ok", "error"]


class ComponentHealth(BaseModel):
    name: str = Field(description="Component: postgresql, postgis, pgstac, schema, storage, queue, gdal")
    status: Status
    version: str | None = None
    duration_ms: float = 0.0
    details: dict[str, Any] = Field(default_factory=dict)
    error: str | None = Field(None, description="Why the component is not healthy")


class HealthReport(BaseModel):
    status: Literal["healthy", "unhealthy"]
    app_version: str
    checked_at: datetime
    failing: list[str] = Field(default_factory=list, description="Names of the failing components")
    components: list[ComponentHealth]


def _timed(name: str, check: Callable[[], tuple[str | None, dict[str, Any]]]) -> ComponentHealth:
    started = time.perf_counter()
    try:
        version, details = check()
        status: Status = "ok"
        error = None
    except Exception as exc:
        version, details, status = None, {}, "error"
        error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    elapsed = round((time.perf_counter() - started) * 1000, 1)
    return ComponentHealth(name=name, status=status, version=version, duration_ms=elapsed, details=details, error=error)


def _database_checks(db: Database, timeout: float) -> list[ComponentHealth]:
    facts: dict[str, Any] = {}

    def postgresql() -> tuple[str | None, dict[str, Any]]:
        with db.connection(timeout=timeout) as conn:
            row = conn.execute(
                "SELECT current_setting('server_version') AS v, current_database() AS db,"
                " (SELECT extversion FROM pg_extension WHERE extname = 'postgis') AS postgis,"
                " to_regprocedure('pgstac.get_version()') IS NOT NULL AS has_pgstac"
            ).fetchone()
            assert row is not None
            facts.update(row)
            if row["has_pgstac"]:
                facts["pgstac"] = conn.execute("SELECT pgstac.get_version() AS v").fetchone()["v"]  # type: ignore[index]
            facts["applied"] = applied_versions(conn)
        return str(row["v"]), {"database": row["db"]}

    def postgis() -> tuple[str | None, dict[str, Any]]:
        if not facts.get("postgis"):
            raise RuntimeError("the postgis extension is not installed in this database")
        return str(facts["postgis"]), {}

    def pgstac() -> tuple[str | None, dict[str, Any]]:
        if not facts.get("pgstac"):
            raise RuntimeError("pgstac is not installed (run the database set-up: pypgstac migrate)")
        return str(facts["pgstac"]), {}

    def schema() -> tuple[str | None, dict[str, Any]]:
        known = [m.version for m in load_migrations()]
        pending = [v for v in known if v not in facts.get("applied", [])]
        if pending:
            raise RuntimeError(f"migrations not applied: {pending}")
        return f"{max(known):04d}" if known else None, {"applied": len(known)}

    results = [_timed("postgresql", postgresql)]
    if results[0].status == "error":
        skipped = "not checked: PostgreSQL is unreachable"
        return results + [
            ComponentHealth(name=n, status="error", error=skipped) for n in ("postgis", "pgstac", "schema")
        ]
    return [*results, _timed("postgis", postgis), _timed("pgstac", pgstac), _timed("schema", schema)]


def _storage_check(store: BlobStore, settings: Settings) -> ComponentHealth:
    def check() -> tuple[str | None, dict[str, Any]]:
        missing = [c for c in settings.storage.containers if not store.container_exists(c)]
        if missing:
            raise RuntimeError(f"containers missing: {', '.join(missing)}")
        container = settings.app.health_probe_container
        probe = f".geoetl-health/probe-{uuid.uuid4().hex}"
        payload = uuid.uuid4().bytes
        store.write_bytes(container, probe, payload)
        try:
            if store.read_bytes(container, probe) != payload:
                raise RuntimeError("probe blob read back differently than written")
        finally:
            store.delete(container, probe)
        return None, {
            "backend": store.backend,
            "containers": list(settings.storage.containers),
            "probe": "write/read/delete",
        }

    return _timed("storage", check)


def _queue_check(settings: Settings, database_ok: bool) -> ComponentHealth:
    def check() -> tuple[str | None, dict[str, Any]]:
        backend = settings.queue.queue_backend
        queues = [settings.queue.jobs_queue_name, settings.queue.tasks_queue_name]
        if backend == "postgres" and not database_ok:
            raise RuntimeError("the postgres queue needs the database, which is unreachable")
        if backend == "servicebus" and not (
            settings.queue.servicebus_connection or settings.queue.servicebus_namespace
        ):
            raise RuntimeError(
                "QUEUE_BACKEND=servicebus but neither ServiceBusConnection nor "
                "ServiceBusConnection__fullyQualifiedNamespace is set"
            )
        return None, {"backend": backend, "queues": queues}

    return _timed("queue", check)


def _gdal_check() -> ComponentHealth:
    def check() -> tuple[str | None, dict[str, Any]]:
        import rasterio

        return str(rasterio.__gdal_version__), {"rasterio": rasterio.__version__}

    return _timed("gdal", check)


def check_health(
    settings: Settings, db: Database, store_factory: Callable[[], BlobStore], timeout: float = 3.0
) -> HealthReport:
    """Check every component; the report is unhealthy when any one fails."""
    components = _database_checks(db, timeout)
    try:
        storage = _storage_check(store_factory(), settings)
    except Exception as exc:
        storage = ComponentHealth(name="storage", status="error", error=getattr(exc, "message", str(exc)))
    components += [storage, _queue_check(settings, components[0].status == "ok"), _gdal_check()]
    failing = [c.name for c in components if c.status == "error"]
    return HealthReport(
        status="unhealthy" if failing else "healthy",
        app_version=__version__,
        checked_at=datetime.now(UTC),
        failing=failing,
        components=components,
    )
