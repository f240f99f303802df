"""``process_raster``: validate a raster → one COG per requested tier → one STAC item in PgSTAC.

Stage 1 (validate, single) opens the source (``/vsiaz/`` on Azure), checks it and plans each tier.
Stage 2 (cog, fan_out) writes one tier per task to a local temp folder, validates it as a COG and uploads it
to ``<output_container>/cogs/<collection_id>/<item_id>/<item_id>_<tier>.tif`` (deterministic: a retry
overwrites). Stage 3 (stac, single) builds the item from the outputs and upserts it into PgSTAC.
The work is in ``services.raster``; see docs/jobs.md#process_raster.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.contract import JobDefinition, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from core.errors import GeoetlError, InvalidInput, LeaseExpired
from infrastructure.context import get_app_context
from infrastructure.storage.names import validate_blob_name, validate_container_name
from jobs import registry
from services.raster.cog import make_cog
from services.raster.costs import ACCESS_TIER, monthly_costs, sizes_by_tier
from services.raster.inspect import TIERS, TierPlan, inspect_raster, parse_crs
from services.stac.catalog import upsert_item
from services.stac.items import COG_MEDIA_TYPE, band_info, build_raster_item, file_asset

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
#: ids end up in blob paths and URLs: a conservative subset of what STAC allows
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ROLES = {"visualization": ["visual"], "analysis": ["data"], "archive": ["data", "archive"]}
#: the asset used to describe the item (projection, bands), best first
ITEM_SOURCE_ORDER = ("analysis", "archive", "visualization")


def _check_id(value: str, what: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise ValueError(
            f"invalid {what} {value!r}: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def default_item_id(blob_name: str) -> str:
    """An item id from a blob name: the path without its extension, separators and odd characters as '-'."""
    path = PurePosixPath(blob_name)
    stem = str(path.with_suffix("")) if path.suffix else blob_name
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")
    text = re.sub(r"-{2,}", "-", text)
    return (text or "raster")[:128].rstrip("-._") or "raster"


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
        return _check_id(value, "collection_id")

    @field_validator("item_id")
    @classmethod
    def _item(cls, value: str | None) -> str | None:
        return None if value is None else _check_id(value, "item_id")

    def resolved_item_id(self) -> str:
        return self.item_id or default_item_id(self.blob_name)

    def tiers(self) -> tuple[str, ...]:
        return TIER_SETS[self.output_tier]


def output_blob(collection_id: str, item_id: str, tier: str) -> str:
    """The deterministic blob name of a tier's COG in the output container."""
    return f"cogs/{collection_id}/{item_id}/{item_id}_{tier}.tif"


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
    siblings: list[str]  # blob names of every tier of this job (cleaned up when the stage fails)
    validated_at: str


class StacTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: str
    outputs: list[dict[str, Any]]


# -- helpers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _temp_dir(context: TaskContext) -> Iterator[Path]:
    """A private temp folder under RASTER_TEMP_DIR (or the system's), removed whatever happens."""
    base = context.settings.raster.raster_temp_dir if context.settings is not None else None
    if base is not None:
        Path(base).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"raster-{context.task_id[-24:]}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _last_attempt(context: TaskContext, exc: BaseException) -> bool:
    """Whether the machine will not run this task again after ``exc``."""
    if isinstance(exc, GeoetlError) and not exc.retryable:
        return True
    return context.attempt >= context.max_attempts


def _delete_quietly(context: TaskContext, container: str, blobs: Sequence[str], since: str | None = None) -> None:
    """Remove this job's outputs (only those written since ``since``, when given); errors are logged only."""
    for blob in blobs:
        try:
            if since is not None:
                if not context.storage.exists(container, blob):
                    continue
                modified = context.storage.properties(container, blob).last_modified
                # Azure's Last-Modified has whole seconds: allow for the truncation
                if modified < datetime.fromisoformat(since) - timedelta(seconds=2):
                    continue  # an older job's output: not ours to remove
            context.storage.delete(container, blob)
        except Exception:
            logger.warning("could not remove %s/%s after a failure", container, blob, exc_info=True)


def _source(context: TaskContext) -> tuple[str, str]:
    params = context.job_parameters
    return str(params["container_name"]), str(params["blob_name"])


def _require_blob(storage: Any, container: str, blob: str) -> None:
    if not storage.exists(container, blob):
        raise InvalidInput(f"the blob {blob!r} does not exist in container {container!r}", reason="missing_blob")


# -- handlers ------------------------------------------------------------------------------------


@registry.task("process_raster.validate")
def validate(params: ValidateTask, context: TaskContext) -> dict[str, Any]:
    job = context.job_parameters
    container, blob = _source(context)
    _require_blob(context.storage, container, blob)
    settings = context.settings.raster
    facts = inspect_raster(
        context.storage.gdal_path(container, blob),
        input_crs=job.get("input_crs"),
        raster_type=job.get("raster_type", "auto"),
        nodata=job.get("nodata"),
        max_pixels=settings.raster_max_pixels,
    )
    if job.get("target_crs"):
        parse_crs(str(job["target_crs"]), "target_crs")
    result = facts.to_dict()
    planned = [tier for tier in params.tiers if facts.tiers[tier].possible]
    skipped = {tier: facts.tiers[tier].reason for tier in params.tiers if not facts.tiers[tier].possible}
    result.update(
        requested_tiers=params.tiers,
        planned_tiers=planned,
        skipped_tiers=skipped,
        validated_at=datetime.now(UTC).isoformat(),
    )
    return result


@registry.task("process_raster.cog")
def cog(params: CogTask, context: TaskContext) -> dict[str, Any]:
    job = context.job_parameters
    container, blob = _source(context)
    out_container = str(job["output_container"])
    plan = TierPlan(**params.plan)
    settings = context.settings.raster
    uploaded = False
    try:
        with _temp_dir(context) as folder:
            local = folder / PurePosixPath(params.output_blob).name
            written = make_cog(
                context.storage.gdal_path(container, blob),
                local,
                plan,
                raster_type=params.raster_type,
                input_crs=job.get("input_crs"),
                target_crs=job.get("target_crs"),
                nodata=job.get("nodata"),
                blocksize=settings.raster_cog_blocksize,
                threads=settings.raster_gdal_threads,
            )
            href = context.storage.url(out_container, params.output_blob)
            asset = _asset(local, href, plan)
            if not context.heartbeat():
                raise LeaseExpired("the task is no longer this attempt's (job failed or lease lost): not uploading")
            context.storage.ensure_container(out_container)
            context.storage.upload_file(out_container, params.output_blob, local, content_type=COG_MEDIA_TYPE)
            uploaded = True
            access_tier = ACCESS_TIER[plan.tier]
            tiered = access_tier != "Hot" and context.storage.set_access_tier(
                out_container, params.output_blob, access_tier
            )
    except Exception as exc:
        # (a lost lease is not a reason to delete: another attempt may own this same path by now)
        if uploaded and _last_attempt(context, exc) and not isinstance(exc, LeaseExpired):
            _delete_quietly(context, out_container, [params.output_blob])
        if _last_attempt(context, exc):
            # the job fails: its sibling tiers written by this job go too
            others = [b for b in params.siblings if b != params.output_blob]
            _delete_quietly(context, out_container, others, since=params.validated_at)
        raise
    return {
        "tier": plan.tier,
        "container": out_container,
        "blob": params.output_blob,
        "href": href,
        "size": written.size,
        "compression": written.compression,
        "predictor": written.predictor,
        "jpeg_quality": written.quality,
        "access_tier": access_tier if tiered else "Hot",
        "crs": written.crs,
        "width": written.width,
        "height": written.height,
        "bands": written.count,
        "dtype": written.dtype,
        "overviews": written.overviews,
        "blocksize": written.blocksize,
        "asset": asset,
    }


def _asset(path: Path, href: str, plan: TierPlan) -> dict[str, Any]:
    import rasterio

    with rasterio.open(path) as dataset:
        bands = band_info(dataset, statistics=True)
    title = {"visualization": "Visualization COG (JPEG)", "analysis": "Analysis COG (DEFLATE, lossless)"}.get(
        plan.tier, "Archive COG (LZW, lossless)"
    )
    return file_asset(
        path, href=href, roles=ROLES[plan.tier], media_type=COG_MEDIA_TYPE, title=title, extra={"raster:bands": bands}
    )


@registry.task("process_raster.stac")
def stac(params: StacTask, context: TaskContext) -> dict[str, Any]:
    job = context.job_parameters
    collection_id = str(job["collection_id"])
    if not params.outputs:
        return {"item_id": None, "collection_id": collection_id, "reason": "no tier could be produced"}
    by_tier = {output["tier"]: output for output in params.outputs}
    try:
        best = next(by_tier[tier] for tier in ITEM_SOURCE_ORDER if tier in by_tier)
        container, blob = _source(context)
        links = [
            {
                "rel": "derived_from",
                "href": context.storage.url(container, blob),
                "title": f"source raster {container}/{blob}",
            }
        ]
        item = build_raster_item(
            context.storage.gdal_path(best["container"], best["blob"]),
            item_id=params.item_id,
            collection_id=collection_id,
            assets={tier: by_tier[tier]["asset"] for tier in TIERS if tier in by_tier},
            links=links,
        )
        upsert_item(context.db, item)
    except Exception as exc:
        if _last_attempt(context, exc):
            for output in params.outputs:
                _delete_quietly(context, output["container"], [output["blob"]])
        raise
    return {"item_id": item["id"], "collection_id": collection_id, "bbox": item["bbox"], "assets": list(by_tier)}


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
            parse_crs(params.target_crs, "target_crs")
        item_id = params.resolved_item_id()
        if not ID_PATTERN.fullmatch(item_id):
            raise InvalidInput(f"cannot derive an item id from {params.blob_name!r}; pass item_id")
        storage = get_app_context().storage
        _require_blob(storage, params.container_name, params.blob_name)

    def create_tasks(
        self, stage: int, params: ProcessRasterParameters, previous: PreviousStage
    ) -> Sequence[BaseModel | Mapping[str, Any]]:
        item_id = params.resolved_item_id()
        if stage == 1:
            return [ValidateTask(tiers=list(params.tiers()))]
        if stage == 2:
            facts = previous.results[0]
            siblings = [output_blob(params.collection_id, item_id, tier) for tier in facts["planned_tiers"]]
            return [
                CogTask(
                    tier=tier,
                    plan=facts["tiers"][tier],
                    raster_type=facts["raster_type"],
                    item_id=item_id,
                    output_blob=output_blob(params.collection_id, item_id, tier),
                    siblings=siblings,
                    validated_at=facts["validated_at"],
                )
                for tier in facts["planned_tiers"]
            ]
        return [StacTask(item_id=item_id, outputs=list(previous.results))]

    def finalize(self, params: ProcessRasterParameters, results: JobResults) -> dict[str, Any]:
        facts = next(results.stage(1))
        outputs = [{k: v for k, v in output.items() if k != "asset"} for output in results.stage(2)]
        item = next(results.stage(3))
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
            "raster": {
                key: facts[key]
                for key in (
                    "width",
                    "height",
                    "count",
                    "dtype",
                    "nodata",
                    "crs",
                    "crs_from_file",
                    "raster_type",
                    "detected_type",
                    "is_cog",
                    "is_64bit",
                    "bounds_wgs84",
                    "uncompressed_bytes",
                    "warnings",
                )
            },
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
