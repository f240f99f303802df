"""Numbered schema migrations from ``sql/migrations``, applied idempotently.

Each file is ``NNNN_name.sql``. Each pending migration is applied in its own
transaction, under a transaction-scoped advisory lock (so several instances can
start at once), and recorded with its checksum in ``geoetl.schema_migrations``.
A migration edited after it was applied is an error, never silently re-run.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from core.errors import Conflict
from core.settings import PROJECT_ROOT

MIGRATIONS_DIR = PROJECT_ROOT / "sql" / "migrations"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = "geoetl.schema_migrations"

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS geoetl;
CREATE TABLE IF NOT EXISTS geoetl.schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


class MigrationError(Conflict):
    """The database schema cannot be migrated: the migrations on disk disagree with the database."""

    code = "migration_error"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in version order; a badly named file or a duplicate version is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"migration file name {path.name!r} does not match NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations share version {version:04d}")
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


def apply_migrations(conn: psycopg.Connection[Any], directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply pending migrations on ``conn``, each in its own transaction; returns the versions applied.

    Every transaction takes the advisory lock first and re-reads what is applied, so concurrent
    runners apply each migration once. A failing migration rolls back alone; earlier ones stay.
    """
    migrations = load_migrations(directory)
    with conn.transaction():
        _lock(conn)
        conn.execute(_BOOTSTRAP)
        _check_applied(migrations, _applied_checksums(conn))
    done: list[int] = []
    for migration in migrations:
        with conn.transaction():
            _lock(conn)
            if migration.version in _applied_checksums(conn):
                continue
            _apply(conn, migration)
        done.append(migration.version)
    return done


def redeploy(conn: psycopg.Connection[Any], directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Recreate the orchestration schema from the migrations (destroys job history).

    The old schema is renamed aside, the migrations are applied one transaction each (as
    always, so an enum value added by one is usable by the next), and only then is the old
    schema dropped; if a migration fails, the new schema is dropped and the old one restored.
    """
    aside = f"geoetl_before_redeploy_{uuid.uuid4().hex[:8]}"
    with conn.transaction():
        _lock(conn)
        exists = conn.execute("SELECT to_regnamespace('geoetl') IS NOT NULL").fetchone()
        if exists and exists[0]:
            conn.execute(sql.SQL("ALTER SCHEMA geoetl RENAME TO {}").format(sql.Identifier(aside)))
    try:
        applied = apply_migrations(conn, directory)
    except BaseException:
        with conn.transaction():
            _lock(conn)
            conn.execute("DROP SCHEMA IF EXISTS geoetl CASCADE")
            conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO geoetl").format(sql.Identifier(aside)))
        raise
    with conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(aside)))
    return applied


def _lock(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK_KEY,))


def _applied_checksums(conn: psycopg.Connection[Any]) -> dict[int, str]:
    cur = conn.cursor(row_factory=tuple_row)
    return dict(cur.execute("SELECT version, checksum FROM geoetl.schema_migrations").fetchall())


def _check_applied(migrations: list[Migration], applied: dict[int, str]) -> None:
    for migration in migrations:
        if migration.version in applied and applied[migration.version] != migration.checksum:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} was changed after it was applied; "
                "add a new migration instead of editing an applied one",
                version=migration.version,
            )


def _apply(conn: psycopg.Connection[Any], migration: Migration) -> None:
    conn.execute(migration.sql.encode())
    conn.execute(
        "INSERT INTO geoetl.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
        (migration.version, migration.name, migration.checksum),
    )


def applied_versions(conn: psycopg.Connection[Any]) -> list[int]:
    """Versions recorded as applied (empty when the table does not exist yet)."""
    cur = conn.cursor(row_factory=tuple_row)
    row = cur.execute("SELECT to_regclass('geoetl.schema_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return []
    return [r[0] for r in cur.execute("SELECT version FROM geoetl.schema_migrations ORDER BY version")]
