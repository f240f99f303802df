"""``process_raster``: validate a raster → one COG per requested tier → one STAC item in PgSTAC.

Stage 1 (validate, single) opens the source (``/vsiaz/`` on Azure), checks it and plans each tier.
Stage 2 (cog, fan_out) writes one tier per task to a local temp folder, validates it as a COG and uploads it
to the run's staging folder ``cogs/<collection_id>/<item_id>/_runs/<job_id[:16]>-r<run>/`` (a retry overwrites;
no other job or run writes there). Stage 3 (stac, single) publishes: copies each staged tier to its final path
``<output_container>/cogs/<collection_id>/<item_id>/<item_id>_<tier>.tif``, upserts the item into PgSTAC while
the run is still alive, then removes the staging folder. A failed or cancelled run's clean-up removes only its
own staging folder. The work is in ``services.raster``; see docs/jobs.md#process_raster.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.contract import JobDefinition, JobEnd, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from core.errors import BlobNotFound, Conflict, GeoetlError, InvalidInput, LeaseExpired, NotFound
from core.models import parse_task_id
from infrastructure.context import get_app_context
from infrastructure.db.jobs.guard import ensure_run_alive
from infrastructure.storage.names import validate_blob_name, validate_container_name
from jobs import registry
from services.raster.cog import make_cog, remove_tree, sweep_stale_temp_dirs
from services.raster.costs import ACCESS_TIER, monthly_costs, sizes_by_tier
from services.raster.inspect import TIERS, TierPlan, inspect_raster, parse_crs, require_2d
from services.stac.catalog import get_item, upsert_item
from services.stac.items import (
    COG_MEDIA_TYPE,
    band_info,
    build_raster_item,
    default_item_id,
    file_asset,
    stac_extensions_for,
)

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


def staging_prefix(collection_id: str, item_id: str, job_id: str, run: int) -> str:
    """The folder (blob name prefix, ending in '/') where one run of one job stages its tiers before publishing."""
    return f"cogs/{collection_id}/{item_id}/_runs/{job_id[:16]}-r{run}/"


def staged_blob(collection_id: str, item_id: str, tier: str, job_id: str, run: int) -> str:
    """Where a tier's COG is uploaded by the cog stage of that run (copied to ``output_blob`` by the stac stage)."""
    return f"{staging_prefix(collection_id, item_id, job_id, run)}{item_id}_{tier}.tif"


def _run_of(task_id: str) -> tuple[str, int]:
    parsed = parse_task_id(task_id)
    if parsed is None:
        raise ValueError(f"not a task id: {task_id!r}")
    return parsed


def remove_staging(storage: Any, container: str, prefix: str) -> list[str]:
    """Delete every blob under a run's staging prefix (whatever wrote it: tiers, late uploads); idempotent."""
    removed: list[str] = []
    with contextlib.suppress(NotFound):  # no container: nothing was staged
        for blob in list(storage.iter_blobs(container, prefix)):
            if storage.delete(container, blob.name):
                removed.append(blob.name)
    return sorted(removed)


def claim_blob(collection_id: str, item_id: str) -> str:
    """The blob that records which source an item's folder belongs to (written once, by the first job)."""
    return f"cogs/{collection_id}/{item_id}/_source.json"


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


# -- helpers -------------------------------------------------------------------------------------


def _temp_base(context: TaskContext) -> Path:
    base = context.settings.raster.raster_temp_dir if context.settings is not None else None
    return Path(base) if base is not None else Path(tempfile.gettempdir())


@contextlib.contextmanager
def _temp_dir(context: TaskContext) -> Iterator[Path]:
    """A private temp folder under RASTER_TEMP_DIR (or the system's), removed whatever happens."""
    base = _temp_base(context)
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"raster-{context.task_id[-24:]}-", dir=base))
    try:
        yield path
    finally:
        remove_tree(path)


def _source(params: Mapping[str, Any]) -> tuple[str, str]:
    return str(params["container_name"]), str(params["blob_name"])


def _require_blob(storage: Any, container: str, blob: str) -> None:
    if not storage.exists(container, blob):
        raise InvalidInput(f"the blob {blob!r} does not exist in container {container!r}", reason="missing_blob")


def _derived_from(item: Mapping[str, Any]) -> str | None:
    return next((str(link["href"]) for link in item.get("links", []) if link.get("rel") == "derived_from"), None)


def check_item_owner(db: Any, storage: Any, params: Mapping[str, Any], item_id: str) -> None:
    """Conflict when the catalogue already has this item made from another source: its COGs (same paths)
    and its item would be replaced by this job's, silently."""
    collection_id = str(params["collection_id"])
    item = get_item(db, collection_id, item_id)
    if item is None:
        return
    container, blob = _source(params)
    ours, theirs = storage.url(container, blob), _derived_from(item)
    if theirs is not None and theirs != ours:
        raise Conflict(
            f"STAC item {collection_id}/{item_id} already exists and was made from another source ({theirs}); "
            f"pass another item_id (or collection_id) for {container}/{blob}",
            item_id=item_id,
            collection_id=collection_id,
            existing_source=theirs,
        )


def claim_item(storage: Any, params: Mapping[str, Any], item_id: str) -> bool:
    """Claim the item's output folder for this source, atomically (a blob written only if absent): of two jobs
    of different sources racing for one item id, one gets Conflict before either writes a COG. True when this
    call made the claim, False when the source had it already."""
    container, collection_id = str(params["output_container"]), str(params["collection_id"])
    name = claim_blob(collection_id, item_id)
    src_container, src_blob = _source(params)
    source = storage.url(src_container, src_blob)
    storage.ensure_container(container)
    try:
        payload = json.dumps({"source": source}).encode()
        storage.write_bytes(container, name, payload, content_type="application/json", overwrite=False)
        return True
    except Conflict:
        try:
            holder = json.loads(storage.read_bytes(container, name)).get("source")
        except NotFound:  # released meanwhile: try once more
            return claim_item(storage, params, item_id)
        except ValueError:
            holder = None
    if holder != source:
        raise Conflict(
            f"STAC item {collection_id}/{item_id} belongs to another source ({holder}; see {container}/{name}); "
            f"pass another item_id (or collection_id) for {src_container}/{src_blob}",
            item_id=item_id,
            collection_id=collection_id,
            existing_source=holder,
        )
    return False


# -- handlers ------------------------------------------------------------------------------------


@registry.task("process_raster.validate")
def validate(params: ValidateTask, context: TaskContext) -> dict[str, Any]:
    job = context.job_parameters
    settings = context.settings.raster
    swept = sweep_stale_temp_dirs(_temp_base(context), settings.raster_temp_max_age_hours * 3600)
    if swept:
        logger.info("removed %d stale raster temp folders left by killed workers", swept)
    container, blob = _source(job)
    _require_blob(context.storage, container, blob)
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
    job_id, run = _run_of(context.task_id)
    staged = staged_blob(str(job["collection_id"]), params.item_id, plan.tier, job_id, run)
    with _temp_dir(context) as folder:
        local = folder / PurePosixPath(params.output_blob).name
        written = _convert(params, plan, context, local)
        href = context.storage.url(out_container, params.output_blob)  # the published address
        asset = _asset(local, href, plan)
        item = _tier_item(local, params, plan, asset, context)
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
    container, blob = _source(job)
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
    """Upload the COG to the run's staging folder, unless the run has ended meanwhile; if it ended during the
    upload, take it back.

    The job's clean-up (``ProcessRaster.cleanup``) may already have run when this attempt uploads: the
    heartbeat after the upload says so, and the upload is removed again - unless another attempt has
    replaced the blob since (its etag differs), which then owns it. If the heartbeat cannot tell (a database
    hiccup counts as alive), a late upload stays in the staging folder only: the run's clean-up (re-sent by
    the janitor when lost) removes the whole folder, and nothing reads it but this run's stac stage.
    """
    if not context.heartbeat():
        raise LeaseExpired("the task is no longer this attempt's (job ended or lease lost): not uploading")
    context.storage.ensure_container(container)
    uploaded = context.storage.upload_file(container, blob, local, content_type=COG_MEDIA_TYPE)
    if context.heartbeat():
        return
    with contextlib.suppress(BlobNotFound):
        if context.storage.properties(container, blob).etag == uploaded.etag:
            context.storage.delete(container, blob)
    raise LeaseExpired("the job ended (or the lease was lost) while this tier was uploaded: upload removed")


def _tier_item(
    local: Path, params: CogTask, plan: TierPlan, asset: dict[str, Any], context: TaskContext
) -> dict[str, Any]:
    """The STAC item as this tier's COG describes it, read from the local file (the stac stage picks the best
    tier's and adds every asset: it never reads the outputs back from storage)."""
    job = context.job_parameters
    container, blob = _source(job)
    links = [
        {
            "rel": "derived_from",
            "href": context.storage.url(container, blob),
            "title": f"source raster {container}/{blob}",
        }
    ]
    return build_raster_item(
        local,
        item_id=params.item_id,
        collection_id=str(job["collection_id"]),
        assets={plan.tier: asset},
        links=links,
        statistics=False,  # the asset carries raster:bands with statistics already
        fallback_datetime=context.storage.properties(container, blob).last_modified,  # same item on a retry
    )


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
    best = next(by_tier[tier] for tier in ITEM_SOURCE_ORDER if tier in by_tier)
    item = dict(best["item"])
    item["assets"] = {tier: by_tier[tier]["asset"] for tier in TIERS if tier in by_tier}
    item["stac_extensions"] = stac_extensions_for(item["properties"], item["assets"])
    storage, container = context.storage, str(job["output_container"])
    job_id, run = _run_of(context.task_id)
    staging = staging_prefix(collection_id, params.item_id, job_id, run)
    # (1) still this run's? (2) still this source's item? (3) staged -> final (4) upsert while the run is alive
    if not context.heartbeat():
        raise LeaseExpired("the task is no longer this attempt's (job ended or lease lost): not publishing")
    check_item_owner(context.db, storage, job, params.item_id)
    claim_item(storage, job, params.item_id)  # again: a failed sibling's clean-up may have released it
    access_tiers = {}
    made: list[tuple[str, str]] = []  # final blobs this task created (absent before) and their etags
    for tier, output in by_tier.items():
        existed = storage.exists(container, output["blob"])
        try:
            copied = storage.copy(container, output["staged_blob"], output["blob"])
            if not existed:
                made.append((output["blob"], copied.etag))
        except BlobNotFound:
            _require_published(storage, container, output)  # an earlier attempt published, then was lost
        access_tier = ACCESS_TIER[tier]
        tiered = access_tier != "Hot" and storage.set_access_tier(container, output["blob"], access_tier)
        access_tiers[tier] = access_tier if tiered else "Hot"
    ended: list[Conflict] = []

    def guard(conn: Any) -> None:
        try:
            ensure_run_alive(conn, context.task_id)
        except Conflict as exc:
            ended.append(exc)
            raise

    try:
        upsert_item(context.db, item, guard=guard)
    except GeoetlError as exc:
        if exc.retryable:
            raise  # the next attempt copies and upserts again
        # nothing is catalogued (the job ended first, or the catalogue refused the item): take back the final
        # blobs this task created unless replaced since; a final blob that existed before keeps the new content
        # (the same a next run would publish). The staging folder goes now: the clean-up may have run already.
        _take_back(storage, container, made)
        remove_staging(storage, container, staging)
        raise
    try:
        remove_staging(storage, container, staging)
        claim_item(storage, job, params.item_id)  # back if a sibling's clean-up released it meanwhile
    except GeoetlError as exc:  # published: a leftover staging folder (or claim) must not fail the job
        logger.warning("after publishing %s/%s: %s", container, staging, exc)
    return {
        "item_id": item["id"],
        "collection_id": collection_id,
        "bbox": item["bbox"],
        "assets": list(by_tier),
        "access_tiers": access_tiers,
    }


def _require_published(storage: Any, container: str, output: Mapping[str, Any]) -> None:
    """A staged tier is gone: fine when an earlier attempt of this task copied it (and removed the staging
    folder after its upsert) - the final blob has the tier's size; else the staging was removed under us."""
    try:
        size = storage.properties(container, output["blob"]).size
    except BlobNotFound:
        size = None
    if size != output["asset"].get("file:size"):
        raise Conflict(
            f"the staged COG {container}/{output['staged_blob']} is gone and {output['blob']} is not its copy: "
            "the run's staging folder was removed (the job ended?)"
        )


def _take_back(storage: Any, container: str, made: Sequence[tuple[str, str]]) -> None:
    for blob, etag in made:
        with contextlib.suppress(BlobNotFound):
            if storage.properties(container, blob).etag == etag:
                storage.delete(container, blob)


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
        _require_blob(app.storage, params.container_name, params.blob_name)
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

    def cleanup(self, params: ProcessRasterParameters, end: JobEnd) -> dict[str, Any]:
        """Remove what a failed or cancelled run staged: every blob under its own staging folder
        ``cogs/<collection>/<item>/_runs/<job_id[:16]>-r<run>/`` (listed, so late uploads go too; idempotent).

        Published (final) paths are never touched: they hold what an earlier run, or a still running job of the
        same source, published or is about to. The item's claim is released when this source has no item (and
        the claim is this source's); a running sibling re-claims it before publishing.
        """
        storage, item_id, container = end.storage, params.resolved_item_id(), params.output_container
        removed = remove_staging(storage, container, staging_prefix(params.collection_id, item_id, end.job_id, end.run))
        source = storage.url(params.container_name, params.blob_name)
        claim = claim_blob(params.collection_id, item_id)
        try:
            holder = json.loads(storage.read_bytes(container, claim)).get("source")
        except (NotFound, ValueError):
            holder = None
        unpublished = holder == source and get_item(end.db, params.collection_id, item_id) is None
        if unpublished and storage.delete(container, claim):
            removed.append(claim)
        return {"container": container, "removed": removed}
