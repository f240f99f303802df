"""H3 grid tables in PostGIS (schema ``h3``): create, load with COPY (idempotent per split cell), index.

A table belongs to the job that made it (its comment records the job id). ``prepare_table`` creates
it under a transaction-scoped exclusive advisory lock on the table's name; every load and the
finish take the same lock shared and check the comment first, so a task of a job whose table was
meanwhile replaced by another job (``replace=true``) fails permanently instead of writing into the
other job's table. Each task loads the cells under one or more *split cells* (a coarser ancestor):
in one transaction it deletes the rows of those split cells and copies them again, so a retried
task replaces rather than adds. With a bbox, the cells are filtered in Python before the COPY
(planar intersection in lon/lat, as ``ST_Intersects``); with a boundary table, the rows just copied
that intersect none of its geometries are deleted again in the same transaction. The load tasks
run no DDL (only the single prepare and finish tasks do).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from core.errors import Conflict, InvalidInput
from services.h3.cells import BBox, copy_text, rows_for

SCHEMA = "h3"
COMMENT_PREFIX = "geoetl h3 grid; job "
COLUMNS = ("h3_index", "h3_int", "resolution", "parent_index", "split_cell", "geom")
_TABLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def validate_table_name(name: str, field: str = "table") -> str:
    """A table name for the ``h3`` schema: lower-case letters, digits and _, at most 48 characters."""
    if not isinstance(name, str) or not _TABLE_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid table name {name!r}: use lower-case letters, digits and _ "
            "(at most 48, not starting with a digit)",
            field=field,
        )
    return name


@dataclass(frozen=True)
class Boundary:
    """A PostGIS table whose geometries limit a grid."""

    schema: str
    table: str
    column: str
    srid: int

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"


def parse_table_reference(value: str, field: str = "boundary_table") -> tuple[str, str]:
    """``schema.table`` (or ``table`` in schema ``geo``), each part a plain SQL identifier."""
    parts = value.split(".") if isinstance(value, str) else []
    if len(parts) == 1:
        parts = ["geo", parts[0]]
    if len(parts) != 2 or not all(_IDENT_RE.fullmatch(p) for p in parts):
        raise InvalidInput(
            f"invalid table reference {value!r}: use schema.table with letters, digits and _", field=field
        )
    return parts[0], parts[1]


def find_boundary(conn: psycopg.Connection[Any], value: str, field: str = "boundary_table") -> Boundary:
    """The table's geometry column and SRID; InvalidInput (naming the table and what is wrong) when the table is
    missing or has no geometry column or no SRID."""
    schema, table = parse_table_reference(value, field)
    rows = conn.execute(
        "SELECT f_geometry_column AS col, srid FROM public.geometry_columns "
        "WHERE f_table_schema = %s AND f_table_name = %s ORDER BY f_geometry_column",
        (schema, table),
    ).fetchall()
    if not rows:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (f'"{schema}"."{table}"',)).fetchone()
        if exists is None or not _get(exists, "ok", 0):
            raise InvalidInput(
                f"{field} {schema}.{table} does not exist: load it first (e.g. with ingest_vector)", field=field
            )
        raise InvalidInput(f"{field} {schema}.{table} has no geometry column", field=field)
    col, srid = _get(rows[0], "col", 0), int(_get(rows[0], "srid", 1))
    if srid <= 0:
        raise InvalidInput(f"{field} {schema}.{table} has no SRID on column {col}: set one (e.g. 4326)", field=field)
    return Boundary(schema, table, col, srid)


def _get(row: Any, key: str, index: int) -> Any:
    return row[key] if isinstance(row, dict) else row[index]


def _boundary_geom(boundary: Boundary, alias: str = "b") -> sql.Composable:
    column = sql.SQL(".").join([sql.Identifier(alias), sql.Identifier(boundary.column)])
    if boundary.srid == 4326:
        return column
    return sql.SQL("ST_Transform({}, 4326)").format(column)


def boundary_area_m2(conn: psycopg.Connection[Any], boundary: Boundary) -> float:
    """The boundary table's total area on the ellipsoid (overlaps counted twice: an upper bound)."""
    query = sql.SQL("SELECT coalesce(sum(ST_Area({geom}::geography)), 0) AS area FROM {table} b").format(
        geom=_boundary_geom(boundary), table=sql.Identifier(boundary.schema, boundary.table)
    )
    row = conn.execute(query).fetchone()
    return float(_get(row, "area", 0)) if row is not None else 0.0


def boundary_extent(conn: psycopg.Connection[Any], boundary: Boundary) -> BBox | None:
    """The boundary table's extent in lon/lat, None when it has no geometries."""
    query = sql.SQL(
        "SELECT ST_XMin(e) AS w, ST_YMin(e) AS s, ST_XMax(e) AS e, ST_YMax(e) AS n "
        "FROM (SELECT ST_Extent({geom}) AS e FROM {table} b) x"
    ).format(geom=_boundary_geom(boundary), table=sql.Identifier(boundary.schema, boundary.table))
    row = conn.execute(query).fetchone()
    if row is None or _get(row, "w", 0) is None:
        return None
    w, s, e, n = (float(_get(row, k, i)) for i, k in enumerate(("w", "s", "e", "n")))
    w, e = max(w, -180.0), min(e, 180.0)
    s, n = max(s, -90.0), min(n, 90.0)
    if e <= w:
        e = min(180.0, w + 1e-7)
        w = e - 1e-7
    if n <= s:
        n = min(90.0, s + 1e-7)
        s = n - 1e-7
    return BBox(w, s, e, n)


# -- the grid table -------------------------------------------------------------------------------------


def _table(name: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, validate_table_name(name))


def prepare_table(conn: psycopg.Connection[Any], name: str, job_id: str, replace: bool) -> str:
    """Create ``h3.<name>`` for this job (inside the caller's transaction); returns 'created' / 'kept' / 'replaced'.

    An existing table made by this job is kept (a retried or resubmitted job); one made by another
    geoetl H3 job is replaced only with ``replace``; any other table is never touched.
    """
    table = _table(name)
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"geoetl.h3.{name}",))
    row = conn.execute(
        "SELECT c.oid IS NOT NULL AS present, obj_description(c.oid, 'pg_class') AS note "
        "FROM (SELECT to_regclass(%s) AS oid) c",
        (f'{SCHEMA}."{name}"',),
    ).fetchone()
    present, note = (_get(row, "present", 0), _get(row, "note", 1)) if row is not None else (False, None)
    outcome = "created"
    if present:
        ours = note == f"{COMMENT_PREFIX}{job_id}"
        if ours:
            return "kept"
        if not (note or "").startswith(COMMENT_PREFIX):
            raise Conflict(f"table {SCHEMA}.{name} exists and is not an H3 grid made by geoetl: choose another table")
        if not replace:
            raise Conflict(
                f"table {SCHEMA}.{name} already holds an H3 grid made by another job: pass replace=true or choose "
                "another table"
            )
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
        outcome = "replaced"
    conn.execute(
        sql.SQL(
            "CREATE TABLE {table} ("
            " h3_index text PRIMARY KEY,"
            " h3_int bigint NOT NULL,"
            " resolution smallint NOT NULL CHECK (resolution BETWEEN 0 AND 15),"
            " parent_index text,"
            " split_cell text NOT NULL,"
            " geom public.geometry(MultiPolygon, 4326) NOT NULL)"
        ).format(table=table)
    )
    conn.execute(sql.SQL("CREATE INDEX {} ON {} (split_cell)").format(sql.Identifier(f"{name}_split_idx"), table))
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(f"{COMMENT_PREFIX}{job_id}")))
    return outcome


def _copy(conn: psycopg.Connection[Any], target: sql.Composable, lines: Iterable[bytes]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(target, sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))
    with conn.cursor().copy(statement) as copy:
        buffer: list[bytes] = []
        size = 0
        for line in lines:
            buffer.append(line)
            size += len(line)
            if size >= 1 << 20:
                copy.write(b"".join(buffer))
                buffer, size = [], 0
        if buffer:
            copy.write(b"".join(buffer))


def check_owner(conn: psycopg.Connection[Any], name: str, job_id: str) -> None:
    """Hold the table's advisory lock (shared, for this transaction) and make sure the table is still this job's.

    Raises ``Conflict`` (permanent) when the table is gone or now belongs to another job."""
    validate_table_name(name)
    conn.execute("SELECT pg_advisory_xact_lock_shared(hashtext(%s))", (f"geoetl.h3.{name}",))
    row = conn.execute(
        "SELECT c.oid IS NOT NULL AS present, obj_description(c.oid, 'pg_class') AS note "
        "FROM (SELECT to_regclass(%s) AS oid) c",
        (f'{SCHEMA}."{name}"',),
    ).fetchone()
    present, note = (_get(row, "present", 0), _get(row, "note", 1)) if row is not None else (False, None)
    if not present:
        raise Conflict(f"table {SCHEMA}.{name} no longer exists: it was dropped while job {job_id} was loading it")
    if note != f"{COMMENT_PREFIX}{job_id}":
        owner = note[len(COMMENT_PREFIX) :] if isinstance(note, str) and note.startswith(COMMENT_PREFIX) else None
        by = f"by job {owner}" if owner else "by something else"
        raise Conflict(
            f"table {SCHEMA}.{name} was replaced {by} while job {job_id} was loading it: this job stops without "
            "touching it (resubmit with replace=true to load it again)",
            table=f"{SCHEMA}.{name}",
        )


def load_cells(
    conn: psycopg.Connection[Any],
    name: str,
    job_id: str,
    split_cells: Sequence[str],
    resolutions: Sequence[int],
    bbox: BBox | None = None,
    boundary: Boundary | None = None,
) -> int:
    """Replace the rows of ``split_cells`` in ``h3.<name>`` (inside the caller's transaction); rows loaded.

    Only rows, no DDL: the bbox is applied in Python before the COPY, the boundary table by a DELETE of
    the copied rows that meet none of its geometries."""
    check_owner(conn, name, job_id)
    table = _table(name)
    cells_list = list(split_cells)
    conn.execute(sql.SQL("DELETE FROM {} WHERE split_cell = ANY(%s)").format(table), (cells_list,))
    _copy(conn, table, (line for cell in cells_list for line in copy_text(rows_for(cell, resolutions, bbox))))
    if boundary is not None:
        conn.execute(
            sql.SQL(
                "DELETE FROM {table} t WHERE t.split_cell = ANY(%s) "
                "AND NOT EXISTS (SELECT 1 FROM {boundary} b WHERE ST_Intersects({geom}, t.geom))"
            ).format(
                table=table, boundary=sql.Identifier(boundary.schema, boundary.table), geom=_boundary_geom(boundary)
            ),
            (cells_list,),
        )
    row = conn.execute(
        sql.SQL("SELECT count(*) AS n FROM {} WHERE split_cell = ANY(%s)").format(table), (cells_list,)
    ).fetchone()
    return int(_get(row, "n", 0)) if row is not None else 0


def finish_table(conn: psycopg.Connection[Any], name: str, job_id: str) -> dict[str, Any]:
    """Index (GiST on geom, h3_int), ANALYZE, and count the rows by resolution (inside the caller's transaction)."""
    check_owner(conn, name, job_id)
    table = _table(name)
    conn.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gist (geom)").format(
            sql.Identifier(f"{name}_geom_idx"), table
        )
    )
    conn.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (h3_int)").format(sql.Identifier(f"{name}_int_idx"), table)
    )
    conn.execute(sql.SQL("ANALYZE {}").format(table))
    rows = conn.execute(
        sql.SQL(
            "SELECT resolution, count(*) AS cells, count(*) FILTER (WHERE ST_NumGeometries(geom) > 1) AS split "
            "FROM {} GROUP BY resolution ORDER BY resolution"
        ).format(table)
    ).fetchall()
    by_resolution = {str(_get(r, "resolution", 0)): int(_get(r, "cells", 1)) for r in rows}
    return {
        "table": f"{SCHEMA}.{name}",
        "cells": sum(by_resolution.values()),
        "cells_by_resolution": by_resolution,
        "antimeridian_split_cells": sum(int(_get(r, "split", 2)) for r in rows),
    }
