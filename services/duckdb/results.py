"""Writing a query's result: rows inline as JSON, or a Parquet, GeoParquet or CSV file in storage.

DuckDB itself writes every format (``COPY ... TO`` a scratch folder it may write, then the
file is uploaded), so every column type is handled the same way DuckDB handles it. Geometry
columns are written per format:

| format | geometry columns |
|---|---|
| ``json`` | GeoJSON geometry objects |
| ``parquet`` | WKB (binary), no GeoParquet metadata |
| ``geoparquet`` | GeoParquet (DuckDB spatial's ``geo`` metadata: encoding, geometry types, bbox, CRS) |
| ``csv`` | WKT |

Text columns (``VARCHAR`` and ``VARCHAR[]``; in ``json`` any string at any depth) have the
mapped locations of the query's containers written back as ``storage://`` URLs, so
``glob()``, the readers' ``filename`` columns and the like never show the local paths
(or ``az://`` URLs) behind them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb

from core.errors import InvalidInput

OutputFormat = Literal["json", "parquet", "geoparquet", "csv"]
EXTENSIONS: dict[str, str] = {"json": "json", "parquet": "parquet", "geoparquet": "parquet", "csv": "csv"}
CONTENT_TYPES: dict[str, str] = {
    "parquet": "application/vnd.apache.parquet",
    "geoparquet": "application/vnd.apache.parquet",
    "csv": "text/csv",
}
RESULT_VIEW = "geoetl_duckdb_result"


@dataclass(frozen=True)
class Column:
    name: str
    type: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type}


@dataclass(frozen=True)
class Written:
    """A result written by DuckDB to a local file."""

    path: Path
    rows: int
    columns: tuple[Column, ...]


def is_geometry(type_name: str) -> bool:
    return type_name.upper().startswith("GEOMETRY")


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _storage_urls(expression: str, folders: dict[str, str]) -> str:
    """``expression`` (text) with each mapped folder replaced by its container's storage URL, longest first."""
    for folder in sorted(folders, key=len, reverse=True):
        expression = f"replace({expression}, {_literal(folder)}, {_literal(f'storage://{folders[folder]}/')})"
    return expression


def map_locations(value: Any, folders: dict[str, str]) -> Any:
    """``value`` (JSON rows) with the mapped folders in every string written back as storage URLs."""
    if not folders:
        return value
    if isinstance(value, str):
        for folder in sorted(folders, key=len, reverse=True):
            value = value.replace(folder, f"storage://{folders[folder]}/")
        return value
    if isinstance(value, list):
        return [map_locations(item, folders) for item in value]
    if isinstance(value, dict):
        return {map_locations(key, folders): map_locations(item, folders) for key, item in value.items()}
    return value


def projection(
    columns: list[str], types: list[str], output_format: OutputFormat, folders: dict[str, str] | None = None
) -> str:
    """The select list that encodes the result's geometry columns for ``output_format`` and maps text columns'
    local locations (``folders``: mapped folder -> container) back to storage URLs."""
    if len(set(columns)) != len(columns):
        duplicates = sorted({c for c in columns if columns.count(c) > 1})
        raise InvalidInput(f"the query returns duplicate column names {duplicates}: give each column its own alias")
    geometry = [c for c, t in zip(columns, types, strict=True) if is_geometry(t)]
    if output_format == "geoparquet" and not geometry:
        raise InvalidInput("output_format geoparquet needs a GEOMETRY column in the result (use parquet otherwise)")
    encode = {
        "json": "ST_AsGeoJSON({c})::JSON",
        "parquet": "ST_AsWKB({c})",
        "csv": "CAST({c} AS VARCHAR)",
        "geoparquet": "{c}",
    }[output_format]
    items = []
    for name, type_name in zip(columns, types, strict=True):
        column = _identifier(name)
        if is_geometry(type_name):
            items.append(f"{encode.format(c=column)} AS {column}")
        elif folders and type_name == "VARCHAR":
            items.append(f"{_storage_urls(column, folders)} AS {column}")
        elif folders and type_name == "VARCHAR[]":
            items.append(f"list_transform({column}, lambda geoetl_x: {_storage_urls('geoetl_x', folders)}) AS {column}")
        else:
            items.append(column)
    return ", ".join(items) or "*"


def needs_spatial(types: list[str], output_format: OutputFormat) -> bool:
    """Whether encoding the result's geometry for ``output_format`` needs the spatial extension."""
    return output_format in ("json", "parquet", "geoparquet") and any(is_geometry(t) for t in types)


def write(
    con: duckdb.DuckDBPyConnection,
    relation: duckdb.DuckDBPyRelation,
    output_format: OutputFormat,
    limit: int,
    path: Path,
    folders: dict[str, str] | None = None,
) -> Written:
    """Write at most ``limit`` rows of ``relation`` to ``path`` in ``output_format``; rows and columns written."""
    columns = list(relation.columns)
    types = [str(t) for t in relation.types]
    select = projection(columns, types, output_format, folders)
    relation.create_view(RESULT_VIEW, replace=True)
    query = f"SELECT {select} FROM {RESULT_VIEW} LIMIT {int(limit)}"
    shape = con.sql(query)
    written = tuple(Column(c, str(t)) for c, t in zip(shape.columns, shape.types, strict=True))
    options = {
        "json": "FORMAT json, ARRAY true",
        "parquet": "FORMAT parquet, COMPRESSION zstd",
        "geoparquet": "FORMAT parquet, COMPRESSION zstd",
        "csv": "FORMAT csv, HEADER true",
    }[output_format]
    row = con.execute(f"COPY ({query}) TO {_literal(str(path))} ({options})").fetchone()
    return Written(path, int(row[0]) if row else 0, written)


def has_more_rows(con: duckdb.DuckDBPyConnection, limit: int) -> bool:
    """Whether the result last given to :func:`write` has more than ``limit`` rows (runs it to row limit + 1)."""
    row = con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {RESULT_VIEW} LIMIT 1 OFFSET {int(limit)})").fetchone()
    return bool(row and row[0])


def read_json_rows(path: Path) -> list[dict[str, Any]]:
    """The rows DuckDB wrote as a JSON array; NaN and infinities become null (JSON has neither)."""
    text = path.read_text(encoding="utf-8")
    rows = json.loads(text, parse_constant=lambda _: None) if text.strip() else []
    if not isinstance(rows, list):
        raise InvalidInput("the query result could not be read back as JSON rows")
    return rows
