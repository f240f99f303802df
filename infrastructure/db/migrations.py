"""Numbered schema migrations from ``sql/migrations``, applied idempotently.

Each file is ``NNNN_name.sql``. All pending migrations are applied in one
transaction, under a transaction-scoped advisory lock (so several instances can
start at once, and it works behind PgBouncer), and recorded with their checksum
in ``geoetl.schema_migrations``. A migration edited after it was applied is an
error, never silently re-run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from core.errors import GeoetlError
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


class MigrationError(GeoetlError):
    """The database schema cannot be migrated."""

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
    """Apply pending migrations on ``conn`` in one transaction; returns the versions applied."""
    migrations = load_migrations(directory)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK_KEY,))
        conn.execute(_BOOTSTRAP)
        cur = conn.cursor(row_factory=tuple_row)
        applied: dict[int, str] = dict(cur.execute("SELECT version, checksum FROM geoetl.schema_migrations").fetchall())
        done: list[int] = []
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was changed after it was applied; "
                        "add a new migration instead of editing an applied one",
                        version=migration.version,
                    )
                continue
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO geoetl.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            done.append(migration.version)
    return done


def applied_versions(conn: psycopg.Connection[Any]) -> list[int]:
    """Versions recorded as applied (empty when the table does not exist yet)."""
    cur = conn.cursor(row_factory=tuple_row)
    row = cur.execute("SELECT to_regclass('geoetl.schema_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return []
    return [r[0] for r in cur.execute("SELECT version FROM geoetl.schema_migrations ORDER BY version")]


def redeploy(conn: psycopg.Connection[Any], directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Drop the orchestration schema and apply every migration again (destroys job history)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK_KEY,))
        conn.execute("DROP SCHEMA IF EXISTS geoetl CASCADE")
    return apply_migrations(conn, directory)
