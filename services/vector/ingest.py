"""The three steps of ingest_vector: prepare (inspect, write GeoParquet chunks, create staging tables),
load (COPY one chunk) and finalize (swap into place, describe, register in STAC, remove the chunks).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

import numpy as np
import pyarrow as pa
from pyproj import CRS

from core.errors import BlobNotFound, GeoetlError, InvalidInput, LeaseExpired
from services.vector import chunks as chunk_io
from services.vector import tables
from services.vector.formats import CsvOptions, Source, ZipLimits, format_of, iter_batches, open_source
from services.vector.geometry import (
    FAMILIES,
    MULTI_TYPES,
    encode_wkb,
    parse_wkb,
    process_wkb,
    resolve_crs,
    srid_of,
    transformer_for,
)
from services.vector.names import (
    GEOMETRY_COLUMN,
    launder_columns,
    ledger_name,
    parse_token,
    run_token,
    staging_name,
    table_for_family,
)

log = logging.getLogger(__name__)

VECTORS_COLLECTION = "vectors"
FIRST_RUN = run_token(1, 1)  # the token of a prepare called outside the machine (tests, tools)


@dataclass(frozen=True)
class IngestOptions:
    """The validated job parameters the steps need."""

    container_name: str
    blob_name: str
    file_extension: str
    table_name: str
    schema: str
    layer_name: str | None = None
    source_crs: str | None = None
    target_crs: str = "EPSG:4326"
    lat_column: str | None = None
    lon_column: str | None = None
    wkt_column: str | None = None
    delimiter: str | None = None
    encoding: str | None = None
    if_exists: str = "fail"
    chunk_size: int | None = None
    invalid_geometry: str = "repair"
    unlogged: bool = False


def choose_chunk_size(feature_count: int, settings: Any) -> int:
    """Rows per chunk: the file split into about ``vector_chunk_target_count`` chunks, within min..max rows."""
    low = int(settings.vector_chunk_rows_min)
    high = max(low, int(settings.vector_chunk_rows_max))
    if feature_count <= 0:
        return high
    target = int(settings.vector_chunk_target_count)
    return min(high, max(low, math.ceil(feature_count / target)))


@dataclass
class _Bucket:
    """Rows of one family (or of no geometry) seen so far."""

    rows: int = 0
    has_z: bool = False
    chunks: list[dict[str, Any]] = field(default_factory=list)


@contextlib.contextmanager
def _downloaded(storage: Any, options: IngestOptions, temp_dir: Path | None) -> Iterator[tuple[Path, Path]]:
    """(the input file, a temporary folder), both removed afterwards if made here. A blob of the local backend
    whose name ends with the extension is read in place; others are downloaded (named with the extension, which
    GDAL uses to choose its driver)."""
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="geoetl-vector-", dir=temp_dir) as folder:
        suffix = PurePosixPath(options.blob_name).suffix.lower().lstrip(".")
        if getattr(storage, "backend", None) == "local" and suffix == options.file_extension:
            local = Path(storage.gdal_path(options.container_name, options.blob_name).path)
            if not local.is_file():
                raise BlobNotFound(f"blob {options.container_name}/{options.blob_name} does not exist")
            yield local, Path(folder)
            return
        stem = PurePosixPath(options.blob_name).stem or "source"
        path = Path(folder) / f"{stem}.{options.file_extension}"
        storage.download_file(options.container_name, options.blob_name, path)
        yield path, Path(folder)


def sweep(
    db: Any, storage: Any, schema: str, work: str, job_id: str, which: Callable[[int, int], bool]
) -> dict[str, Any]:
    """Drop the staging/ledger tables and delete the intermediate blobs of the job's runs and prepare attempts
    that ``which(run, attempt)`` selects (idempotent)."""
    dropped = tables.drop_job_tables(db, schema, job_id, which)
    removed = clear_chunks(storage, work, job_id, which=which)
    return {"dropped_tables": dropped, "removed_blobs": removed}


def _abandon(db: Any, storage: Any, schema: str, work: str, job_id: str, token: str) -> NoReturn:
    """Remove what this attempt of prepare wrote (its own token's objects only: a newer attempt that took the
    task over, or a new run, uses other names), then stop."""
    mine = parse_token(token)
    with contextlib.suppress(Exception):
        sweep(db, storage, schema, work, job_id, lambda run, attempt: (run, attempt) == mine)
    raise LeaseExpired("the job ended or another attempt owns the prepare task; this attempt's output was removed")


def _source_crs(source: Source, options: IngestOptions) -> CRS:
    if options.source_crs:
        return resolve_crs(options.source_crs, "source_crs")
    if source.crs:
        return resolve_crs(source.crs, "the file's CRS")
    if source.default_crs:
        return CRS.from_user_input(source.default_crs)
    raise InvalidInput(
        f"the file has no CRS ({source.format}); pass source_crs (e.g. 'EPSG:27700')", field="source_crs"
    )


def clear_chunks(
    storage: Any,
    container: str,
    job_id: str,
    *,
    which: Callable[[int, int], bool] | None = None,
    only_chunks: bool = False,
) -> int:
    """Delete the job's intermediate blobs of the runs/attempts ``which(run, attempt)`` selects (all when None),
    or only their chunks; how many were deleted."""
    removed = 0
    with contextlib.suppress(GeoetlError):
        if not storage.container_exists(container):
            return 0
    for blob in list(storage.iter_blobs(container, chunk_io.job_prefix(job_id))):
        if only_chunks and not blob.name.endswith(".parquet"):
            continue
        token = chunk_io.token_of_blob(job_id, blob.name)
        parsed = parse_token(token) if token else None
        if which is not None and (parsed is None or not which(*parsed)):
            continue
        if storage.delete(container, blob.name):
            removed += 1
    return removed


def prepare(
    options: IngestOptions,
    *,
    job_id: str,
    storage: Any,
    db: Any,
    settings: Any,
    token: str = FIRST_RUN,
    heartbeat: Callable[[], bool] = lambda: True,
) -> dict[str, Any]:
    """Inspect the file, write its features as GeoParquet chunks and create the staging tables (once).

    ``token`` (names.run_token(run, attempt)) names every object this attempt makes; objects of earlier runs and
    earlier attempts of this run are removed first (a crashed attempt's; a slow one removes its own when its
    heartbeat says it lost the task). A later attempt's objects are never touched."""
    mine = parse_token(token)
    if mine is None:
        raise ValueError(f"not a run token: {token!r}")
    started = time.perf_counter()
    vector = settings.vector
    work = vector.vector_work_container
    fmt = format_of(options.file_extension)
    target_crs = resolve_crs(options.target_crs, "target_crs")
    srid = srid_of(target_crs, "target_crs")
    if not tables.schema_exists(db, options.schema):
        raise InvalidInput(f"schema {options.schema!r} does not exist", field="schema")
    storage.ensure_container(work)
    # earlier runs and attempts (and a token that ran before: the machine runs each attempt once) start clean
    sweep(db, storage, options.schema, work, job_id, lambda run, attempt: (run, attempt) <= mine)
    try:
        return _prepare(
            options,
            fmt,
            target_crs,
            srid,
            job_id=job_id,
            token=token,
            storage=storage,
            db=db,
            settings=settings,
            heartbeat=heartbeat,
            started=started,
        )
    except GeoetlError as exc:
        if not exc.retryable:  # a permanent failure: leave nothing half-made behind (a retry starts clean anyway)
            with contextlib.suppress(Exception):  # the original error matters
                sweep(db, storage, options.schema, work, job_id, lambda run, attempt: (run, attempt) == mine)
        raise


def _prepare(
    options: IngestOptions,
    fmt: str,
    target_crs: CRS,
    srid: int,
    *,
    job_id: str,
    token: str,
    storage: Any,
    db: Any,
    settings: Any,
    heartbeat: Callable[[], bool],
    started: float,
) -> dict[str, Any]:
    vector = settings.vector
    work = vector.vector_work_container
    if options.if_exists == "fail" and tables.table_exists(db, options.schema, options.table_name):
        raise InvalidInput(
            f"table {options.schema}.{options.table_name} already exists (if_exists=fail)", field="if_exists"
        )
    steps: dict[str, float] = {"setup": round(time.perf_counter() - started, 3)}
    mark = time.perf_counter()

    def step(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        steps[name] = round(now - mark, 3)
        mark = now

    with _downloaded(storage, options, vector.vector_temp_dir) as (path, scratch):
        step("download")
        source = open_source(
            path,
            fmt,
            layer_name=options.layer_name,
            csv_options=CsvOptions(options.lat_column, options.lon_column, options.wkt_column, options.delimiter),
            encoding=options.encoding,
            scratch=scratch,
            zip_limits=ZipLimits(
                vector.vector_zip_max_bytes, vector.vector_zip_max_ratio, vector.vector_zip_max_members
            ),
        )
        source_crs = _source_crs(source, options)
        chunk_size = options.chunk_size or choose_chunk_size(source.feature_count, vector)
        convert = functools.partial(
            _convert_batch,
            transformer=transformer_for(source_crs, target_crs),
            geographic=bool(source_crs.is_geographic),
            invalid=options.invalid_geometry,
            target_crs=target_crs,
            job_id=job_id,
            token=token,
            storage=storage,
            work=work,
        )
        step("inspect")

        def stop_if_lost() -> None:
            if not heartbeat():  # the job ended (or another attempt owns the task): stop
                _abandon(db, storage, options.schema, work, job_id, token)

        written = _write_chunks(source, chunk_size, convert, stop=stop_if_lost)
    step("chunks")
    plan, chunk_tasks = _plan_tables(written, options, job_id=job_id, token=token)
    ledger = ledger_name(job_id, token)
    _create_tables(db, options, plan, written.columns, srid, ledger)
    step("tables")
    result: dict[str, Any] = {
        "job_id": job_id,
        "token": token,
        "ledger": ledger,
        "plan_blob": chunk_io.plan_name(job_id, token),
        "format": fmt,
        "layer": source.layer,
        "layers": source.layers,
        "source_crs": source_crs.to_string(),
        "target_srid": srid,
        "chunk_size": chunk_size,
        "source_rows": written.source_rows,
        "repaired_rows": written.repaired,
        "skipped_rows": written.skipped,
        "columns": [{"name": c.name, "source": c.source, "type": c.type} for c in written.columns],
        "tables": plan,
        "chunks": chunk_tasks,
        "seconds": round(time.perf_counter() - started, 3),
        "steps": steps,
    }
    summary = {k: v for k, v in result.items() if k != "chunks"}  # what the finalize stage reads
    storage.write_bytes(work, result["plan_blob"], json.dumps(summary).encode(), content_type="application/json")
    if not heartbeat():  # the job ended (its clean-up may be done already) or the task was taken over: undo ours
        _abandon(db, storage, options.schema, work, job_id, token)
    return result


@dataclass
class _Written:
    """What the chunk writing saw: rows per family (code 0: no geometry), the columns, the counts."""

    buckets: dict[int, _Bucket]
    columns: list[tables.Column]
    source_rows: int
    repaired: int
    skipped: int


def _write_chunks(
    source: Source, chunk_size: int, convert: Callable[..., _Converted], *, stop: Callable[[], None]
) -> _Written:
    """Read the layer batch by batch and convert each in a worker thread into chunks (GEOS, Parquet and the
    storage release the GIL), at most PREPARE_THREADS + 1 at a time; results are taken in order, so chunk ids and
    gids are deterministic. ``stop`` is called before each batch (it raises to end the work)."""
    buckets: dict[int, _Bucket] = {code: _Bucket() for code in range(len(FAMILIES) + 1)}
    columns: list[tables.Column] | None = None
    source_rows = repaired = skipped = 0
    pending: collections.deque[Future[_Converted]] = collections.deque()

    def collect(converted: _Converted) -> None:
        nonlocal repaired, skipped
        repaired += converted.repaired
        skipped += converted.skipped
        for code, record in converted.chunks:
            bucket = buckets[code]
            bucket.has_z |= record["z"]
            bucket.rows += record["rows"]
            bucket.chunks.append(record)

    with ThreadPoolExecutor(PREPARE_THREADS, thread_name_prefix="ingest-prepare") as pool:
        try:
            for index, batch in enumerate(iter_batches(source, chunk_size)):
                stop()
                if columns is None:
                    attributes = batch.attributes
                    names = launder_columns(attributes.column_names)
                    columns = [
                        tables.Column(n, s, tables.pg_type(f.type))
                        for n, s, f in zip(names, attributes.column_names, attributes.schema, strict=True)
                    ]
                pending.append(pool.submit(convert, batch, [c.name for c in columns], index, source_rows))
                source_rows += len(batch.wkb)
                while len(pending) > PREPARE_THREADS:
                    collect(pending.popleft().result())
            while pending:
                collect(pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()
    if source_rows == 0 or columns is None:
        raise InvalidInput("the layer holds no features (empty file)")
    return _Written(buckets, columns, source_rows, repaired, skipped)


def _plan_tables(
    written: _Written, options: IngestOptions, *, job_id: str, token: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One table per geometry family found (features without geometry go with the first), and the load tasks."""
    buckets = written.buckets
    families = [code for code in range(1, len(FAMILIES) + 1) if buckets[code].rows]
    if not families:
        raise InvalidInput(f"none of the {written.source_rows} features has a usable geometry")
    mixed = len(families) > 1
    plan: list[dict[str, Any]] = []
    chunk_tasks: list[dict[str, Any]] = []
    for position, code in enumerate(families):
        family = FAMILIES[code - 1]
        bucket = buckets[code]
        own_chunks = list(bucket.chunks)
        rows = bucket.rows
        if position == 0:
            own_chunks += buckets[0].chunks
            rows += buckets[0].rows
        boxes = np.array([c["bounds"] for c in bucket.chunks], dtype=float)
        staging = staging_name(job_id, token, family)
        plan.append(
            {
                "family": family,
                "target": table_for_family(options.table_name, family if mixed else None),
                "staging": staging,
                "geometry_type": MULTI_TYPES[family] + ("Z" if bucket.has_z else ""),
                "has_z": bucket.has_z,
                "expected_rows": rows,
                # extent in the target CRS, and the x range with longitudes in 0..360 (antimeridian check)
                "bounds": [
                    float(boxes[:, 0].min()),
                    float(boxes[:, 1].min()),
                    float(boxes[:, 2].max()),
                    float(boxes[:, 3].max()),
                    float(boxes[:, 4].min()),
                    float(boxes[:, 5].max()),
                ],
            }
        )
        chunk_tasks += [{**c, "staging": staging, "table_z": bucket.has_z} for c in own_chunks]
    chunk_tasks.sort(key=lambda c: c["chunk"])
    return plan, chunk_tasks


def _create_tables(
    db: Any, options: IngestOptions, plan: list[dict[str, Any]], columns: list[tables.Column], srid: int, ledger: str
) -> None:
    """The staging tables and the ledger, created here once (never by the parallel load tasks)."""
    if options.if_exists == "fail":
        taken = [p["target"] for p in plan if tables.table_exists(db, options.schema, p["target"])]
        if taken:
            raise InvalidInput(
                f"table(s) {', '.join(f'{options.schema}.{t}' for t in taken)} already exist (if_exists=fail)",
                field="if_exists",
            )
    for entry in plan:
        tables.create_staging(
            db, options.schema, entry["staging"], columns, entry["geometry_type"], srid, unlogged=options.unlogged
        )
    tables.create_ledger(db, options.schema, ledger)


PREPARE_THREADS = 2
_CHUNKS_PER_BATCH = len(FAMILIES) + 1  # chunk id = batch index * 4 + family code


@dataclass
class _Converted:
    chunks: list[tuple[int, dict[str, Any]]]  # (family code, chunk record)
    repaired: int
    skipped: int


def _convert_batch(
    batch: Any,
    names: list[str],
    index: int,
    first_row: int,
    *,
    transformer: Any,
    geographic: bool,
    invalid: str,
    target_crs: CRS,
    job_id: str,
    token: str,
    storage: Any,
    work: str,
) -> _Converted:
    """One batch: geometry rules applied, split by family, written as GeoParquet chunks."""
    attributes = pa.Table.from_arrays([_decoded(c) for c in batch.attributes.columns], names=names)
    done = process_wkb(batch.wkb, transformer=transformer, invalid=invalid, geographic=geographic)
    count = len(batch.wkb)
    gid = np.arange(first_row + 1, first_row + count + 1, dtype=np.int64)
    chunks: list[tuple[int, dict[str, Any]]] = []
    for code in range(_CHUNKS_PER_BATCH):
        rows = np.flatnonzero(done.keep & (done.family == code))
        if not len(rows):
            continue
        z = bool(done.has_z[rows].any())
        family = FAMILIES[code - 1] if code else None
        types = [MULTI_TYPES[family] + (" Z" if z else "")] if family else []
        if len(rows) == count:  # the usual case (one family, nothing skipped): the batch as it is, no copy
            chosen, ids, wkb = attributes, gid, done.wkb
        else:
            take = pa.array(rows)
            chosen, ids, wkb = attributes.take(take), gid[rows], done.wkb.take(take)
        data = chunk_io.encode_chunk(
            chosen,
            pa.array(ids),
            wkb,
            chunk_io.geo_metadata(target_crs, types, None),
        )
        chunk_id = index * _CHUNKS_PER_BATCH + code
        name = chunk_io.chunk_name(job_id, token, chunk_id)
        storage.write_bytes(work, name, data, content_type=chunk_io.PARQUET_CONTENT_TYPE)
        record: dict[str, Any] = {"chunk": chunk_id, "blob": name, "rows": len(rows), "z": z}
        if code:
            box = done.bounds[rows]
            record["bounds"] = (
                [float(np.nanmin(box[:, i])) for i in (0, 1)]
                + [float(np.nanmax(box[:, i])) for i in (2, 3)]
                + [float(np.nanmin(box[:, 4])), float(np.nanmax(box[:, 5]))]
            )
        chunks.append((code, record))
    return _Converted(chunks, done.repaired, done.skipped)


def _decoded(array: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        return array.dictionary_decode()
    return array


def load(
    *,
    schema: str,
    staging: str,
    ledger: str,
    chunk: int,
    blob: str,
    table_z: bool,
    chunk_z: bool,
    storage: Any,
    db: Any,
    settings: Any,
) -> dict[str, Any]:
    """COPY one chunk into its staging table (a second run of the same chunk loads nothing)."""
    started = time.perf_counter()
    data = chunk_io.decode_chunk(storage.read_bytes(settings.vector.vector_work_container, blob))
    if table_z and not chunk_z:  # this chunk's rows are all 2D, the table is Z: give them z = 0
        geoms, _ = parse_wkb(data.column(GEOMETRY_COLUMN).combine_chunks())
        index = data.column_names.index(GEOMETRY_COLUMN)
        data = data.set_column(index, GEOMETRY_COLUMN, encode_wkb(geoms, True))
    loaded = tables.load_chunk(
        db, schema, staging, ledger, chunk, data, timeout_ms=settings.vector.vector_load_timeout_ms
    )
    return {
        "chunk": chunk,
        "staging": staging,
        "rows": data.num_rows if loaded else 0,
        "already_loaded": not loaded,
        "seconds": round(time.perf_counter() - started, 3),
    }


def stac_item(description: dict[str, Any], *, job_id: str, options: IngestOptions, database: str) -> dict[str, Any]:
    """A STAC item for a loaded table: its WGS84 extent as geometry, the table's shape as properties."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    bbox = description["extent_wgs84"] or [-180.0, -90.0, 180.0, 90.0]
    west, south, east, north = bbox
    if west == east or south == north:  # a single point: a degenerate but valid box
        west, east, south, north = west - 1e-9, east + 1e-9, south - 1e-9, north + 1e-9

    def ring(w: float, e: float) -> list[list[list[float]]]:
        return [[[w, south], [e, south], [e, north], [w, north], [w, south]]]

    geometry: dict[str, Any] = (
        {"type": "MultiPolygon", "coordinates": [ring(west, 180.0), ring(-180.0, east)]}
        if west > east  # crosses the antimeridian: split there, as STAC asks
        else {"type": "Polygon", "coordinates": ring(west, east)}
    )
    qualified = f"{description['schema']}.{description['table']}"
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
        "id": f"{description['schema']}.{description['table']}",
        "collection": VECTORS_COLLECTION,
        "geometry": geometry,
        "bbox": [west, south, east, north],
        "properties": {
            "datetime": now,
            "created": now,
            "updated": now,
            "title": qualified,
            "description": f"PostGIS table {qualified} loaded by ingest_vector from "
            f"{options.container_name}/{options.blob_name}",
            "geoetl:primary_geometry": GEOMETRY_COLUMN,
            "geoetl:row_count": description["rows"],
            "geoetl:columns": [{"name": c["name"], "type": c["type"]} for c in description["columns"]],
            "proj:code": f"EPSG:{description['srid']}" if description["srid"] else None,
            "geoetl:schema": description["schema"],
            "geoetl:table": description["table"],
            "geoetl:geometry_type": description["geometry_type"],
            "geoetl:srid": description["srid"],
            "geoetl:job_id": job_id,
            "geoetl:source": f"{options.container_name}/{options.blob_name}",
        },
        "links": [{"rel": "collection", "href": f"../../{VECTORS_COLLECTION}", "type": "application/json"}],
        "assets": {
            "table": {
                "href": f"postgresql:///{database}?table={qualified}",
                "type": "application/vnd.postgresql.table",
                "title": f"PostGIS table {qualified}",
                "roles": ["data"],
            }
        },
    }


def finalize(
    options: IngestOptions,
    prepared: dict[str, Any],
    *,
    job_id: str,
    storage: Any,
    db: Any,
    settings: Any,
    register: Callable[[Any, dict[str, Any]], None] | None = None,
    guard: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Swap the staging tables into place, describe them, register STAC items and delete the chunks.

    ``guard`` runs first in the swap's transaction (the job passes ``ensure_run_alive``): a finalize that runs
    after its job was cancelled or failed raises there and leaves the target untouched; ``register`` should
    guard its own transaction the same way."""
    started = time.perf_counter()
    plans = [
        tables.TablePlan(p["family"], p["target"], p["staging"], int(p["expected_rows"])) for p in prepared["tables"]
    ]
    comment = f"geoetl ingest_vector job {job_id} from {options.container_name}/{options.blob_name}"
    steps: dict[str, float] = {}
    mark = time.perf_counter()

    def step(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        steps[name] = round(now - mark, 3)
        mark = now

    if options.if_exists != "append" or not all(tables.table_exists(db, options.schema, p.target) for p in plans):
        tables.prepare_indexes(
            db,
            options.schema,
            [p.staging for p in plans],
            unlogged=options.unlogged,
            timeout_ms=settings.vector.vector_load_timeout_ms,
        )
    step("indexes")
    loaded = tables.finalize_tables(
        db,
        options.schema,
        plans,
        ledger=prepared["ledger"],
        if_exists=options.if_exists,
        unlogged=options.unlogged,
        comment=comment,
        job_id=job_id,
        timeout_ms=settings.vector.vector_load_timeout_ms,
        guard=guard,
    )
    step("swap")
    known = {p["target"]: p for p in prepared["tables"]} if options.if_exists != "append" else {}
    described = [
        tables.describe_table(
            db,
            options.schema,
            p.target,
            bounds=known[p.target].get("bounds") if p.target in known else None,
        )
        for p in plans
    ]
    step("describe")
    items: list[str] = []
    if register is not None:
        for description in described:
            item = stac_item(description, job_id=job_id, options=options, database=db.settings.pgdatabase)
            register(db, item)
            items.append(item["id"])
    step("stac")
    mine = parse_token(prepared["token"])
    assert mine is not None
    work = settings.vector.vector_work_container
    removed = clear_chunks(storage, work, job_id, which=lambda run, attempt: (run, attempt) == mine, only_chunks=True)
    # what other prepare attempts of this run (or earlier runs) may have left: they lost their task, and this
    # run succeeded (the plan blob of this attempt goes last, in the job's finalize)
    others = sweep(
        db, storage, options.schema, work, job_id, lambda run, attempt: run <= mine[0] and (run, attempt) != mine
    )
    removed += others["removed_blobs"]
    step("cleanup")
    counted = {d["table"]: d["rows"] for d in described}
    return {
        "tables": described,
        # rows this job loaded: the ledger's COPY counts (a finalize re-run after the swap: the table's count, or
        # for an append the plan's count, which the first run verified)
        "loaded_rows": sum(
            loaded.get(p.target, counted[p.target] if options.if_exists != "append" else p.expected_rows) for p in plans
        ),
        "stac_items": items,
        "chunks_removed": removed,
        "seconds": round(time.perf_counter() - started, 3),
        "steps": steps,
    }


def cleanup_run(schema: str, *, job_id: str, run: int, storage: Any, db: Any, settings: Any) -> dict[str, Any]:
    """Remove every staging/ledger table and intermediate blob of run ``run`` of a job (every prepare attempt)
    and of its earlier runs; a later run's objects are untouched. Idempotent."""
    return sweep(db, storage, schema, settings.vector.vector_work_container, job_id, lambda r, _attempt: r <= run)
