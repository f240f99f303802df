"""``ingest_vector``: a vector file in storage → PostGIS table(s), chunked, loaded in parallel, idempotent.

Stages: **prepare** (single) inspects the file, writes its features as GeoParquet chunks under
``tmp/ingest_vector/<job_id>/`` of the work container and creates the staging table(s) once;
**load** (fan_out) COPYs one chunk per task, recorded in a ledger so a re-run chunk loads nothing;
**finalize** (single) adds the key and the spatial index, checks the counts, swaps the staging tables
into place in one transaction, registers a STAC item per table and deletes the chunks. See docs/jobs.md.
"""

from __future__ import annotations

import codecs
import contextlib
import json
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.contract import JobDefinition, JobEnd, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from core.errors import GeoetlError, InvalidInput
from core.models import parse_task_id
from infrastructure.context import get_app_context
from infrastructure.db.jobs.guard import ensure_run_alive
from jobs import registry
from services.stac.catalog import upsert_item
from services.vector import ingest, tables
from services.vector.formats import SEPARATORS, format_of
from services.vector.geometry import resolve_crs, srid_of
from services.vector.names import PROTECTED_SCHEMAS, STAGING_PREFIX, launder, run_token


class IngestVectorParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)

    container_name: str = Field("bronze", min_length=3, max_length=63, description="Container of the input file")
    blob_name: str = Field(..., min_length=1, max_length=1024, description="The input file (blob name)")
    file_extension: str | None = Field(
        None,
        max_length=16,
        description="geojson, json, gpkg, zip (shapefile), csv, kml, kmz, parquet, fgb; default: from blob_name",
    )
    table_name: str | None = Field(
        None, max_length=200, description="Target table (laundered); default: the file's stem, laundered"
    )
    schema_name: str = Field("geo", alias="schema", max_length=200, description="Target schema (must exist)")
    layer_name: str | None = Field(
        None, max_length=1000, description="Layer of a multi-layer file (GeoPackage, KML, zip of shapefiles)"
    )
    source_crs: str | None = Field(None, max_length=10_000, description="CRS of a file that declares none")
    target_crs: str = Field("EPSG:4326", max_length=10_000, description="CRS of the table (needs an EPSG code)")
    lat_column: str | None = Field(None, max_length=200, description="CSV: latitude column (default: detected)")
    lon_column: str | None = Field(None, max_length=200, description="CSV: longitude column (default: detected)")
    wkt_column: str | None = Field(None, max_length=200, description="CSV: WKT geometry column (default: detected)")
    delimiter: str | None = Field(None, max_length=1, description="CSV delimiter (default: sniffed)")
    encoding: str | None = Field(None, max_length=40, description="Text encoding (default: the file's, or UTF-8)")
    if_exists: Literal["fail", "replace", "append"] = Field("fail", description="When the table exists")
    chunk_size: int | None = Field(
        None, ge=10, le=1_000_000, description="Rows per chunk (a load task); default chosen from the file"
    )
    invalid_geometry: Literal["repair", "skip"] = Field(
        "repair", description="Invalid geometries are repaired (make_valid) or skipped and counted"
    )

    @model_validator(mode="after")
    def _names(self) -> IngestVectorParameters:
        blob = PurePosixPath(self.blob_name)
        if self.file_extension is None:
            if not blob.suffix:
                raise ValueError("blob_name has no extension: pass file_extension")
            self.file_extension = blob.suffix.lstrip(".").lower()
        else:
            self.file_extension = self.file_extension.lower().lstrip(".")
        requested = self.table_name if self.table_name is not None else blob.stem
        table = launder(requested)
        if not table or table.startswith(STAGING_PREFIX):
            raise ValueError(f"table_name {requested!r} is not a usable table name (after laundering: {table!r})")
        self.table_name = table
        schema = launder(self.schema_name)
        if not schema or schema != self.schema_name.strip().lower():
            raise ValueError(f"schema {self.schema_name!r} is not a valid schema name (use e.g. {schema or 'geo'!r})")
        if schema in PROTECTED_SCHEMAS or schema.startswith("pg_"):
            raise ValueError(f"schema {schema!r} is reserved; use geo or a schema of your own")
        self.schema_name = schema
        if self.encoding is not None and self.file_extension not in ("csv", "txt", "tsv", "zip"):
            raise ValueError("encoding applies to CSV files and zipped shapefiles only (other formats declare theirs)")
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ValueError(f"unknown encoding {self.encoding!r}") from None
        if self.delimiter is not None and self.delimiter not in SEPARATORS:
            raise ValueError(f"delimiter {self.delimiter!r} is not supported: use one of {list(SEPARATORS)}")
        return self


class PrepareTask(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoadTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chunk: int
    blob: str
    rows: int
    staging: str
    ledger: str
    plan_blob: str
    table_z: bool
    chunk_z: bool


class FinalizeTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chunks: int
    plan_blob: str


def _options(raw: Any, settings: Any) -> ingest.IngestOptions:
    params = IngestVectorParameters.model_validate(dict(raw))
    assert params.file_extension is not None and params.table_name is not None
    return ingest.IngestOptions(
        container_name=params.container_name,
        blob_name=params.blob_name,
        file_extension=params.file_extension,
        table_name=params.table_name,
        schema=params.schema_name,
        layer_name=params.layer_name,
        source_crs=params.source_crs,
        target_crs=params.target_crs,
        lat_column=params.lat_column,
        lon_column=params.lon_column,
        wkt_column=params.wkt_column,
        delimiter=params.delimiter,
        encoding=params.encoding,
        if_exists=params.if_exists,
        chunk_size=params.chunk_size,
        invalid_geometry=params.invalid_geometry,
        unlogged=settings.vector.vector_unlogged_load,
    )


def _token(context: TaskContext) -> str:
    """This run and prepare attempt, which name the staging tables, the ledger and the chunk folder."""
    parsed = parse_task_id(context.task_id)
    if parsed is None:
        raise InvalidInput(f"task id {context.task_id!r} names no run")
    return run_token(parsed[1], context.attempt)


@registry.task("ingest_vector.prepare")
def prepare(params: PrepareTask, context: TaskContext) -> dict[str, Any]:
    options = _options(context.job_parameters, context.settings)
    return ingest.prepare(
        options,
        job_id=context.job_id,
        token=_token(context),
        storage=context.storage,
        db=context.db,
        settings=context.settings,
        heartbeat=context.heartbeat,
    )


@registry.task("ingest_vector.load")
def load(params: LoadTask, context: TaskContext) -> dict[str, Any]:
    # a permanent failure fails the job; the job's cleanup() then removes the run's tables and chunks
    options = _options(context.job_parameters, context.settings)
    result = ingest.load(
        schema=options.schema,
        staging=params.staging,
        ledger=params.ledger,
        chunk=params.chunk,
        blob=params.blob,
        table_z=params.table_z,
        chunk_z=params.chunk_z,
        storage=context.storage,
        db=context.db,
        settings=context.settings,
    )
    return {**result, "plan_blob": params.plan_blob}


@registry.task("ingest_vector.finalize")
def finalize(params: FinalizeTask, context: TaskContext) -> dict[str, Any]:
    options = _options(context.job_parameters, context.settings)
    work = context.settings.vector.vector_work_container
    plan = json.loads(context.storage.read_bytes(work, params.plan_blob))
    task_id = context.task_id

    def alive(conn: Any) -> None:  # publish only while this run is processing (a cancel/fail serialises with it)
        ensure_run_alive(conn, task_id)

    def register(db: Any, item: dict[str, Any]) -> None:
        upsert_item(db, item, guard=alive)

    return ingest.finalize(
        options,
        plan,
        job_id=context.job_id,
        storage=context.storage,
        db=context.db,
        settings=context.settings,
        register=register,
        guard=alive,
    )


@registry.job
class IngestVector(JobDefinition[IngestVectorParameters]):
    job_type = "ingest_vector"
    description = "Load a vector file (GeoJSON, GeoPackage, zipped Shapefile, CSV, KML/KMZ, GeoParquet, FlatGeobuf) "
    "into PostGIS: chunked, parallel COPY, idempotent"
    parameters_model = IngestVectorParameters
    stages = (
        Stage("prepare", "ingest_vector.prepare", Parallelism.SINGLE),
        Stage("load", "ingest_vector.load", Parallelism.FAN_OUT),
        Stage("finalize", "ingest_vector.finalize", Parallelism.SINGLE),
    )

    def validate_submission(self, params: IngestVectorParameters) -> None:
        assert params.file_extension is not None and params.table_name is not None
        format_of(params.file_extension)
        target = resolve_crs(params.target_crs, "target_crs")
        srid_of(target, "target_crs")
        if params.source_crs is not None:
            resolve_crs(params.source_crs, "source_crs")
        context = get_app_context()
        if not context.storage.exists(params.container_name, params.blob_name):
            raise InvalidInput(f"blob {params.container_name}/{params.blob_name} does not exist", field="blob_name")
        if not tables.schema_exists(context.db, params.schema_name):
            raise InvalidInput(f"schema {params.schema_name!r} does not exist", field="schema")
        if params.if_exists == "fail" and tables.table_exists(context.db, params.schema_name, params.table_name):
            raise InvalidInput(
                f"table {params.schema_name}.{params.table_name} already exists: pass if_exists 'replace' or 'append'",
                field="if_exists",
            )

    def cleanup(self, params: IngestVectorParameters, end: JobEnd) -> dict[str, Any]:
        """A failed or cancelled run: drop the staging and ledger tables and delete the intermediate blobs of every
        prepare attempt of that run (and of earlier runs; a later run's are untouched). The target table is
        untouched (it only changes in the last step of a run that succeeds)."""
        return ingest.cleanup_run(
            params.schema_name, job_id=end.job_id, run=end.run, storage=end.storage, db=end.db, settings=end.settings
        )

    def create_tasks(self, stage: int, params: IngestVectorParameters, previous: PreviousStage) -> Sequence[BaseModel]:
        if stage == 1:
            return [PrepareTask()]
        if stage == 2:
            prepared = previous.results[0]
            return [
                LoadTask(
                    chunk=c["chunk"],
                    blob=c["blob"],
                    rows=c["rows"],
                    staging=c["staging"],
                    ledger=prepared["ledger"],
                    plan_blob=prepared["plan_blob"],
                    table_z=c["table_z"],
                    chunk_z=c["z"],
                )
                for c in prepared["chunks"]
            ]
        return [FinalizeTask(chunks=len(previous.results), plan_blob=previous.results[0]["plan_blob"])]

    def finalize(self, params: IngestVectorParameters, results: JobResults) -> dict[str, Any]:
        prepared = next(results.stage(1))
        loads = list(results.stage(2))
        done = next(results.stage(3))
        context = get_app_context()
        with contextlib.suppress(GeoetlError):  # the plan blob: the last intermediate file (idempotent)
            context.storage.delete(context.settings.vector.vector_work_container, str(prepared["plan_blob"]))
        return {
            "tables": [
                {
                    "table": f"{t['schema']}.{t['table']}",
                    "rows": t["rows"],
                    "geometry_type": t["geometry_type"],
                    "srid": t["srid"],
                    "extent": t["extent"],
                    "extent_wgs84": t["extent_wgs84"],
                    "columns": t["columns"],
                }
                for t in done["tables"]
            ],
            "rows": {
                "source": prepared["source_rows"],
                "loaded": done["loaded_rows"],
                "repaired": prepared["repaired_rows"],
                "skipped": prepared["skipped_rows"],
            },
            "format": prepared["format"],
            "layer": prepared["layer"],
            "source_crs": prepared["source_crs"],
            "chunks": len(loads),
            "chunk_size": prepared["chunk_size"],
            "stac_items": done["stac_items"],
            "seconds": {
                "prepare": prepared["seconds"],
                "load_total": round(sum(r["seconds"] for r in loads), 3),
                "load_longest_chunk": max((r["seconds"] for r in loads), default=0.0),
                "finalize": done["seconds"],
                "prepare_steps": prepared.get("steps", {}),
                "finalize_steps": done.get("steps", {}),
            },
        }
