"""GeoParquet chunks: the intermediate files between the prepare and load stages of ingest_vector.

A chunk holds ``gid`` (the source row number), the laundered attribute columns and ``geom`` (WKB), with
GeoParquet 1.1 ``geo`` metadata naming the CRS and geometry types. Chunks live under a job-scoped prefix
(``tmp/ingest_vector/<job_id>/r<run>a<attempt>/``) of the work container; they are written whole (atomically)
and read whole.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyproj import CRS

from core.errors import InvalidInput
from services.vector.names import GEOMETRY_COLUMN, ID_COLUMN

CHUNK_PREFIX = "tmp/ingest_vector"
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


def job_prefix(job_id: str) -> str:
    """Every intermediate blob of a job (all runs and attempts)."""
    return f"{CHUNK_PREFIX}/{job_id}/"


def attempt_prefix(job_id: str, token: str) -> str:
    """The intermediate blobs of one prepare attempt of one run (``token``: names.run_token)."""
    return f"{job_prefix(job_id)}{token}/"


def token_of_blob(job_id: str, name: str) -> str | None:
    """The run token folder of one of the job's intermediate blobs (None for anything else)."""
    prefix = job_prefix(job_id)
    if not name.startswith(prefix) or "/" not in name[len(prefix) :]:
        return None
    return name[len(prefix) :].split("/", 1)[0]


def chunk_name(job_id: str, token: str, chunk: int) -> str:
    return f"{attempt_prefix(job_id, token)}chunk-{chunk:06d}.parquet"


def plan_name(job_id: str, token: str) -> str:
    """The prepared plan (without the chunk list) that the finalize stage reads."""
    return f"{attempt_prefix(job_id, token)}plan.json"


def geo_metadata(crs: CRS, geometry_types: Sequence[str], bbox: Sequence[float] | None) -> dict[str, Any]:
    column: dict[str, Any] = {"encoding": "WKB", "geometry_types": list(geometry_types), "crs": crs.to_json_dict()}
    if bbox is not None:
        column["bbox"] = [float(v) for v in bbox]
    return {"version": "1.1.0", "primary_column": GEOMETRY_COLUMN, "columns": {GEOMETRY_COLUMN: column}}


def encode_chunk(attributes: pa.Table, gid: pa.Array, wkb: pa.Array, geo: dict[str, Any]) -> bytes:
    """The chunk as GeoParquet bytes (LZ4: fast to write and read; no dictionary for the geometry)."""
    table = attributes.add_column(0, ID_COLUMN, gid).append_column(GEOMETRY_COLUMN, wkb)
    metadata = dict(table.schema.metadata or {}) | {b"geo": json.dumps(geo).encode()}
    table = table.replace_schema_metadata(metadata)
    sink = io.BytesIO()
    dictionary = [name for name in table.column_names if name != GEOMETRY_COLUMN]
    pq.write_table(table, sink, compression="lz4", use_dictionary=dictionary)
    return sink.getvalue()


def decode_chunk(data: bytes) -> pa.Table:
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"an intermediate chunk is not readable GeoParquet: {exc}") from exc
