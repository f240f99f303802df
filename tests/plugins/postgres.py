"""Real PostgreSQL for the tests: a template database built once, cloned per test.

The template (migrations + pgstac) is rebuilt only when the migrations or the
pgstac version change, so a second ``make test`` starts quickly. Each test
that asks for ``fresh_db`` gets its own database, dropped afterwards.
"""

from __future__ import annotations

import hashlib
import os
import signal
import uuid
from collections.abc import Iterator

import pytest
from psycopg import sql

from core.settings import DatabaseSettings, Settings, StackSettings
from devstack.postgres import Cluster, find_bindir
from devstack.stack import destroy, embedded_cluster, ensure_database, start_postgres
from infrastructure.db.database import connect
from infrastructure.db.migrations import load_migrations
from infrastructure.db.setup import setup_database
from tests.helpers.scratch import server_scratch_dir
from tests.helpers.servers import free_port

TEMPLATE = "geoetl_test_template"


def _with_db(settings: DatabaseSettings, name: str) -> DatabaseSettings:
    return DatabaseSettings(**{**settings.model_dump(), "pgdatabase": name})


def _fingerprint() -> str:
    import pypgstac

    digest = hashlib.sha256(pypgstac.__version__.encode())
    for migration in load_migrations():
        digest.update(migration.checksum.encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[DatabaseSettings]:
    """The server the tests use: the private cluster (started if needed, stopped again if this
    session started it) or the existing server PGHOST names."""
    settings = Settings()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a cancelled run still stops what it started
    started = start_postgres(settings)
    try:
        ensure_database(settings.database)
        yield settings.database
    finally:
        if started:
            embedded_cluster(settings).stop()
            if os.environ.get("CI") == "true" and (settings.stack.local_stack_dir / "postgres").is_symlink():
                destroy(settings)  # a CI clone's cluster under /var/tmp would outlive the clone
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@pytest.fixture
def throwaway_cluster() -> Iterator[Cluster]:
    """An initialised, stopped PostgreSQL cluster of its own on a free port, removed afterwards."""
    with server_scratch_dir("cluster-") as base:
        cluster = Cluster(base / "data", free_port(), find_bindir(StackSettings().pg_bindir))
        try:
            cluster.init()
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def template_db(pg_server: DatabaseSettings) -> str:
    admin = _with_db(pg_server, "postgres")
    wanted = _fingerprint()
    with connect(admin, autocommit=True) as lock:  # concurrent sessions: one rebuilds, the others wait
        lock.execute("SELECT pg_advisory_lock(hashtext(%s))", (TEMPLATE,))
        with connect(admin, autocommit=True) as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (TEMPLATE,)
            ).fetchone()
            if row is not None and row[0] == wanted:
                return TEMPLATE
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
        setup_database(_with_db(pg_server, TEMPLATE))
        with connect(admin, autocommit=True) as conn:
            comment = sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(TEMPLATE), sql.Literal(wanted))
            conn.execute(comment)
    return TEMPLATE


def create_database(server: DatabaseSettings, template: str | None) -> DatabaseSettings:
    name = f"geoetl_test_{uuid.uuid4().hex[:10]}"
    with connect(_with_db(server, "postgres"), autocommit=True) as conn:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        conn.execute(query)
    return _with_db(server, name)


def drop_database(server: DatabaseSettings, name: str) -> None:
    with connect(_with_db(server, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def fresh_db(pg_server: DatabaseSettings, template_db: str) -> Iterator[DatabaseSettings]:
    """A new database with migrations and pgstac applied, dropped after the test."""
    settings = create_database(pg_server, template_db)
    yield settings
    drop_database(pg_server, settings.pgdatabase)


@pytest.fixture
def empty_db(pg_server: DatabaseSettings) -> Iterator[DatabaseSettings]:
    """A new, empty database (no extensions, no schema), dropped after the test."""
    settings = create_database(pg_server, None)
    yield settings
    drop_database(pg_server, settings.pgdatabase)
