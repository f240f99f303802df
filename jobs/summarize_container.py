"""``summarize_container``: counts and bytes by extension and by prefix level, largest files, newest and oldest.

Stages: list (the shared ``container.list``: listing pages as Parquet files) → summarize (fan_out:
a partial summary per group of pages; its per-extension and per-prefix counts go to a Parquet file
under ``inventory-work/<job_id>/summary/``) → merge (fan_in: the exact totals and top lists; the
top 100 extensions and prefixes a level, with ``distinct`` and an ``other`` bucket). The job's finalize
deletes its work files (the merged result is stored by then); ``cleanup`` does so for a failed or cancelled run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.contract import JobDefinition, JobEnd, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from infrastructure.context import get_app_context
from jobs import registry
from jobs.list_container_contents import (
    ContainerParameters,
    PageRef,
    check_container_exists,
    delete_work,
    list_task,
    listing_summary,
    page_groups,
)
from services.container import listing, summary


class SummarizeParameters(ContainerParameters):
    prefix_depth: int = Field(2, ge=1, le=5, description="Prefix levels to count (1 = first folder)")
    top_n: int = Field(10, ge=1, le=100, description="How many largest / newest / oldest blobs to show")


class SummarizePages(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pages: list[PageRef] = Field(min_length=1)
    prefix_depth: int
    top_n: int


class Merge(BaseModel):
    model_config = ConfigDict(extra="forbid")


@registry.task("summarize_container.summarize")
def summarize_pages(params: SummarizePages, context: TaskContext) -> dict[str, Any]:
    """A partial summary of some pages: its buckets (one per extension / prefix) in a work file, totals and top
    lists in the result."""
    work = listing.Work.for_job(context.settings.analytics.inventory_work_container, context.job_id)
    return summary.summarize_pages(
        context.storage,
        work.container,
        [page.blob for page in params.pages],
        work.page_blob(params.pages[0].index, "summary"),
        params.prefix_depth,
        params.top_n,
    )


@registry.task("summarize_container.merge")
def merge(params: Merge, context: TaskContext) -> dict[str, Any]:
    depth = int(context.job_parameters["prefix_depth"])
    top = int(context.job_parameters["top_n"])
    work_container = context.settings.analytics.inventory_work_container
    return summary.merge_results(
        context.previous_results(page_size=20),
        lambda blob: listing.read_table(context.storage, work_container, blob),
        depth,
        top,
    )


@registry.job
class SummarizeContainer(JobDefinition[SummarizeParameters]):
    job_type = "summarize_container"
    description = "Counts and bytes by extension and prefix level, largest, newest and oldest blobs of a container"
    parameters_model = SummarizeParameters
    stages = (
        Stage("list", "container.list", Parallelism.SINGLE),
        Stage("summarize", "summarize_container.summarize", Parallelism.FAN_OUT),
        Stage("merge", "summarize_container.merge", Parallelism.FAN_IN),
    )

    def validate_submission(self, params: SummarizeParameters) -> None:
        check_container_exists(params)

    def create_tasks(self, stage: int, params: SummarizeParameters, previous: PreviousStage) -> Sequence[BaseModel]:
        if stage == 1:
            return [list_task(params)]
        return [
            SummarizePages(pages=[PageRef(**p) for p in group], prefix_depth=params.prefix_depth, top_n=params.top_n)
            for group in page_groups(previous)
        ]

    def cleanup(self, params: SummarizeParameters, end: JobEnd) -> dict[str, Any]:
        return delete_work(end)

    def finalize(self, params: SummarizeParameters, results: JobResults) -> dict[str, Any]:
        merged = next(results.stage(3))
        listed = next(results.stage(1))
        context = get_app_context()
        # the merge's result is stored: the work files are no longer needed (idempotent if finalize runs again)
        if listed.get("work_prefix"):  # absent in a listing made before the field existed
            work = listing.Work(context.settings.analytics.inventory_work_container, listed["work_prefix"])
            work.delete(context.storage)
        return {"container": params.container_name, "prefix": params.prefix, **listing_summary(results), **merged}
