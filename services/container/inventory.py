"""The inventory of a listing: page files enriched with extension, kind and header metadata, then written once
per job to ``geoetl.inventory`` (delete, then COPY, in one transaction) and to a Parquet file in ``gold``."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import csv

from core.errors import LeaseExpired
from infrastructure.db.database import Database
from infrastructure.storage.base import BlobStore
from services.container.listing import LISTING_SCHEMA, extension_of, read_table, table_bytes
from services.container.metadata import BlobMetadata, kind_of, page_metadata

INVENTORY_TABLE = "geoetl.inventory"
METADATA_FIELDS = [
    pa.field("extension", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("format", pa.string()),
    pa.field("crs", pa.string()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("band_count", pa.int32()),
    pa.field("dtype", pa.string()),
    pa.field("feature_count", pa.int64()),
    pa.field("geometry_type", pa.string()),
    pa.field("bounds", pa.list_(pa.float64())),
    pa.field("metadata_error", pa.string()),
    pa.field("details", pa.string()),  # JSON text
]
PAGE_SCHEMA = pa.schema(list(LISTING_SCHEMA) + METADATA_FIELDS)
INVENTORY_SCHEMA = pa.schema([pa.field("container", pa.string(), nullable=False), *PAGE_SCHEMA])
DB_COLUMNS = [f.name for f in INVENTORY_SCHEMA]


def parquet_blob(job_id: str) -> str:
    """Where a job's inventory Parquet file goes in the gold container."""
    return f"inventories/{job_id}/inventory.parquet"


def enrich(listing: pa.Table, metadata: list[BlobMetadata] | None) -> pa.Table:
    """A listing page with the metadata columns (extension and kind only when ``metadata`` is None)."""
    names = listing.column("name").to_pylist()
    extensions = [extension_of(n) for n in names]
    rows = (
        [m.as_row() for m in metadata]
        if metadata is not None
        else [BlobMetadata(kind_of(e)).as_row() for e in extensions]
    )
    columns: dict[str, Any] = {name: listing.column(name) for name in LISTING_SCHEMA.names}
    columns["extension"] = extensions
    for f in METADATA_FIELDS[1:]:
        values = [r[f.name] for r in rows]
        if f.name == "details":
            values = [None if v is None else json.dumps(v, sort_keys=True, default=str) for v in values]
        columns[f.name] = values
    return pa.table(columns, schema=PAGE_SCHEMA)


def inspect_page(
    storage: BlobStore, container: str, work_container: str, page_blob: str, target_blob: str, threads: int = 4
) -> dict[str, int]:
    """Read the headers of a page's rasters and vectors and write the enriched page to ``target_blob``."""
    listing = read_table(storage, work_container, page_blob)
    names = listing.column("name").to_pylist()
    extensions = [extension_of(n) for n in names]
    metadata = page_metadata(storage, container, names, extensions, threads)
    storage.write_bytes(work_container, target_blob, table_bytes(enrich(listing, metadata)))
    kinds = Counter(m.kind for m in metadata)
    return {
        "rasters": kinds["raster"],
        "vectors": kinds["vector"],
        "metadata_errors": sum(1 for m in metadata if m.metadata_error),
    }


def _csv(table: pa.Table, job_id: str) -> bytes:
    """The rows as CSV for ``COPY ... (FORMAT csv)``: every value quoted, NULLs as nothing; arrays as PostgreSQL
    array literals."""
    bounds = [
        None if b is None else "{" + ",".join(repr(float(v)) for v in b) + "}" for b in table["bounds"].to_pylist()
    ]
    out = table.set_column(table.schema.get_field_index("bounds"), "bounds", pa.array(bounds, pa.string()))
    out = out.add_column(0, "job_id", pa.array([job_id] * table.num_rows, pa.string()))
    sink = io.BytesIO()
    csv.write_csv(out, sink, csv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return sink.getvalue()


def _page(storage: BlobStore, work_container: str, ref: dict[str, Any]) -> pa.Table:
    table = read_table(storage, work_container, ref["blob"])
    return table.cast(PAGE_SCHEMA) if ref.get("enriched") else enrich(table, None)


def written_inventory(
    storage: BlobStore, db: Database, *, job_id: str, expected_rows: int, output_container: str
) -> dict[str, Any] | None:
    """The summary of this job's inventory when an earlier attempt of the write committed it whole (the table
    holds ``expected_rows`` rows of the job and the Parquet file exists), else None."""
    row = db.fetch_one(
        f"SELECT count(*) AS n, coalesce(sum(size_bytes), 0)::bigint AS bytes,"
        f" count(*) FILTER (WHERE kind = 'raster') AS rasters, count(*) FILTER (WHERE kind = 'vector') AS vectors,"
        f" count(metadata_error) AS errors FROM {INVENTORY_TABLE} WHERE job_id = %s",
        (job_id,),
    )
    if row is None or int(row["n"]) != expected_rows or not storage.exists(output_container, parquet_blob(job_id)):
        return None
    return _result(int(row["n"]), int(row["bytes"]), int(row["rasters"]), int(row["vectors"]), int(row["errors"]),
                   output_container, job_id)  # fmt: skip


def _result(
    blobs: int, size: int, rasters: int, vectors: int, errors: int, output_container: str, job_id: str
) -> dict[str, Any]:
    return {
        "blobs": blobs,
        "total_bytes": size,
        "rasters": rasters,
        "vectors": vectors,
        "metadata_errors": errors,
        "table": INVENTORY_TABLE,
        "parquet": {"container": output_container, "blob": parquet_blob(job_id)},
    }


def write_inventory(
    storage: BlobStore,
    db: Database,
    *,
    job_id: str,
    container: str,
    work_container: str,
    pages: Iterable[dict[str, Any]],
    output_container: str,
    keep_going: Callable[[], bool] = lambda: True,
) -> dict[str, Any]:
    """Write every page's rows to the table and to one Parquet file; replaces an earlier attempt's rows."""
    blobs = size = errors = 0
    kinds: Counter[str] = Counter()
    fd, temp = tempfile.mkstemp(prefix="inventory-", suffix=".parquet")
    os.close(fd)
    try:
        writer = pq.ParquetWriter(temp, INVENTORY_SCHEMA, compression="zstd")
        try:
            with db.transaction(statement_timeout_ms=1_800_000) as conn:
                conn.execute(f"DELETE FROM {INVENTORY_TABLE} WHERE job_id = %s", (job_id,))
                columns = ", ".join(["job_id", *DB_COLUMNS])
                copy_sql = f"COPY {INVENTORY_TABLE} ({columns}) FROM STDIN WITH (FORMAT csv)"
                with conn.cursor().copy(copy_sql) as copy:
                    for ref in pages:
                        if not keep_going():
                            raise LeaseExpired("the inventory write stopped: this task no longer owns its lease")
                        table = _page(storage, work_container, ref)
                        table = table.add_column(
                            0, INVENTORY_SCHEMA.field("container"), pa.array([container] * table.num_rows, pa.string())
                        )
                        writer.write_table(table)
                        copy.write(_csv(table, job_id))
                        blobs += table.num_rows
                        size += pc.sum(table.column("size_bytes")).as_py() or 0
                        kinds.update(table.column("kind").to_pylist())
                        errors += table.num_rows - table.column("metadata_error").null_count
                writer.close()
                storage.upload_file(output_container, parquet_blob(job_id), Path(temp))
        finally:
            writer.close()
    finally:
        Path(temp).unlink(missing_ok=True)
    return _result(blobs, size, kinds["raster"], kinds["vector"], errors, output_container, job_id)
