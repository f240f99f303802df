"""PostGIS side of ingest_vector: type mapping, staging tables, the chunk COPY and the final swap.

A job loads into staging tables ``<schema>._ingest_<job>_<family>`` that only it knows; a ledger table
``_ingest_<job>_chunks`` records each loaded chunk in the same transaction as its COPY, so a chunk that
is loaded twice is loaded once. The finalize step adds the primary key and the GIST index to the staging
table and renames it to the target in one transaction (``replace`` drops the old table in that same
transaction), so readers see the old table or the complete new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from core.errors import Conflict, InvalidInput
from services.vector.geometry import hex_strings
from services.vector.names import (
    GEOMETRY_COLUMN as GEOMETRY_COLUMN,
)
from services.vector.names import (
    ID_COLUMN,
    job_table_prefix,
    parse_token,
    token_of_table,
    truncate_identifier,
)

COPY_BLOCK = 1 << 20


def pg_type(arrow_type: pa.DataType) -> str:
    """The PostgreSQL column type for an Arrow type (faithful where PostgreSQL has one; else text/jsonb)."""
    t = arrow_type
    if pa.types.is_dictionary(t):
        return pg_type(t.value_type)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "bigint"
    if pa.types.is_uint64(t):
        return "numeric"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "real"
    if pa.types.is_float64(t):
        return "double precision"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp with time zone" if t.tz else "timestamp without time zone"
    if pa.types.is_time(t):
        return "time without time zone"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "bytea"
    if pa.types.is_nested(t):
        return "jsonb"
    return "text"


def csv_ready(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column in a form PostgreSQL's CSV COPY reads as its :func:`pg_type`."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    t = array.type
    if pa.types.is_dictionary(t):
        return csv_ready(array.dictionary_decode())
    if pa.types.is_float16(t):
        return array.cast(pa.float32())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        hexed = hex_strings(array.cast(pa.binary()))
        return pc.binary_join_element_wise(pa.scalar("\\x"), hexed, "")  # type: ignore[no-any-return]
    if pa.types.is_nested(t):
        return pa.array([None if v is None else json.dumps(v, default=str) for v in array.to_pylist()], pa.string())
    if pa.types.is_duration(t) or pa.types.is_null(t):
        return array.cast(pa.string()) if not pa.types.is_null(t) else array
    return array


@dataclass(frozen=True)
class Column:
    name: str  # laundered
    source: str  # as in the file
    type: str  # PostgreSQL type


def geometry_sql(geometry_type: str, srid: int) -> sql.Composable:
    return sql.SQL("geometry({}, {})").format(sql.SQL(geometry_type), sql.Literal(int(srid)))


def _qualified(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def _exists(conn: psycopg.Connection[Any], schema: str, name: str) -> bool:
    row = conn.execute(
        "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL AS found", (schema, name)
    ).fetchone()
    return bool(row and (row["found"] if isinstance(row, dict) else row[0]))


def table_exists(db: Any, schema: str, name: str) -> bool:
    with db.transaction() as conn:
        return _exists(conn, schema, name)


def schema_exists(db: Any, schema: str) -> bool:
    row = db.fetch_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s) AS found", (schema,))
    return bool(row and row["found"])


def drop_job_tables(db: Any, schema: str, job_id: str, which: Callable[[int, int], bool] | None = None) -> list[str]:
    """Drop the job's staging and ledger tables whose run token (run, attempt) ``which`` selects (all when None)."""
    prefix = job_table_prefix(job_id)
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'u', 'p') AND left(c.relname, %s) = %s ORDER BY 1",
            (schema, len(prefix), prefix),
        ).fetchall()
        names = []
        for row in rows:
            token = token_of_table(job_id, row["relname"])
            parsed = parse_token(token) if token else None
            if parsed is None or (which is not None and not which(*parsed)):
                continue
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_qualified(schema, row["relname"])))
            names.append(row["relname"])
    return names


def create_staging(
    db: Any,
    schema: str,
    staging: str,
    columns: Sequence[Column],
    geometry_type: str,
    srid: int,
    *,
    unlogged: bool,
) -> None:
    """The staging table of one family: gid, the attribute columns, geom (no keys or indexes yet)."""
    parts = [sql.SQL("{} bigint NOT NULL").format(sql.Identifier(ID_COLUMN))]
    parts += [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.type)) for c in columns]
    parts.append(sql.SQL("{} {}").format(sql.Identifier(GEOMETRY_COLUMN), geometry_sql(geometry_type, srid)))
    statement = sql.SQL("CREATE {}TABLE {} ({})").format(
        sql.SQL("UNLOGGED " if unlogged else ""), _qualified(schema, staging), sql.SQL(", ").join(parts)
    )
    try:
        with db.transaction() as conn:
            conn.execute(statement)
    except psycopg.ProgrammingError as exc:  # e.g. a column name or type PostgreSQL refuses: permanent
        raise InvalidInput(f"the table for the file cannot be created: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def create_ledger(db: Any, schema: str, ledger: str) -> None:
    with db.transaction() as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (chunk integer PRIMARY KEY, staging text, rows bigint)").format(
                _qualified(schema, ledger)
            )
        )


def csv_payload(table: pa.Table) -> bytes:
    """The chunk's rows as CSV (no header) for COPY: geometry as hex WKB, other columns as PostgreSQL reads them."""
    columns = [
        hex_strings(table.column(name)) if name == GEOMETRY_COLUMN else csv_ready(table.column(name))
        for name in table.column_names
    ]
    ready = pa.Table.from_arrays(columns, names=table.column_names)
    sink = io.BytesIO()
    pacsv.write_csv(ready, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return sink.getvalue()


def load_chunk(
    db: Any,
    schema: str,
    staging: str,
    ledger: str,
    chunk: int,
    table: pa.Table,
    *,
    timeout_ms: int,
) -> bool:
    """COPY one chunk into the staging table, once: False when the ledger says it is already loaded."""
    payload: list[bytes | memoryview] | None = binary_payload(table)
    form = "binary"
    if payload is None:  # a column type without a binary encoding here (numeric, time, JSON): CSV
        payload, form = [csv_payload(table)], "csv"
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in table.column_names)
    copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(_qualified(schema, staging), columns, sql.SQL(form))
    claim = sql.SQL(
        "INSERT INTO {} (chunk, staging) VALUES (%s, %s) ON CONFLICT (chunk) DO NOTHING RETURNING chunk"
    ).format(_qualified(schema, ledger))
    record = sql.SQL("UPDATE {} SET rows = %s WHERE chunk = %s").format(_qualified(schema, ledger))
    try:
        with db.transaction(statement_timeout_ms=timeout_ms) as conn:
            if conn.execute(claim, (chunk, staging)).fetchone() is None:
                return False  # loaded by an earlier run of this task (the ledger row committed with its rows)
            with conn.cursor() as cur:
                with cur.copy(copy) as writer:
                    for part in payload:
                        view = memoryview(part)
                        for start in range(0, len(view), COPY_BLOCK):
                            writer.write(view[start : start + COPY_BLOCK])
                copied = cur.rowcount  # as the server counted them
            conn.execute(record, (copied, chunk))
    except psycopg.errors.UndefinedTable as exc:
        raise InvalidInput(f"the staging table {schema}.{staging} is gone (the job was cleaned up or re-run)") from exc
    except psycopg.ProgrammingError as exc:  # the data does not fit the table: retrying cannot help
        raise InvalidInput(f"chunk {chunk} cannot be loaded into {schema}.{staging}: {_first_line(exc)}") from exc
    return True


@dataclass(frozen=True)
class TablePlan:
    family: str
    target: str
    staging: str
    expected_rows: int


def _index_name(table: str, suffix: str) -> str:
    return truncate_identifier(f"{table}_{suffix}")


def _rename_relation(conn: psycopg.Connection[Any], schema: str, old: str, new: str, kind: str) -> None:
    if old != new and not _exists(conn, schema, new):
        conn.execute(
            sql.SQL("ALTER {} {} RENAME TO {}").format(sql.SQL(kind), _qualified(schema, old), sql.Identifier(new))
        )


def _column_types(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a "
        "WHERE a.attrelid = format('%%I.%%I', %s::text, %s::text)::regclass AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, table),
    ).fetchall()
    return {r["attname"]: r["type"] for r in rows}


def _append(conn: psycopg.Connection[Any], schema: str, plan: TablePlan) -> None:
    ours = _column_types(conn, schema, plan.staging)
    theirs = _column_types(conn, schema, plan.target)
    missing = [c for c in ours if c not in theirs and c != ID_COLUMN]
    if missing:
        raise InvalidInput(
            f"cannot append to {schema}.{plan.target}: it has no column(s) {', '.join(missing)}", field="if_exists"
        )
    if theirs.get(GEOMETRY_COLUMN) != ours[GEOMETRY_COLUMN]:
        raise InvalidInput(
            f"cannot append to {schema}.{plan.target}: its geometry is {theirs.get(GEOMETRY_COLUMN)}, "
            f"the file's is {ours[GEOMETRY_COLUMN]}",
            field="if_exists",
        )
    clashes = [
        f"{c} is {theirs[c]} in the table but {t} in the file"
        for c, t in ours.items()
        if c not in (ID_COLUMN, GEOMETRY_COLUMN) and not _appendable(t, theirs[c])
    ]
    if clashes:
        raise InvalidInput(
            f"cannot append to {schema}.{plan.target}: column types differ: {'; '.join(clashes)}", field="if_exists"
        )
    names = [c for c in ours if c != ID_COLUMN]
    target_cols = [sql.Identifier(c) for c in names]
    source_cols: list[sql.Composable] = [sql.Identifier(c) for c in names]
    if ID_COLUMN in theirs:
        target_cols.insert(0, sql.Identifier(ID_COLUMN))
        source_cols.insert(
            0,
            sql.SQL("{} + (SELECT coalesce(max({}), 0) FROM {})").format(
                sql.Identifier(ID_COLUMN), sql.Identifier(ID_COLUMN), _qualified(schema, plan.target)
            ),
        )
    conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
            _qualified(schema, plan.target),
            sql.SQL(", ").join(target_cols),
            sql.SQL(", ").join(source_cols),
            _qualified(schema, plan.staging),
        )
    )
    conn.execute(sql.SQL("DROP TABLE {}").format(_qualified(schema, plan.staging)))


# file column type -> table column types it goes into unchanged (a wider number, or text)
_WIDER = {
    "smallint": {"integer", "bigint", "numeric", "real", "double precision"},
    "integer": {"bigint", "numeric", "double precision"},
    "bigint": {"numeric"},
    "real": {"double precision"},
}


def _appendable(ours: str, theirs: str) -> bool:
    return ours == theirs or theirs == "text" or theirs in _WIDER.get(ours, ())


def _promote(conn: psycopg.Connection[Any], schema: str, plan: TablePlan, if_exists: str, unlogged: bool) -> None:
    """Keys, index, logging, then the rename (or append) of one staging table."""
    exists = _exists(conn, schema, plan.target)
    if exists and if_exists == "fail":
        raise Conflict(f"table {schema}.{plan.target} already exists (if_exists=fail)", table=plan.target)
    if exists and if_exists == "append":
        _append(conn, schema, plan)
        return
    staging = _qualified(schema, plan.staging)
    pkey, gix = _index_name(plan.staging, "pkey"), _index_name(plan.staging, "geom_gist")
    _build_indexes(conn, schema, plan.staging, unlogged)  # normally done already by prepare_indexes
    conn.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}").format(
            staging, sql.Identifier(pkey), sql.Identifier(pkey)
        )
    )
    if exists:  # replace: the old table goes in this transaction
        try:
            conn.execute(sql.SQL("DROP TABLE {}").format(_qualified(schema, plan.target)))
        except psycopg.errors.DependentObjectsStillExist as exc:
            raise InvalidInput(
                f"cannot replace {schema}.{plan.target}: other objects depend on it ({exc.diag.message_detail})",
                field="if_exists",
            ) from exc
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(staging, sql.Identifier(plan.target)))
    _rename_relation(conn, schema, pkey, _index_name(plan.target, "pkey"), "INDEX")
    _rename_relation(conn, schema, gix, _index_name(plan.target, "geom_gist"), "INDEX")


def _index_statements(schema: str, staging: str) -> list[sql.Composed]:
    table = _qualified(schema, staging)
    return [
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gist ({})").format(
            sql.Identifier(_index_name(staging, "geom_gist")), table, sql.Identifier(GEOMETRY_COLUMN)
        ),
        sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(_index_name(staging, "pkey")), table, sql.Identifier(ID_COLUMN)
        ),
        sql.SQL("ANALYZE {}").format(table),
    ]


def _build_indexes(conn: psycopg.Connection[Any], schema: str, staging: str, unlogged: bool) -> None:
    if unlogged and _persistence(conn, schema, staging) == "u":
        conn.execute(sql.SQL("ALTER TABLE {} SET LOGGED").format(_qualified(schema, staging)))
    for statement in _index_statements(schema, staging)[:2]:
        conn.execute(statement)


def _persistence(conn: psycopg.Connection[Any], schema: str, name: str) -> str | None:
    row = conn.execute(
        "SELECT relpersistence FROM pg_class WHERE oid = to_regclass(format('%%I.%%I', %s::text, %s::text))",
        (schema, name),
    ).fetchone()
    return str(row["relpersistence"]) if row else None


def prepare_indexes(db: Any, schema: str, stagings: Sequence[str], *, unlogged: bool, timeout_ms: int) -> None:
    """The primary-key index, the GIST index and ANALYZE of each staging table, built at the same time on
    separate connections (the tables are the job's own, so committing them early is harmless)."""

    def run(statement: sql.Composed) -> None:
        with (
            contextlib.suppress(psycopg.errors.UndefinedTable),
            db.transaction(statement_timeout_ms=timeout_ms) as conn,
        ):
            conn.execute(statement)

    if unlogged:
        for staging in stagings:
            with (
                contextlib.suppress(psycopg.errors.UndefinedTable),
                db.transaction(statement_timeout_ms=timeout_ms) as conn,
            ):
                if _persistence(conn, schema, staging) == "u":
                    conn.execute(sql.SQL("ALTER TABLE {} SET LOGGED").format(_qualified(schema, staging)))
    statements = [s for staging in stagings for s in _index_statements(schema, staging)]
    with ThreadPoolExecutor(max_workers=min(len(statements), 3) or 1, thread_name_prefix="ingest-index") as pool:
        for future in [pool.submit(run, statement) for statement in statements]:
            future.result()


def finalize_tables(
    db: Any,
    schema: str,
    plans: Sequence[TablePlan],
    *,
    ledger: str,
    if_exists: str,
    unlogged: bool,
    comment: str,
    job_id: str,
    timeout_ms: int,
    guard: Callable[[psycopg.Connection[Any]], None] | None = None,
) -> dict[str, int]:
    """Verify the counts and swap every staging table into place, all in one transaction (idempotent); the rows
    loaded into each target, as the ledger counted them (a target an earlier run of this step did is left out).
    ``guard`` runs first in that transaction (e.g. ``ensure_run_alive``: no swap once the job has ended)."""
    try:
        return _finalize_tables(
            db, schema, plans, ledger=ledger, if_exists=if_exists, unlogged=unlogged, comment=comment, job_id=job_id,
            timeout_ms=timeout_ms, guard=guard,
        )  # fmt: skip
    except psycopg.ProgrammingError as exc:  # e.g. an append the target table refuses: permanent
        raise InvalidInput(f"the loaded rows cannot be moved into place: {_first_line(exc)}") from exc


def _finalize_tables(
    db: Any,
    schema: str,
    plans: Sequence[TablePlan],
    *,
    ledger: str,
    if_exists: str,
    unlogged: bool,
    comment: str,
    job_id: str,
    timeout_ms: int,
    guard: Callable[[psycopg.Connection[Any]], None] | None,
) -> dict[str, int]:
    loaded_rows: dict[str, int] = {}
    with db.transaction(statement_timeout_ms=timeout_ms) as conn:
        if guard is not None:
            guard(conn)  # before the target locks: a cancel waits for this swap, or this swap sees the cancel
        for target in sorted({p.target for p in plans}):  # concurrent jobs on the same target take turns
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"ingest_vector:{schema}.{target}",))
        for plan in plans:
            if not _exists(conn, schema, plan.staging):
                if _done_by(conn, schema, plan.target, job_id):
                    continue  # an earlier run of this step committed
                raise InvalidInput(f"the staging table {schema}.{plan.staging} is missing; resubmit the job")
            counted = conn.execute(
                sql.SQL("SELECT coalesce(sum(rows), 0) AS n FROM {} WHERE staging = %s").format(
                    _qualified(schema, ledger)
                ),
                (plan.staging,),
            ).fetchone()
            loaded = int(counted["n"]) if counted else 0
            if loaded != plan.expected_rows:
                raise InvalidInput(
                    f"{schema}.{plan.staging} holds {loaded} rows, expected {plan.expected_rows}: "
                    "the load is incomplete"
                )
            _promote(conn, schema, plan, if_exists, unlogged)
            loaded_rows[plan.target] = loaded
            conn.execute(
                sql.SQL("COMMENT ON TABLE {} IS {}").format(_qualified(schema, plan.target), sql.Literal(comment))
            )
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_qualified(schema, ledger)))
        if if_exists == "append":
            for target in sorted({p.target for p in plans}):
                conn.execute(sql.SQL("ANALYZE {}").format(_qualified(schema, target)))
    return loaded_rows


def _done_by(conn: psycopg.Connection[Any], schema: str, table: str, job_id: str) -> bool:
    if not _exists(conn, schema, table):
        return False
    row = conn.execute(
        "SELECT obj_description(format('%%I.%%I', %s::text, %s::text)::regclass, 'pg_class') AS comment",
        (schema, table),
    ).fetchone()
    return bool(row and row["comment"] and job_id in row["comment"])


def describe_table(db: Any, schema: str, table: str, *, bounds: Sequence[float] | None = None) -> dict[str, Any]:
    """Row count (counted), extent (table CRS and WGS84), geometry type, SRID and columns of a loaded table;
    ``bounds`` (xmin, ymin, xmax, ymax, x range in 0..360) when known already spare the extent computation."""
    qualified = _qualified(schema, table)
    geom = sql.Identifier(GEOMETRY_COLUMN)
    with db.transaction() as conn:
        columns = _column_types(conn, schema, table)
        meta = conn.execute(
            "SELECT type, srid, coord_dimension FROM public.geometry_columns "
            "WHERE f_table_schema = %s AND f_table_name = %s AND f_geometry_column = %s",
            (schema, table, GEOMETRY_COLUMN),
        ).fetchone()
        srid = int(meta["srid"]) if meta else 4326
        if bounds is not None and srid == 4326:
            extent = [float(v) for v in bounds[:4]]
            counted = conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(qualified)).fetchone()
            return {
                "schema": schema,
                "table": table,
                "rows": int(counted["n"]) if counted else 0,
                "geometry_type": _type_name(meta),
                "srid": srid,
                "extent": extent,
                "extent_wgs84": _antimeridian_aware(extent, bounds[4], bounds[5]),
                "columns": [{"name": k, "type": v} for k, v in columns.items()],
            }
        wgs84 = geom if srid == 4326 else sql.SQL("ST_Transform(ST_Envelope({}), 4326)").format(geom)
        row = conn.execute(
            sql.SQL(
                "SELECT count(*) AS n, ST_XMin(ST_Extent(g)) AS xmin, ST_YMin(ST_Extent(g)) AS ymin, "
                "ST_XMax(ST_Extent(g)) AS xmax, ST_YMax(ST_Extent(g)) AS ymax, "
                "min(ST_XMin(w)) AS wxmin, min(ST_YMin(w)) AS wymin, max(ST_XMax(w)) AS wxmax, "
                "max(ST_YMax(w)) AS wymax, "
                # the extent seen from the antimeridian (longitudes 0..360); only geometries that straddle
                # Greenwich need their vertices shifted one by one
                "min(CASE WHEN ST_XMin(w) >= 0 THEN ST_XMin(w) WHEN ST_XMax(w) < 0 THEN ST_XMin(w) + 360 "
                "ELSE ST_XMin(ST_ShiftLongitude(w)) END) AS sxmin, "
                "max(CASE WHEN ST_XMin(w) >= 0 THEN ST_XMax(w) WHEN ST_XMax(w) < 0 THEN ST_XMax(w) + 360 "
                "ELSE ST_XMax(ST_ShiftLongitude(w)) END) AS sxmax "
                "FROM (SELECT {g} AS g, {w} AS w FROM {t}) s"
            ).format(g=geom, w=wgs84, t=qualified)
        ).fetchone()
    assert row is not None

    def box(keys: Iterable[str]) -> list[float] | None:
        values = [row[k] for k in keys]
        return None if any(v is None for v in values) else [float(v) for v in values]

    return {
        "schema": schema,
        "table": table,
        "rows": int(row["n"]),
        "geometry_type": _type_name(meta),
        "srid": int(meta["srid"]) if meta else None,
        "extent": box(("xmin", "ymin", "xmax", "ymax")),
        "extent_wgs84": _antimeridian_aware(box(("wxmin", "wymin", "wxmax", "wymax")), row["sxmin"], row["sxmax"]),
        "columns": [{"name": k, "type": v} for k, v in columns.items()],
    }


_TYPE_NAMES = {"MULTIPOINT": "MultiPoint", "MULTILINESTRING": "MultiLineString", "MULTIPOLYGON": "MultiPolygon"}


def _type_name(meta: dict[str, Any] | None) -> str | None:
    if not meta:
        return None
    name = _TYPE_NAMES.get(str(meta["type"]).upper(), str(meta["type"]))
    return f"{name} Z" if int(meta["coord_dimension"]) >= 3 else name


def _antimeridian_aware(bbox: list[float] | None, shifted_min: Any, shifted_max: Any) -> list[float] | None:
    """The WGS84 bbox, as STAC writes one that crosses the antimeridian (west > east) when the data
    is narrower seen from the antimeridian (longitudes 0..360) than from Greenwich."""
    if bbox is None or shifted_min is None or shifted_max is None:
        return bbox
    west, south, east, north = bbox
    shifted_width = float(shifted_max) - float(shifted_min)
    if shifted_width >= (east - west) - 1e-9 or float(shifted_max) <= 180:
        return bbox

    def wrap(x: float) -> float:
        return x - 360 if x > 180 else x

    return [wrap(float(shifted_min)), south, wrap(float(shifted_max)), north]


# --- binary COPY -------------------------------------------------------------------------------------------

_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_PGCOPY_TRAILER = b"\xff\xff"
_NULL_FIELD = b"\xff\xff\xff\xff"
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 - 1970-01-01
_PG_EPOCH_MICROS = _PG_EPOCH_DAYS * 86_400 * 1_000_000
_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}


def _fixed_field(values: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """Big-endian fixed-width values as binary COPY fields (length + bytes; -1 for nulls)."""
    width = values.dtype.itemsize
    matrix = np.empty((len(values), 4 + width), dtype=np.uint8)
    matrix[:, :4] = np.frombuffer(struct.pack(">i", width), dtype=np.uint8)
    matrix[:, 4:] = values.view(np.uint8).reshape(-1, width)
    fields = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(4 + width), len(values), [None, pa.py_buffer(matrix.tobytes())]
    ).cast(pa.large_binary())
    if valid is not None and not valid.all():
        fields = pc.if_else(pa.array(valid), fields, pa.scalar(_NULL_FIELD, pa.large_binary()))
    return fields


def _varlen_field(array: pa.Array) -> pa.Array:
    """Variable-length values (text as UTF-8, bytea, WKB) as binary COPY fields."""
    array = array.cast(pa.large_binary())
    lengths = pc.fill_null(pc.binary_length(array), 0).to_numpy(zero_copy_only=False).astype(">i4")
    prefix = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4), len(array), [None, pa.py_buffer(lengths.tobytes())])
    joined = pc.binary_join_element_wise(prefix.cast(pa.large_binary()), array, pa.scalar(b"", pa.large_binary()))
    if array.null_count:
        joined = pc.if_else(pc.is_valid(array), joined, pa.scalar(_NULL_FIELD, pa.large_binary()))
    return joined


def _numbers(array: pa.Array, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    valid = None if array.null_count == 0 else np.asarray(array.is_valid())
    zero = False if pa.types.is_boolean(array.type) else 0
    filled = array.fill_null(zero) if array.null_count else array
    return np.asarray(filled.to_numpy(zero_copy_only=False)).astype(dtype), valid


def _binary_field(array: pa.Array) -> pa.Array | None:
    """One column as binary COPY fields, or None when its type is sent as CSV text instead."""
    t = array.type
    if pa.types.is_dictionary(t):
        return _binary_field(array.dictionary_decode())
    if pa.types.is_null(t):  # a column without any value: every field NULL
        return pa.array([_NULL_FIELD] * len(array), pa.large_binary())
    if pa.types.is_boolean(t):
        values, valid = _numbers(array, "u1")
        return _fixed_field(values, valid)
    integer_widths = {pa.int8(): ">i2", pa.int16(): ">i2", pa.uint8(): ">i2", pa.int32(): ">i4",
                      pa.uint16(): ">i4", pa.int64(): ">i8", pa.uint32(): ">i8"}  # fmt: skip
    if t in integer_widths:
        values, valid = _numbers(array, integer_widths[t])
        return _fixed_field(values, valid)
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        values, valid = _numbers(array.cast(pa.float32()), ">f4")
        return _fixed_field(values, valid)
    if pa.types.is_float64(t):
        values, valid = _numbers(array, ">f8")
        return _fixed_field(values, valid)
    if pa.types.is_date32(t) or pa.types.is_date64(t):
        values, valid = _numbers(array.cast(pa.date32()).cast(pa.int32()), "i8")
        return _fixed_field((values - _PG_EPOCH_DAYS).astype(">i4"), valid)
    if pa.types.is_timestamp(t) and _MICROS[t.unit] is not None:
        values, valid = _numbers(array.cast(pa.int64()), "i8")
        return _fixed_field((values * _MICROS[t.unit] - _PG_EPOCH_MICROS).astype(">i8"), valid)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return _varlen_field(array)
    return None


def binary_payload(table: pa.Table) -> list[bytes | memoryview] | None:
    """The chunk as PostgreSQL binary COPY data (geometry as WKB), or None when a column needs the CSV path."""
    fields: list[pa.Array] = [
        pa.array(np.full(table.num_rows, len(table.column_names), dtype=">i2").view("S2"), pa.binary(2)).cast(
            pa.large_binary()
        )
    ]
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        encoded = _binary_field(column)
        if encoded is None:
            return None
        fields.append(encoded)
    rows = pc.binary_join_element_wise(*fields, pa.scalar(b"", pa.large_binary()))
    _, offsets, data = rows.buffers()
    start, end = np.frombuffer(offsets, dtype=np.int64)[[rows.offset, rows.offset + len(rows)]]
    body = memoryview(data)[int(start) : int(end)] if data is not None else memoryview(b"")
    return [_PGCOPY_HEADER, body, _PGCOPY_TRAILER]  # written one after the other (no copy of the body)
