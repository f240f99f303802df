"""The embedded stack: PostgreSQL (own cluster or an existing server), schema, storage containers."""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from core.settings import DatabaseSettings, Settings
from devstack.errors import StackError
from devstack.postgres import Cluster, ensure_postgis, ensure_server, find_bindir, server_dir
from infrastructure.db.database import connect
from infrastructure.db.setup import setup_database


def is_embedded(settings: DatabaseSettings) -> bool:
    """No PGHOST: the private cluster (on PGPORT, default 54329); with PGHOST: an existing server."""
    return settings.embedded


def embedded_cluster(settings: Settings) -> Cluster:
    stack = settings.stack
    return Cluster(
        server_dir(stack.local_stack_dir / "postgres"), settings.database.pgport, ensure_server(stack.pg_bindir)
    )


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
        # libpq reports this at connection time without a SQLSTATE: match its words for this database only
        if f'database "{settings.pgdatabase}" does not exist' not in str(exc):
            raise
    admin = DatabaseSettings(**{**settings.model_dump(), "pgdatabase": "postgres"})
    with connect(admin, autocommit=True) as conn, contextlib.suppress(psycopg.errors.DuplicateDatabase):
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.pgdatabase)))


def start_postgres(settings: Settings) -> bool:
    """Initialise and start the private cluster when it is the configured one; True if this call started it."""
    if not is_embedded(settings.database):
        return False
    cluster = embedded_cluster(settings)
    ensure_postgis(cluster.bindir)
    cluster.init()
    return cluster.start()


def ensure_containers(settings: Settings) -> None:
    from infrastructure.storage import create_blob_store

    with create_blob_store(settings.storage, settings.app.managed_identity_client_id) as store:
        for container in settings.storage.containers:
            store.ensure_container(container)


def up(settings: Settings) -> StackState:
    """Everything ``make run`` and ``make test`` need, idempotently."""
    started_at = time.perf_counter()
    started = start_postgres(settings)
    try:
        ensure_database(settings.database)
        result = setup_database(settings.database)
        ensure_containers(settings)
    except BaseException:  # Ctrl-C during set-up too: stop what this call started
        if started:
            embedded_cluster(settings).stop()
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
        raise StackError("PGHOST points at an existing server; the project does not stop it")
    embedded_cluster(settings).stop()


def destroy(settings: Settings) -> list[Path]:
    """Stop the private cluster and delete its data, and the /var/tmp folders it may use; the paths removed."""
    if not is_embedded(settings.database):
        raise StackError("PGHOST points at an existing server; the project does not delete its data")
    removed: list[Path] = []
    for name in ("postgres", "test-servers"):
        link = settings.stack.local_stack_dir / name
        target = link.resolve() if link.is_symlink() else link
        if name == "postgres" and (target / "PG_VERSION").exists():
            Cluster(target, settings.database.pgport, find_bindir(settings.stack.pg_bindir)).stop()
        if link.is_symlink():
            link.unlink()
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
            removed.append(target)
        if target.parent.name.startswith("geoetl-") and target.parent.parent == Path("/var/tmp"):
            with contextlib.suppress(OSError):
                target.parent.rmdir()  # only when both of its folders are gone
    return removed
