"""Read-only facts about the database: versions of the server, PostGIS and pgstac, applied migrations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from infrastructure.db.migrations import applied_versions

_FACTS = """
SELECT current_setting('server_version') AS server_version,
       current_database() AS database,
       (SELECT extversion FROM pg_extension WHERE extname = 'postgis') AS postgis,
       to_regprocedure('pgstac.get_version()') IS NOT NULL AS has_pgstac
"""


@dataclass(frozen=True)
class DatabaseFacts:
    server_version: str
    database: str
    postgis: str | None
    pgstac: str | None
    applied_migrations: tuple[int, ...]


def database_facts(conn: psycopg.Connection[Any]) -> DatabaseFacts:
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    row = cur.execute(_FACTS).fetchone()
    assert row is not None
    pgstac = None
    if row["has_pgstac"]:
        version = cur.execute("SELECT pgstac.get_version() AS v").fetchone()
        pgstac = str(version["v"]) if version else None
    return DatabaseFacts(
        server_version=str(row["server_version"]),
        database=str(row["database"]),
        postgis=row["postgis"],
        pgstac=pgstac,
        applied_migrations=tuple(applied_versions(conn)),
    )
