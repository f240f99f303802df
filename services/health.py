"""Health of every component the platform needs, each checked for real, timed and time-bounded."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from core import __version__
from core.errors import GeoetlError
from core.settings import Settings
from infrastructure.db.database import Database
from infrastructure.db.dead_letters import count_recent
from infrastructure.db.introspection import DatabaseFacts, database_facts
from infrastructure.db.jobs.queries import JobQueries
from infrastructure.db.migrations import load_migrations
from infrastructure.queues.postgres import PostgresQueue
from infrastructure.storage import BlobStore

log = logging.getLogger(__name__)
Status = Literal["ok", "error"]
Check = Callable[[], tuple[str | None, dict[str, Any]]]


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


class HealthProblem(Exception):
    """A component is unhealthy; the message is written for the operator and shown as is."""


def _message(exc: BaseException) -> str:
    """What the report may show: our own messages only, never an arbitrary exception's text."""
    if isinstance(exc, GeoetlError):
        return exc.message
    if isinstance(exc, HealthProblem):
        return str(exc)
    log.error("health check failed unexpectedly", exc_info=exc)
    return f"unexpected error ({type(exc).__name__}); see the log"


_in_flight: dict[str, threading.Thread] = {}
_in_flight_lock = threading.Lock()


def _run_bounded(name: str, check: Check, deadline_s: float) -> tuple[str | None, dict[str, Any]]:
    """Run ``check`` on a daemon thread and give up waiting after ``deadline_s``.

    A check that is still running from an earlier request is reported at once instead of
    starting another one, so a hung dependency cannot pile up threads.
    """
    with _in_flight_lock:
        previous = _in_flight.get(name)
        if previous is not None and previous.is_alive():
            raise HealthProblem(f"an earlier check has not answered yet (limit {deadline_s:g} s)")
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["value"] = check()
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=target, name=f"health-{name}", daemon=True)
        _in_flight[name] = thread
        thread.start()
    thread.join(deadline_s)
    if thread.is_alive():
        raise HealthProblem(f"no answer within {deadline_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    result: tuple[str | None, dict[str, Any]] = outcome["value"]
    return result


def _timed(name: str, check: Check, deadline_s: float | None = None) -> ComponentHealth:
    """Run ``check`` (bounded by ``deadline_s`` when given) and report its outcome and duration."""
    started = time.perf_counter()
    try:
        version, details = check() if deadline_s is None else _run_bounded(name, check, deadline_s)
        status: Status = "ok"
        error = None
    except Exception as exc:
        version, details, status, error = None, {}, "error", _message(exc)
    elapsed = round((time.perf_counter() - started) * 1000, 1)
    return ComponentHealth(name=name, status=status, version=version, duration_ms=elapsed, details=details, error=error)


def _database_checks(db: Database, deadline_s: float) -> list[ComponentHealth]:
    facts: list[DatabaseFacts] = []

    def postgresql() -> tuple[str | None, dict[str, Any]]:
        # connection and query each get half the deadline, so a refused or slow database is named
        # with its own message; the thread deadline covers what hangs below that (a half-open socket)
        wait = min(db.settings.pg_connect_timeout, deadline_s / 2)
        with db.transaction(timeout=wait, statement_timeout_ms=int(deadline_s * 500)) as conn:
            facts.append(database_facts(conn))
        return facts[0].server_version, {"database": facts[0].database}

    def postgis() -> tuple[str | None, dict[str, Any]]:
        if not facts[0].postgis:
            raise HealthProblem("the postgis extension is not installed in this database")
        return facts[0].postgis, {}

    def pgstac() -> tuple[str | None, dict[str, Any]]:
        if not facts[0].pgstac:
            raise HealthProblem("pgstac is not installed (run the database set-up: POST /api/db/migrate)")
        return facts[0].pgstac, {}

    def schema() -> tuple[str | None, dict[str, Any]]:
        known = [m.version for m in load_migrations()]
        pending = [v for v in known if v not in facts[0].applied_migrations]
        if pending:
            raise HealthProblem(f"migrations not applied: {pending} (POST /api/db/migrate)")
        return (f"{max(known):04d}" if known else None), {"applied": len(known)}

    results = [_timed("postgresql", postgresql, deadline_s)]
    if results[0].status == "error":
        skipped = "not checked: PostgreSQL is unreachable"
        return results + [
            ComponentHealth(name=n, status="error", error=skipped) for n in ("postgis", "pgstac", "schema")
        ]
    return [*results, _timed("postgis", postgis), _timed("pgstac", pgstac), _timed("schema", schema)]


def _storage_check(store_factory: Callable[[], BlobStore], settings: Settings) -> Check:
    def check() -> tuple[str | None, dict[str, Any]]:
        store = store_factory()
        missing = [c for c in settings.storage.containers if not store.container_exists(c)]
        if missing:
            raise HealthProblem(f"containers missing: {', '.join(missing)}")
        container = settings.app.health_probe_container
        probe = f".geoetl-health/probe-{uuid.uuid4().hex}"
        payload = uuid.uuid4().bytes
        store.write_bytes(container, probe, payload)
        try:
            if store.read_bytes(container, probe) != payload:
                raise HealthProblem("the probe blob read back differently than written")
        finally:
            store.delete(container, probe)
        containers = list(settings.storage.containers)
        return None, {"backend": store.backend, "containers": containers, "probe": "write/read/delete"}

    return check


def _work_in_progress(db: Database, settings: Settings) -> dict[str, Any]:
    """What waits and what is stuck: active jobs, queue depths (postgres), dead letters of the last day."""
    details: dict[str, Any] = {
        "jobs": JobQueries(db).active_jobs(),
        "dead_letters_24h": count_recent(db, 24),
    }
    if settings.queue.queue_backend == "postgres":
        details["depth"] = PostgresQueue(db, settings.queue).stats()
    return details


def _queue_check(settings: Settings, db: Database, database_ok: bool, schema_ok: bool) -> Check:
    def check() -> tuple[str | None, dict[str, Any]]:
        backend = settings.queue.queue_backend
        details: dict[str, Any] = {
            "backend": backend,
            "queues": [settings.queue.jobs_queue_name, settings.queue.tasks_queue_name],
        }
        if database_ok and schema_ok:  # (a missing schema is the schema component's error)
            try:
                details |= _work_in_progress(db, settings)
            except Exception as exc:  # informational: never what makes the queue unhealthy
                details["work_in_progress_error"] = _message(exc)
        if backend == "postgres":
            if not database_ok:
                raise HealthProblem("the postgres queue lives in the database, which is unreachable")
            return None, details | {"checked": "database reachable"}
        if not (settings.queue.servicebus_connection or settings.queue.servicebus_namespace):
            raise HealthProblem(
                "QUEUE_BACKEND=servicebus but neither ServiceBusConnection nor "
                "ServiceBusConnection__fullyQualifiedNamespace is set"
            )
        return None, details | {"checked": "configuration only"}

    return check


def _gdal() -> tuple[str | None, dict[str, Any]]:
    import rasterio

    return str(rasterio.__gdal_version__), {"rasterio": rasterio.__version__}


def check_health(settings: Settings, db: Database, store_factory: Callable[[], BlobStore]) -> HealthReport:
    """Check every component; the report is unhealthy when any one fails."""
    deadline = settings.app.health_timeout_seconds
    components = _database_checks(db, deadline)
    ok = {c.name: c.status == "ok" for c in components}
    components += [
        _timed("storage", _storage_check(store_factory, settings), deadline),
        _timed("queue", _queue_check(settings, db, ok["postgresql"], ok.get("schema", False)), deadline),
        _timed("gdal", _gdal),
    ]
    failing = [c.name for c in components if c.status == "error"]
    return HealthReport(
        status="unhealthy" if failing else "healthy",
        app_version=__version__,
        checked_at=datetime.now(UTC),
        failing=failing,
        components=components,
    )
