"""Bring a database up to date: the project's migrations, then pgstac."""

from __future__ import annotations

import atexit
import logging
from dataclasses import dataclass

from psycopg.conninfo import make_conninfo

from core.settings import DatabaseSettings
from infrastructure.db.database import TokenProvider, connect, connection_kwargs
from infrastructure.db.migrations import apply_migrations

log = logging.getLogger(__name__)
_SETUP_LOCK = "geoetl.setup"  # a session lock: set-up runs on a direct connection, never through PgBouncer


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
    """Apply migrations and install pgstac over a direct connection, one set-up at a time; safe to run again."""
    direct = settings.for_schema_changes()
    with connect(direct, token_provider, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (_SETUP_LOCK,))
        try:
            applied = apply_migrations(conn)
            version = install_pgstac(direct, token_provider)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_SETUP_LOCK,))
    log.info("database ready", extra={"migrations_applied": applied, "pgstac": version})
    return SetupResult(applied, version)
