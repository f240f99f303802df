"""Bring a database up to date: the project's migrations, then pgstac."""

from __future__ import annotations

import atexit
import logging
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import make_conninfo

from core.settings import DatabaseSettings
from infrastructure.db.database import TokenProvider, connect, connection_kwargs, translate
from infrastructure.db.migrations import apply_migrations

log = logging.getLogger(__name__)
_SETUP_LOCK = "geoetl.setup"
_SETUP_LOCK_WAIT_S = 300


@dataclass(frozen=True)
class SetupResult:
    migrations_applied: list[int]
    pgstac_version: str


def dsn(settings: DatabaseSettings, token_provider: TokenProvider | None = None) -> str:
    """A libpq connection string for tools that want one (pypgstac)."""
    kwargs = connection_kwargs(settings, token_provider)
    kwargs.pop("prepare_threshold", None)
    return make_conninfo("", **{k: v for k, v in kwargs.items() if v is not None})


def install_pgstac(settings: DatabaseSettings, token_provider: TokenProvider | None = None) -> str:
    """Install or upgrade pgstac with ``pypgstac migrate`` (idempotent); returns the version.

    pypgstac sets session state (search_path), so ``settings`` must reach the server directly.
    """
    from pypgstac.db import PgstacDB
    from pypgstac.migrate import Migrate

    db = PgstacDB(dsn=dsn(settings, token_provider))
    try:
        return str(Migrate(db).run_migration())
    finally:
        db.disconnect()
        db.close()
        atexit.unregister(
            db.disconnect
        )  # pypgstac registers one per connect; a long-lived worker must not pile them up


def setup_database(settings: DatabaseSettings, token_provider: TokenProvider | None = None) -> SetupResult:
    """Apply migrations and install pgstac over a direct connection, one set-up at a time; safe to run again.

    The set-up lock is a transaction lock held open on a connection of its own, so it is released
    whatever happens to this process, and waiting for it is bounded by ``lock_timeout``.
    """
    direct = settings.for_schema_changes()
    try:
        with connect(direct, token_provider) as lock_conn:
            lock_conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{_SETUP_LOCK_WAIT_S}s",))
            lock_conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_SETUP_LOCK,))
            with connect(direct, token_provider, autocommit=True) as conn:
                applied = apply_migrations(conn)
            version = install_pgstac(direct, token_provider)
            lock_conn.rollback()
    except psycopg.Error as exc:
        translated = translate(exc, direct)
        if translated is None:
            raise
        raise translated from exc
    log.info("database ready", extra={"migrations_applied": applied, "pgstac": version})
    return SetupResult(applied, version)
