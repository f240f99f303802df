"""Run one sandboxed query: check it, map its storage URLs, run it on a locked connection, write the result."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from core.errors import GeoetlError, InvalidInput, StorageUnavailable
from core.settings import AnalyticsSettings
from infrastructure.storage import BlobStore
from infrastructure.storage.names import validate_blob_name
from services.duckdb import results
from services.duckdb.results import CONTENT_TYPES, EXTENSIONS, OutputFormat
from services.duckdb.sandbox import Limits, check_sql, connect, interrupt_after
from services.duckdb.urls import Mapping, map_urls

log = logging.getLogger(__name__)
_NOT_FOUND_HINTS = ("no files found", "does not exist", "not found", "no such file", "could not open")


@dataclass(frozen=True)
class QueryRequest:
    sql: str
    output_format: OutputFormat = "json"
    output_name: str | None = None  # the file's name under duckdb/<job_id>/ (default result.<ext>)
    row_limit: int | None = None


def validate_output_name(name: str) -> str:
    """``name`` if it is a plain file name (no folders) valid as a blob name; else InvalidInput saying why."""
    if "/" in name or "\\" in name:
        raise InvalidInput(
            f"output_name {name!r} must be a file name without folders: result files are always written under "
            "duckdb/<job_id>/",
            field="output_name",
        )
    validate_blob_name(name)
    return name


def output_blob(job_id: str, output_format: OutputFormat, name: str | None = None) -> str:
    """Where a job's result file goes: always under ``duckdb/<job_id>/``, so a job can overwrite only its own files."""
    return f"duckdb/{job_id}/{validate_output_name(name) if name else f'result.{EXTENSIONS[output_format]}'}"


def run_query(
    request: QueryRequest,
    storage: BlobStore,
    settings: AnalyticsSettings,
    *,
    job_id: str,
    output_container: str,
) -> dict[str, Any]:
    """Run ``request`` in the sandbox; the job result (rows inline, or where the file is), or InvalidInput.

    A file result goes to ``<output_container>/duckdb/<job_id>/<output_name>``; the caller picks the container.
    """
    checked = check_sql(request.sql)
    blob = output_blob(job_id, request.output_format, request.output_name) if request.output_format != "json" else ""
    mapping = map_urls(list(checked.urls), storage)
    sql = checked.rewritten(mapping)
    base = Path(settings.duckdb_temp_dir) if settings.duckdb_temp_dir else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="geoetl-duckdb-", dir=base) as scratch:
        spill, out = Path(scratch) / "spill", Path(scratch) / "out"
        spill.mkdir()
        out.mkdir()
        limits = Limits(settings.duckdb_memory_limit, settings.duckdb_threads, str(spill))
        result = _execute(sql, request, settings, mapping, out, limits, spatial=checked.spatial)
        result["inputs"] = [url.url for url in checked.urls]
        if request.output_format != "json":
            path = out / f"result.{EXTENSIONS[request.output_format]}"
            props = storage.upload_file(output_container, blob, path, content_type=CONTENT_TYPES[request.output_format])
            result["output"] = {
                "container": output_container,
                "blob": blob,
                "url": f"storage://{output_container}/{blob}",
                "size": props.size,
                "content_type": CONTENT_TYPES[request.output_format],
            }
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _execute(
    sql: str,
    request: QueryRequest,
    settings: AnalyticsSettings,
    mapping: Mapping,
    out: Path,
    limits: Limits,
    *,
    spatial: bool,
) -> dict[str, Any]:
    """Run on a locked connection; with the spatial extension if the query or its result's geometry needs it."""
    spatial = spatial or request.output_format == "geoparquet"
    while True:
        con = connect(mapping, limits, writable=str(out), spatial=spatial)
        try:
            result = _run(con, sql, request, settings, mapping, out, spatial)
        finally:
            con.close()
        if result is not None:
            return result
        spatial = True  # the result has geometry to encode (or a spatial function the parse check missed)


def _run(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    request: QueryRequest,
    settings: AnalyticsSettings,
    mapping: Mapping,
    out: Path,
    spatial: bool,
) -> dict[str, Any] | None:
    """The result, or None when it needs the spatial extension and ``con`` has none."""
    timeout = settings.duckdb_timeout_seconds
    with interrupt_after(con, timeout) as fired:
        try:
            relation = con.sql(sql)
            if not spatial and results.needs_spatial([str(t) for t in relation.types], request.output_format):
                return None
            if request.output_format == "json":
                return _inline(con, relation, request, settings, mapping, out)
            cap = settings.duckdb_row_limit_cap
            limit = min(request.row_limit or cap, cap)
            path = out / f"result.{EXTENSIONS[request.output_format]}"
            written = results.write(con, relation, request.output_format, limit, path, mapping.folders)
            # exactly `limit` rows written: were there more? (asked only then; runs the query again up to one row)
            truncated = written.rows >= limit and results.has_more_rows(con, limit)
        except GeoetlError:
            raise
        except duckdb.CatalogException as exc:
            if not spatial and "spatial" in str(exc):
                return None
            raise _translate(exc, fired.is_set(), timeout, mapping, settings) from None
        except duckdb.Error as exc:
            raise _translate(exc, fired.is_set(), timeout, mapping, settings) from None
    return {
        "output_format": request.output_format,
        "row_count": written.rows,
        "row_limit": limit,
        "truncated": truncated,
        "columns": [c.as_dict() for c in written.columns],
    }


def _inline(
    con: duckdb.DuckDBPyConnection,
    relation: duckdb.DuckDBPyRelation,
    request: QueryRequest,
    settings: AnalyticsSettings,
    mapping: Mapping,
    out: Path,
) -> dict[str, Any]:
    most = settings.duckdb_max_rows_inline
    wanted = min(request.row_limit, most) if request.row_limit else most
    written = results.write(con, relation, "json", wanted + 1, out / "result.json", mapping.folders)
    rows = results.map_locations(results.read_json_rows(written.path), mapping.folders)
    truncated = len(rows) > wanted
    if truncated and not (request.row_limit and request.row_limit <= most):
        raise InvalidInput(
            f"the query returns more than {most} rows, the most returned inline (DUCKDB_MAX_ROWS_INLINE): "
            "use output_format parquet, geoparquet or csv to write the result to storage, or set row_limit"
        )
    rows = rows[:wanted]
    size = len(json.dumps(rows, separators=(",", ":")).encode("utf-8"))
    if size > settings.duckdb_max_inline_bytes:
        raise InvalidInput(
            f"the query's rows take {size} bytes as JSON, more than the {settings.duckdb_max_inline_bytes} returned "
            "inline (DUCKDB_MAX_INLINE_BYTES): use output_format parquet, geoparquet or csv, or fewer rows/columns"
        )
    return {
        "output_format": "json",
        "row_count": len(rows),
        "truncated": truncated,
        "columns": [c.as_dict() for c in written.columns],
        "rows": rows,
    }


def _translate(
    exc: duckdb.Error, fired: bool, timeout: float, mapping: Mapping, settings: AnalyticsSettings
) -> GeoetlError:
    """A duckdb error as our error: permanent with a readable message, unless storage was unreachable."""
    message = mapping.to_storage_url(str(exc).strip())
    first = message.splitlines()[0] if message else type(exc).__name__
    if fired or isinstance(exc, duckdb.InterruptException):
        return InvalidInput(
            f"the query ran longer than {timeout:g} s and was stopped (DUCKDB_TIMEOUT_SECONDS)", reason="timeout"
        )
    if isinstance(exc, duckdb.OutOfMemoryException):
        return InvalidInput(
            f"the query needs more memory than its limit of {settings.duckdb_memory_limit} (DUCKDB_MEMORY_LIMIT): "
            f"{first}",
            reason="memory",
        )
    if isinstance(exc, duckdb.PermissionException):
        return InvalidInput(f"the query was refused access outside the allowed storage: {first}", reason="sandbox")
    missing = any(hint in first.lower() for hint in _NOT_FOUND_HINTS)
    if isinstance(exc, duckdb.IOException) and mapping.backend == "azure" and not missing:
        return StorageUnavailable(f"reading Azure Storage failed: {first}")
    return InvalidInput(f"the query failed: {first}", reason=type(exc).__name__)
