"""``duckdb_query``: one sandboxed, read-only SQL query over files in storage, with DuckDB.

The query is checked at submit with DuckDB's own parser (one SELECT, files only as
``storage://<container>/<path>`` literals; see docs/duckdb.md), so every refused query
is an HTTP 400 that says why. One task runs it on a locked in-memory connection and
returns the rows inline (``json``) or writes them to storage (``parquet``,
``geoparquet``, ``csv``) at ``<silver|gold>/duckdb/<job_id>/<output_name>``: a query can
write only below its own job's folder, never over other data. The job result holds the
rows or the file's place, the row count and the columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.contract import JobDefinition, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from core.errors import InvalidInput
from infrastructure.context import get_app_context
from jobs import registry
from services.duckdb.query import QueryRequest, run_query, validate_output_name
from services.duckdb.sandbox import MAX_SQL_LENGTH, check_sql


class DuckdbQueryParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(
        ...,
        min_length=1,
        max_length=MAX_SQL_LENGTH,
        description="One read-only SELECT (or WITH ... SELECT); files as 'storage://<container>/<path>' (globs)",
    )
    output_format: Literal["json", "parquet", "geoparquet", "csv"] = Field(
        "json", description="json: rows inline in the job result; parquet, geoparquet, csv: a file in storage"
    )
    output_container: Literal["silver", "gold"] = Field(
        "silver",
        description="Container of the output file: the configured silver (default) or gold one; unused for json",
    )
    output_name: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="File name of the output, written as duckdb/<job_id>/<output_name> (default result.<ext>)",
    )
    row_limit: int | None = Field(
        None,
        ge=1,
        description="Most rows returned or written (default and cap: DUCKDB_MAX_ROWS_INLINE for json, "
        "DUCKDB_ROW_LIMIT_CAP for files)",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_blob_paths(cls, data: Any) -> Any:
        if isinstance(data, dict) and "output_blob" in data:
            raise ValueError(
                "output_blob is not accepted: a result file is always written under duckdb/<job_id>/ in the silver "
                "or gold container; name the file with output_name"
            )
        return data


class RunQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")


@registry.task("duckdb_query.run")
def run(params: RunQuery, context: TaskContext) -> dict[str, Any]:
    job = DuckdbQueryParameters.model_validate(context.job_parameters)
    settings = context.settings
    storage = settings.storage
    container = storage.storage_container_gold if job.output_container == "gold" else storage.storage_container_silver
    return run_query(
        QueryRequest(job.sql, job.output_format, job.output_name, job.row_limit),
        context.storage,
        settings.analytics,
        job_id=context.job_id,
        output_container=container,
    )


@registry.job
class DuckdbQuery(JobDefinition[DuckdbQueryParameters]):
    job_type = "duckdb_query"
    description = "Sandboxed read-only DuckDB SQL over Parquet, CSV, JSON, GeoParquet and OGR files in storage"
    parameters_model = DuckdbQueryParameters
    stages = (Stage("query", "duckdb_query.run", Parallelism.SINGLE),)

    def validate_submission(self, params: DuckdbQueryParameters) -> None:
        check_sql(params.sql)
        # json: the default container is simply unused (spelled out or not, the same job); another one, or a
        # file name, asks for a file that json does not write
        if params.output_format == "json":
            for given, name in ((params.output_name is not None, "output_name"),
                                (params.output_container != "silver", "output_container gold")):  # fmt: skip
                if given:
                    raise InvalidInput(
                        f"{name} is for output_format parquet, geoparquet or csv; json rows are returned inline",
                        field="output_format",
                    )
        if params.output_name is not None:
            validate_output_name(params.output_name)
        analytics = get_app_context().settings.analytics
        cap = analytics.duckdb_max_rows_inline if params.output_format == "json" else analytics.duckdb_row_limit_cap
        if params.row_limit is not None and params.row_limit > cap:
            setting = "DUCKDB_MAX_ROWS_INLINE" if params.output_format == "json" else "DUCKDB_ROW_LIMIT_CAP"
            raise InvalidInput(
                f"row_limit {params.row_limit} is above the most allowed for output_format {params.output_format} "
                f"({cap}, {setting})",
                field="row_limit",
            )

    def create_tasks(self, stage: int, params: DuckdbQueryParameters, previous: PreviousStage) -> Sequence[BaseModel]:
        return [RunQuery()]

    def finalize(self, params: DuckdbQueryParameters, results: JobResults) -> dict[str, Any]:
        for result in results.stage(1):
            return dict(result)
        raise InvalidInput("the query task left no result")
