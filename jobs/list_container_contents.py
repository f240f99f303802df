"""``list_container_contents``: the inventory of a container of any size, in PostgreSQL and as Parquet.

Stages: list (single: pages through the listing with continuation tokens, one page in memory at a
time, each page written as a Parquet file; the result is a list of page references) → inspect
(fan_out over groups of pages: with ``include_metadata``, header reads of rasters and vectors) →
write (fan_in: every page into ``geoetl.inventory`` with delete-then-COPY in one transaction, and
into ``gold/inventories/<job_id>/inventory.parquet``, then the job's work files are deleted). ``cleanup`` deletes
the work files of a failed or cancelled run.

The ``container.list`` handler is shared with ``summarize_container``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.contract import JobDefinition, JobEnd, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from core.errors import InvalidInput
from infrastructure.context import get_app_context
from infrastructure.storage.names import validate_blob_prefix, validate_container_name
from jobs import registry
from services.container import inventory, listing


class ContainerParameters(BaseModel):
    """What the container jobs share."""

    model_config = ConfigDict(extra="forbid")

    container_name: str = Field(min_length=3, max_length=63, description="The container to inventory")
    prefix: str = Field("", max_length=1024, description="Only blobs whose names start with this")
    file_limit: int | None = Field(None, ge=1, description="Stop after this many blobs (the result says so)")

    @field_validator("container_name")
    @classmethod
    def _check_container(cls, value: str) -> str:
        return validate_container_name(value)

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        validate_blob_prefix(value)
        return value


def check_container_exists(params: ContainerParameters) -> None:
    if not get_app_context().storage.container_exists(params.container_name):
        raise InvalidInput(f"container {params.container_name!r} does not exist", field="container_name")


class ListPages(BaseModel):
    model_config = ConfigDict(extra="forbid")

    container: str
    prefix: str = ""
    file_limit: int | None = None
    page_size: int = Field(ge=1, le=5000)


class PageRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int
    blob: str
    blobs: int
    bytes: int
    enriched: bool = False


class ListResult(BaseModel):
    work_prefix: str  # the job's work folder in the work container
    pages: list[PageRef]
    blobs: int
    bytes: int
    truncated: bool


@registry.task("container.list")
def list_pages(params: ListPages, context: TaskContext) -> ListResult:
    """Page through the listing; each page becomes a Parquet file in the work container."""
    work = listing.Work.for_job(context.settings.analytics.inventory_work_container, context.job_id)
    found = listing.list_to_pages(
        context.storage,
        params.container,
        params.prefix,
        work,
        page_size=params.page_size,
        file_limit=params.file_limit,
        keep_going=context.heartbeat,
    )
    return ListResult(
        work_prefix=work.prefix,
        pages=[PageRef(**p.as_dict()) for p in found.pages],
        blobs=found.blobs,
        bytes=found.bytes,
        truncated=found.truncated,
    )


def list_task(params: ContainerParameters) -> ListPages:
    page_size = get_app_context().settings.analytics.inventory_page_size
    return ListPages(
        container=params.container_name, prefix=params.prefix, file_limit=params.file_limit, page_size=page_size
    )


def page_groups(previous: PreviousStage) -> list[list[dict[str, Any]]]:
    pages: list[dict[str, Any]] = previous.results[0]["pages"] if previous.results else []
    per_task = get_app_context().settings.analytics.inventory_pages_per_task
    return list(listing.group_pages(pages, per_task))


def listing_summary(results: JobResults) -> dict[str, Any]:
    listed = next(results.stage(1))
    return {"pages": len(listed["pages"]), "truncated": listed["truncated"]}


class ListContentsParameters(ContainerParameters):
    include_metadata: bool = Field(
        False, description="Read format, CRS, size and bounds of rasters and vectors from their headers"
    )


class Inspect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    container: str
    pages: list[PageRef] = Field(min_length=1)
    include_metadata: bool


class Write(BaseModel):
    model_config = ConfigDict(extra="forbid")


@registry.task("list_container_contents.inspect")
def inspect(params: Inspect, context: TaskContext) -> dict[str, Any]:
    """With metadata: each page's rasters and vectors read from their headers (an enriched page file)."""
    if not params.include_metadata:
        return {"pages": [p.model_dump() for p in params.pages]}
    work = listing.Work.for_job(context.settings.analytics.inventory_work_container, context.job_id)
    out: list[dict[str, Any]] = []
    for page in params.pages:
        target = work.page_blob(page.index, "inspected")
        counts = inventory.inspect_page(context.storage, params.container, work.container, page.blob, target)
        out.append({**page.model_dump(), "blob": target, "enriched": True, **{"counts": counts}})
    return {"pages": [{k: v for k, v in p.items() if k != "counts"} for p in out]}


@registry.task("list_container_contents.write")
def write(params: Write, context: TaskContext) -> dict[str, Any]:
    """Every page into geoetl.inventory (replacing this job's rows) and into one Parquet file in gold; then the
    job's work files are deleted. A retry after that finds the inventory complete and only reports it."""
    work = listing.Work.for_job(context.settings.analytics.inventory_work_container, context.job_id)
    gold = context.settings.storage.storage_container_gold
    expected = sum(int(page["blobs"]) for result in context.previous_results(page_size=100) for page in result["pages"])
    done = inventory.written_inventory(
        context.storage, context.db, job_id=context.job_id, expected_rows=expected, output_container=gold
    )
    if done is None:
        pages = (page for result in context.previous_results(page_size=100) for page in result["pages"])
        done = inventory.write_inventory(
            context.storage,
            context.db,
            job_id=context.job_id,
            container=context.job_parameters["container_name"],
            work_container=work.container,
            pages=pages,
            output_container=gold,
            keep_going=context.heartbeat,
        )
    if context.heartbeat():  # an attempt that lost its task leaves the files to the attempt that has it
        work.delete(context.storage)
    return done


def delete_work(end: JobEnd) -> dict[str, Any]:
    """The clean-up of a failed or cancelled run of a container job: its work files (a newer run of the job
    uses the same folder, so they are left to it when one has started)."""
    if end.status not in ("failed", "cancelled"):
        return {"deleted_work_files": 0, "skipped": f"the run {end.status}; a newer run owns the work folder"}
    work = listing.Work.for_job(end.settings.analytics.inventory_work_container, end.job_id)
    return {"deleted_work_files": work.delete(end.storage)}


@registry.job
class ListContainerContents(JobDefinition[ListContentsParameters]):
    job_type = "list_container_contents"
    description = "Inventory of a container (any size) into geoetl.inventory and a Parquet file in gold"
    parameters_model = ListContentsParameters
    stages = (
        Stage("list", "container.list", Parallelism.SINGLE),
        Stage("inspect", "list_container_contents.inspect", Parallelism.FAN_OUT),
        Stage("write", "list_container_contents.write", Parallelism.FAN_IN),
    )

    def validate_submission(self, params: ListContentsParameters) -> None:
        check_container_exists(params)

    def cleanup(self, params: ListContentsParameters, end: JobEnd) -> dict[str, Any]:
        return delete_work(end)

    def create_tasks(self, stage: int, params: ListContentsParameters, previous: PreviousStage) -> Sequence[BaseModel]:
        if stage == 1:
            return [list_task(params)]
        return [
            Inspect(
                container=params.container_name,
                pages=[PageRef(**p) for p in group],
                include_metadata=params.include_metadata,
            )
            for group in page_groups(previous)
        ]

    def finalize(self, params: ListContentsParameters, results: JobResults) -> dict[str, Any]:
        written = next(results.stage(3))
        return {
            "container": params.container_name,
            "prefix": params.prefix,
            "include_metadata": params.include_metadata,
            **listing_summary(results),
            **written,
        }
