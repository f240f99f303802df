"""``stac_search``: a STAC item search run as a job, following every page.

Parameters are the search of ``POST /api/stac/search`` (``limit`` is the page size used while paging)
plus ``max_items`` and ``output_container``. Up to ``STAC_SEARCH_INLINE_FEATURES`` items the job result
holds the features; above it they are written as one GeoJSON FeatureCollection to
``<output_container>/stac-search/<job_id>/results.geojson`` and the result holds that path and the count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.contract import JobDefinition, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from core.errors import InvalidInput
from infrastructure.context import get_app_context
from jobs import registry
from services.stac.export import export_search
from services.stac.search import SearchRequest


class StacSearchParameters(SearchRequest):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    max_items: int = Field(10_000, ge=1, description="Stop after this many items (capped by STAC_SEARCH_JOB_MAX_ITEMS)")
    output_container: Literal["silver", "gold"] = Field(
        "silver", description="Where a large result is written (the configured silver or gold container)"
    )


class SearchTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    search: dict[str, Any]


def result_blob_name(job_id: str) -> str:
    return f"stac-search/{job_id}/results.geojson"


@registry.task("stac_search.run")
def run(params: SearchTask, context: TaskContext) -> dict[str, Any]:
    job = StacSearchParameters.model_validate(params.search)
    settings = context.settings
    request = SearchRequest.model_validate(job.model_dump(by_alias=True, exclude={"max_items", "output_container"}))
    if request.limit is None:  # pages as large as allowed: fewer round trips
        request = request.model_copy(update={"limit": settings.raster.stac_search_max_limit})
    storage = settings.storage
    container = storage.storage_container_gold if job.output_container == "gold" else storage.storage_container_silver
    return export_search(
        context.db,
        context.storage,
        request,
        settings.raster,
        container=container,
        blob_name=result_blob_name(context.job_id),
        max_items=min(job.max_items, settings.raster.stac_search_job_max_items),
        inline_max=settings.raster.stac_search_inline_features,
    )


@registry.job
class StacSearch(JobDefinition[StacSearchParameters]):
    job_type = "stac_search"
    description = "Run a STAC search to the end; large results are written to storage as GeoJSON"
    parameters_model = StacSearchParameters
    stages = (Stage("search", "stac_search.run", Parallelism.SINGLE),)

    def validate_submission(self, params: StacSearchParameters) -> None:
        raster = get_app_context().settings.raster
        if params.limit is not None and params.limit > raster.stac_search_max_limit:
            raise InvalidInput(
                f"limit {params.limit} is over the maximum of {raster.stac_search_max_limit} items per page",
                field="limit",
            )
        if params.token is not None:
            raise InvalidInput("a stac_search job runs the whole search: leave out token", field="token")

    def create_tasks(self, stage: int, params: StacSearchParameters, previous: PreviousStage) -> Sequence[BaseModel]:
        return [SearchTask(search=params.model_dump(by_alias=True, exclude_none=True))]

    def finalize(self, params: StacSearchParameters, results: JobResults) -> dict[str, Any]:
        return next(iter(results.stage(1)))
