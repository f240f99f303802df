"""``process_raster``: validate a raster → one COG per requested tier → one STAC item in PgSTAC.

Stage 1 (validate, single) opens the source (``/vsiaz/`` on Azure), checks it and plans each tier.
Stage 2 (cog, fan_out) writes one tier per task to a local temp folder, validates it as a COG and uploads it
to the run's staging folder ``cogs/<collection_id>/<item_id>/_runs/<job_id[:16]>-r<run>/`` (a retry overwrites;
no other job or run writes there). Stage 3 (stac, single) publishes: copies each staged tier to its final path
``<output_container>/cogs/<collection_id>/<item_id>/<item_id>_<tier>.tif``, upserts the item into PgSTAC while
the run is still alive, then removes the staging folder. A failed or cancelled run's clean-up removes only its
own staging folder. The work is in ``services.raster`` (staging, publishing and clean-up in
``services.raster.publish``, blob names in ``services.raster.paths``); see docs/jobs.md#process_raster.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.contract import JobDefinition, JobEnd, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from core.errors import InvalidInput
from infrastructure.context import get_app_context
from infrastructure.storage.names import validate_blob_name, validate_container_name
from jobs import registry
from services.raster.cog import make_cog, sweep_stale_temp_dirs
from services.raster.costs import ACCESS_TIER, monthly_costs, sizes_by_tier
from services.raster.inspect import TIERS, TierPlan, inspect_raster, parse_crs, require_2d
from services.raster.paths import ID_PATTERN, check_id, output_blob, run_of, staged_blob, staging_prefix
from services.raster.publish import (
    check_item_owner,
    claim_item,
    clean_up_run,
    merge_tier_items,
    publish_item,
    require_blob,
    source_of,
    temp_base,
    temp_dir,
    tier_asset,
    tier_item,
    upload_staged,
)
from services.stac.items import default_item_id

logger = logging.getLogger(__name__)

OutputTier = Literal["visualization", "analysis", "archive", "both", "all"]
RasterTypeParam = Literal["auto", "rgb", "rgba", "dem", "categorical", "multispectral"]
TIER_SETS: dict[str, tuple[str, ...]] = {
    "visualization": ("visualization",),
    "analysis": ("analysis",),
    "archive": ("archive",),
    "both": ("visualization", "analysis"),
    "all": TIERS,
}
#: what finalize reports of the validate stage's facts
RASTER_FACTS = (
    *("width", "height", "count", "dtype", "nodata", "crs", "crs_from_file", "raster_type", "detected_type"),
    *("is_cog", "is_64bit", "bounds_wgs84", "uncompressed_bytes", "warnings"),
)


class ProcessRasterParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    container_name: str = Field("bronze", description="Container of the source raster")
    blob_name: str = Field(..., min_length=1, max_length=1024, description="Blob name of the source raster")
    output_tier: OutputTier = Field(
        "analysis", description="visualization, analysis, archive, both (visualization + analysis) or all"
    )
    output_container: str = Field("silver", description="Container the COGs are written to")
    collection_id: str = Field("cogs", description="STAC collection of the item (created if missing)")
    item_id: str | None = Field(None, description="STAC item id; default derived from the blob name")
    input_crs: str | None = Field(None, max_length=10_000, description="CRS of a source that has none (EPSG:xxxx)")
    raster_type: RasterTypeParam = Field("auto", description="auto, rgb, rgba, dem, categorical or multispectral")
    target_crs: str | None = Field(None, max_length=10_000, description="Reproject to this CRS; default: keep")
    nodata: float | None = Field(None, allow_inf_nan=False, description="Nodata value overriding the file's")

    @field_validator("container_name", "output_container")
    @classmethod
    def _container(cls, value: str) -> str:
        try:
            return validate_container_name(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    @field_validator("blob_name")
    @classmethod
    def _blob(cls, value: str) -> str:
        try:
            return validate_blob_name(value, writing=False)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    @field_validator("collection_id")
    @classmethod
    def _collection(cls, value: str) -> str:
        return check_id(value, "collection_id")

    @field_validator("item_id")
    @classmethod
    def _item(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "item_id")

    def resolved_item_id(self) -> str:
        return self.item_id or default_item_id(self.blob_name)

    def tiers(self) -> tuple[str, ...]:
        return TIER_SETS[self.output_tier]


# -- task inputs ---------------------------------------------------------------------------------


class ValidateTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tiers: list[str]


class CogTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier: str
    plan: dict[str, Any]
    raster_type: str
    item_id: str
    output_blob: str
    in_memory: bool = False  # convert in memory (small enough, see RASTER_IN_MEMORY_MAX_MB)


class StacTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: str
    outputs: list[dict[str, Any]]


# -- handlers ------------------------------------------------------------------------------------


def _temp_base(context: TaskContext) -> Path:
    return temp_base(context.settings.raster.raster_temp_dir if context.settings is not None else None)


@registry.task("process_raster.validate")
def validate(params: ValidateTask, context: TaskContext) -> dict[str, Any]:
    job = context.job_parameters
    settings = context.settings.raster
    swept = sweep_stale_temp_dirs(_temp_base(context), settings.raster_temp_max_age_hours * 3600)
    if swept:
        logger.info("removed %d stale raster temp folders left by killed workers", swept)
    container, blob = source_of(job)
    require_blob(context.storage, container, blob)
    item_id = ProcessRasterParameters.model_validate(dict(job)).resolved_item_id()
    check_item_owner(context.db, context.storage, job, item_id)
    facts = inspect_raster(
        context.storage.gdal_path(container, blob),
        input_crs=job.get("input_crs"),
        raster_type=job.get("raster_type", "auto"),
        nodata=job.get("nodata"),
        max_pixels=settings.raster_max_pixels,
        max_bytes=settings.raster_max_source_bytes,
        target_crs=job.get("target_crs"),
        probe=lambda: context.storage.properties(container, blob),
    )
    result = facts.to_dict()
    planned = [tier for tier in params.tiers if facts.tiers[tier].possible]
    if planned:
        claim_item(context.storage, job, item_id)
    skipped = {tier: facts.tiers[tier].reason for tier in params.tiers if not facts.tiers[tier].possible}
    in_memory = facts.uncompressed_bytes <= settings.raster_in_memory_max_mb * 1024**2
    result.update(
        requested_tiers=params.tiers,
        planned_tiers=planned,
        skipped_tiers=skipped,
        in_memory=in_memory,
        # in memory: the raster and its overviews; else GDAL's block cache and a few tiles per thread
        estimated_memory_bytes=facts.estimated_memory_bytes if in_memory else 256 * 1024**2,
        validated_at=datetime.now(UTC).isoformat(),
    )
    return result


@registry.task("process_raster.cog")
def cog(params: CogTask, context: TaskContext) -> dict[str, Any]:
    job = context.job_parameters
    out_container = str(job["output_container"])
    plan = TierPlan(**params.plan)
    job_id, run = run_of(context.task_id)
    staged = staged_blob(str(job["collection_id"]), params.item_id, plan.tier, job_id, run)
    with temp_dir(_temp_base(context), context.task_id) as folder:
        local = folder / PurePosixPath(params.output_blob).name
        written = _convert(params, plan, context, local)
        href = context.storage.url(out_container, params.output_blob)  # the published address
        asset = tier_asset(local, href, plan.tier)
        item = tier_item(local, context.storage, job, params.item_id, plan, asset)
        _publish(context, out_container, staged, local)
    return {
        "tier": plan.tier,
        "container": out_container,
        "blob": params.output_blob,
        "staged_blob": staged,
        "href": href,
        "size": written.size,
        "compression": written.compression,
        "predictor": written.predictor,
        "jpeg_quality": written.quality,
        "access_tier": ACCESS_TIER[plan.tier],  # set on the published blob by the stac stage
        "crs": written.crs,
        "width": written.width,
        "height": written.height,
        "bands": written.count,
        "dtype": written.dtype,
        "overviews": written.overviews,
        "blocksize": written.blocksize,
        "asset": asset,
        "item": item,
    }


def _convert(params: CogTask, plan: TierPlan, context: TaskContext, local: Path) -> Any:
    """The tier's COG in ``local``, validated (services.raster.cog.make_cog)."""
    job = context.job_parameters
    container, blob = source_of(job)
    settings = context.settings.raster
    return make_cog(
        context.storage.gdal_path(container, blob),
        local,
        plan,
        raster_type=params.raster_type,
        input_crs=job.get("input_crs"),
        target_crs=job.get("target_crs"),
        nodata=job.get("nodata"),
        blocksize=settings.raster_cog_blocksize,
        threads=settings.raster_gdal_threads,
        in_memory_max_bytes=settings.raster_in_memory_max_mb * 1024**2 if params.in_memory else 0,
        probe=lambda: context.storage.properties(container, blob),
    )


def _publish(context: TaskContext, container: str, blob: str, local: Path) -> None:
    """Upload the COG to the run's staging folder while the run is alive (services.raster.publish.upload_staged)."""
    upload_staged(context.heartbeat, context.storage, container, blob, local)


@registry.task("process_raster.stac")
def stac(params: StacTask, context: TaskContext) -> dict[str, Any]:
    job = context.job_parameters
    collection_id = str(job["collection_id"])
    if not params.outputs:
        return {"item_id": None, "collection_id": collection_id, "reason": "no tier could be produced"}
    item, by_tier = merge_tier_items(params.outputs)
    job_id, run = run_of(context.task_id)
    access_tiers = publish_item(
        context.storage,
        context.db,
        job,
        item,
        by_tier,
        item_id=params.item_id,
        staging=staging_prefix(collection_id, params.item_id, job_id, run),
        task_id=context.task_id,
        heartbeat=context.heartbeat,
    )
    return {
        "item_id": item["id"],
        "collection_id": collection_id,
        "bbox": item["bbox"],
        "assets": list(by_tier),
        "access_tiers": access_tiers,
    }


# -- the job -------------------------------------------------------------------------------------


@registry.job
class ProcessRaster(JobDefinition[ProcessRasterParameters]):
    job_type = "process_raster"
    description = "Validate a raster, write COGs per tier (visualization/analysis/archive), catalogue it in PgSTAC"
    parameters_model = ProcessRasterParameters
    stages = (
        Stage("validate", "process_raster.validate", Parallelism.SINGLE),
        Stage("cog", "process_raster.cog", Parallelism.FAN_OUT),
        Stage("stac", "process_raster.stac", Parallelism.SINGLE),
    )

    def validate_submission(self, params: ProcessRasterParameters) -> None:
        if params.input_crs is not None:
            parse_crs(params.input_crs, "input_crs")
        if params.target_crs is not None:
            require_2d(parse_crs(params.target_crs, "target_crs"), params.target_crs)
        item_id = params.resolved_item_id()
        if not ID_PATTERN.fullmatch(item_id):
            raise InvalidInput(f"cannot derive an item id from {params.blob_name!r}; pass item_id")
        app = get_app_context()
        require_blob(app.storage, params.container_name, params.blob_name)
        check_item_owner(app.db, app.storage, params.model_dump(), item_id)

    def create_tasks(
        self, stage: int, params: ProcessRasterParameters, previous: PreviousStage
    ) -> Sequence[BaseModel | Mapping[str, Any]]:
        item_id = params.resolved_item_id()
        if stage == 1:
            return [ValidateTask(tiers=list(params.tiers()))]
        if stage == 2:
            facts = previous.results[0]
            return [
                CogTask(
                    tier=tier,
                    plan=facts["tiers"][tier],
                    raster_type=facts["raster_type"],
                    item_id=item_id,
                    output_blob=output_blob(params.collection_id, item_id, tier),
                    in_memory=bool(facts.get("in_memory")),
                )
                for tier in facts["planned_tiers"]
            ]
        return [StacTask(item_id=item_id, outputs=list(previous.results))]

    def finalize(self, params: ProcessRasterParameters, results: JobResults) -> dict[str, Any]:
        facts = next(results.stage(1))
        item = next(results.stage(3))
        applied = item.get("access_tiers", {})
        outputs = [
            {k: v for k, v in output.items() if k not in ("asset", "item", "staged_blob")}
            | {"access_tier": applied.get(output["tier"], "Hot")}
            for output in results.stage(2)
        ]
        settings = get_app_context().settings.raster
        sizes = sizes_by_tier(outputs)
        costs = monthly_costs(
            sizes,
            price_hot=settings.raster_price_per_gb_hot,
            price_cool=settings.raster_price_per_gb_cool,
            currency=settings.raster_price_currency,
        )
        return {
            "source": {"container": params.container_name, "blob": params.blob_name},
            "raster": {key: facts[key] for key in RASTER_FACTS},
            "outputs": outputs,
            "skipped_tiers": facts["skipped_tiers"],
            "sizes": sizes,
            "total_size": sum(sizes.values()),
            "costs": costs,
            "stac": {
                "collection_id": item["collection_id"],
                "item_id": item["item_id"],
                **({"reason": item["reason"]} if item.get("reason") else {}),
            },
        }

    def cleanup(self, params: ProcessRasterParameters, end: JobEnd) -> dict[str, Any]:
        """Remove what a failed or cancelled run staged (its own staging folder) and release the item's claim
        when this source has no item (services.raster.publish.clean_up_run)."""
        item_id = params.resolved_item_id()
        return clean_up_run(end.storage, end.db, params.model_dump(), item_id=item_id, job_id=end.job_id, run=end.run)
