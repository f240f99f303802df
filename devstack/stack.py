"""The embedded stack: PostgreSQL (own cluster or an existing server), schema, storage containers."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from core.settings import PROJECT_ROOT, DatabaseSettings, Settings
from devstack.postgres import Cluster, StackError, ensure_postgis, find_bindir, server_dir
from infrastructure.db.database import connect
from infrastructure.db.setup import setup_database

LOCAL_DIR = PROJECT_ROOT / ".local"
EMBEDDED_PORT = 54329


def is_embedded(settings: DatabaseSettings) -> bool:
    """The private cluster serves 127.0.0.1:54329; any other PGHOST/PGPORT is an existing server."""
    return settings.pghost in ("127.0.0.1", "localhost") and settings.pgport == EMBEDDED_PORT


def embedded_cluster() -> Cluster:
    return Cluster(server_dir(LOCAL_DIR / "postgres"), EMBEDDED_PORT, find_bindir())


@dataclass
class StackState:
    embedded: bool
    started_postgres: bool
    migrations_applied: list[int]
    pgstac_version: str
    seconds: float


def ensure_database(settings: DatabaseSettings) -> None:
    """Create the database when the server has none of that name (needs CREATEDB)."""
    try:
        connect(settings).close()
        return
    except Exception as exc:
        if "does not exist" not in str(exc):
            raise
    admin = DatabaseSettings(**{**settings.model_dump(), "pgdatabase": "postgres"})
    with connect(admin, autocommit=True) as conn, contextlib.suppress(psycopg.errors.DuplicateDatabase):
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.pgdatabase)))


def start_postgres(settings: DatabaseSettings) -> bool:
    """Initialise and start the private cluster when it is the configured one; True if this call started it."""
    if not is_embedded(settings):
        return False
    cluster = embedded_cluster()
    ensure_postgis(cluster.bindir)
    cluster.init()
    return cluster.start()


def ensure_containers(settings: Settings) -> None:
    from infrastructure.storage import create_blob_store

    store = create_blob_store(settings.storage, settings.app.managed_identity_client_id)
    for container in settings.storage.containers:
        store.ensure_container(container)


def up(settings: Settings) -> StackState:
    """Everything ``make run`` and ``make test`` need, idempotently."""
    started_at = time.perf_counter()
    started = start_postgres(settings.database)
    try:
        ensure_database(settings.database)
        result = setup_database(settings.database)
        ensure_containers(settings)
    except Exception:
        if started:
            embedded_cluster().stop()
        raise
    return StackState(
        is_embedded(settings.database),
        started,
        result.migrations_applied,
        result.pgstac_version,
        time.perf_counter() - started_at,
    )


def down(settings: Settings) -> None:
    if not is_embedded(settings.database):
        raise StackError("PGHOST/PGPORT point at an existing server; the project does not stop it")
    embedded_cluster().stop()
