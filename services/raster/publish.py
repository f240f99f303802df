"""Storage side of ``process_raster``: the item's claim, per-run staging, publishing staged tiers to their final
paths (with access tiers) and catalogue entry, and the clean-up of a failed or cancelled run.

Layout in the output container (see ``services.raster.paths``): a tier is uploaded by the cog stage to the run's
staging folder ``cogs/<collection_id>/<item_id>/_runs/<job_id[:16]>-r<run>/`` (a retry overwrites; no other job
or run writes there); the stac stage copies each staged tier to ``cogs/<collection_id>/<item_id>/<item_id>_<tier>.tif``,
upserts the item into PgSTAC while the run is still alive, then removes the staging folder. A failed or cancelled
run's clean-up removes only its own staging folder (and the claim when this source has no item).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.errors import BlobNotFound, Conflict, GeoetlError, InvalidInput, LeaseExpired, NotFound
from infrastructure.db.jobs.guard import ensure_run_alive
from services.raster.cog import remove_tree
from services.raster.costs import ACCESS_TIER
from services.raster.inspect import TIERS, TierPlan
from services.raster.paths import claim_blob, staging_prefix
from services.stac.catalog import get_item, upsert_item
from services.stac.items import COG_MEDIA_TYPE, band_info, build_raster_item, file_asset, stac_extensions_for

logger = logging.getLogger(__name__)

ROLES = {"visualization": ["visual"], "analysis": ["data"], "archive": ["data", "archive"]}
#: the asset used to describe the item (projection, bands), best first
ITEM_SOURCE_ORDER = ("analysis", "archive", "visualization")


# -- source and claim ----------------------------------------------------------------------------


def source_of(params: Mapping[str, Any]) -> tuple[str, str]:
    """The source raster's (container, blob) in the job's parameters."""
    return str(params["container_name"]), str(params["blob_name"])


def require_blob(storage: Any, container: str, blob: str) -> None:
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
    container, blob = source_of(params)
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
    src_container, src_blob = source_of(params)
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


# -- local work folder ---------------------------------------------------------------------------


def temp_base(raster_temp_dir: str | Path | None) -> Path:
    """RASTER_TEMP_DIR, or the system's temp folder."""
    return Path(raster_temp_dir) if raster_temp_dir is not None else Path(tempfile.gettempdir())


@contextlib.contextmanager
def temp_dir(base: Path, task_id: str) -> Iterator[Path]:
    """A private temp folder under ``base``, removed whatever happens."""
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"raster-{task_id[-24:]}-", dir=base))
    try:
        yield path
    finally:
        remove_tree(path)


# -- cog stage: describe and stage a tier --------------------------------------------------------


def tier_asset(path: Path, href: str, tier: str) -> dict[str, Any]:
    """The STAC asset of a tier's local COG, published at ``href``."""
    import rasterio

    with rasterio.open(path) as dataset:
        bands = band_info(dataset, statistics=True)
    title = {"visualization": "Visualization COG (JPEG)", "analysis": "Analysis COG (DEFLATE, lossless)"}.get(
        tier, "Archive COG (LZW, lossless)"
    )
    return file_asset(
        path, href=href, roles=ROLES[tier], media_type=COG_MEDIA_TYPE, title=title, extra={"raster:bands": bands}
    )


def tier_item(
    local: Path, storage: Any, params: Mapping[str, Any], item_id: str, plan: TierPlan, asset: dict[str, Any]
) -> dict[str, Any]:
    """The STAC item as this tier's COG describes it, read from the local file (the stac stage picks the best
    tier's and adds every asset: it never reads the outputs back from storage)."""
    container, blob = source_of(params)
    links = [
        {
            "rel": "derived_from",
            "href": storage.url(container, blob),
            "title": f"source raster {container}/{blob}",
        }
    ]
    return build_raster_item(
        local,
        item_id=item_id,
        collection_id=str(params["collection_id"]),
        assets={plan.tier: asset},
        links=links,
        statistics=False,  # the asset carries raster:bands with statistics already
        fallback_datetime=storage.properties(container, blob).last_modified,  # same item on a retry
    )


def upload_staged(heartbeat: Callable[[], bool], storage: Any, container: str, blob: str, local: Path) -> None:
    """Upload the COG to the run's staging folder, unless the run has ended meanwhile; if it ended during the
    upload, take it back.

    The job's clean-up (``clean_up_run``) may already have run when this attempt uploads: the
    heartbeat after the upload says so, and the upload is removed again - unless another attempt has
    replaced the blob since (its etag differs), which then owns it. If the heartbeat cannot tell (a database
    hiccup counts as alive), a late upload stays in the staging folder only: the run's clean-up (re-sent by
    the janitor when lost) removes the whole folder, and nothing reads it but this run's stac stage.
    """
    if not heartbeat():
        raise LeaseExpired("the task is no longer this attempt's (job ended or lease lost): not uploading")
    storage.ensure_container(container)
    uploaded = storage.upload_file(container, blob, local, content_type=COG_MEDIA_TYPE)
    if heartbeat():
        return
    with contextlib.suppress(BlobNotFound):
        if storage.properties(container, blob).etag == uploaded.etag:
            storage.delete(container, blob)
    raise LeaseExpired("the job ended (or the lease was lost) while this tier was uploaded: upload removed")


# -- stac stage: publish -------------------------------------------------------------------------


def merge_tier_items(outputs: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Mapping[str, Any]]]:
    """The item of the best tier with every tier's asset, and the cog stage's outputs by tier."""
    by_tier = {output["tier"]: output for output in outputs}
    best = next(by_tier[tier] for tier in ITEM_SOURCE_ORDER if tier in by_tier)
    item = dict(best["item"])
    item["assets"] = {tier: by_tier[tier]["asset"] for tier in TIERS if tier in by_tier}
    item["stac_extensions"] = stac_extensions_for(item["properties"], item["assets"])
    return item, by_tier


def publish_item(
    storage: Any,
    db: Any,
    params: Mapping[str, Any],
    item: Mapping[str, Any],
    by_tier: Mapping[str, Mapping[str, Any]],
    *,
    item_id: str,
    staging: str,
    task_id: str,
    heartbeat: Callable[[], bool],
) -> dict[str, str]:
    """Copy each staged tier to its final path (setting its access tier) and upsert the item while the run is
    alive, then remove the staging folder; nothing is left published when the upsert is refused. Returns the
    access tier applied per tier."""
    container = str(params["output_container"])
    # (1) still this run's? (2) still this source's item? (3) staged -> final (4) upsert while the run is alive
    if not heartbeat():
        raise LeaseExpired("the task is no longer this attempt's (job ended or lease lost): not publishing")
    check_item_owner(db, storage, params, item_id)
    claim_item(storage, params, item_id)  # again: a failed sibling's clean-up may have released it
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
            ensure_run_alive(conn, task_id)
        except Conflict as exc:
            ended.append(exc)
            raise

    try:
        upsert_item(db, item, guard=guard)
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
        claim_item(storage, params, item_id)  # back if a sibling's clean-up released it meanwhile
    except GeoetlError as exc:  # published: a leftover staging folder (or claim) must not fail the job
        logger.warning("after publishing %s/%s: %s", container, staging, exc)
    return access_tiers


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


# -- clean-up ------------------------------------------------------------------------------------


def remove_staging(storage: Any, container: str, prefix: str) -> list[str]:
    """Delete every blob under a run's staging prefix (whatever wrote it: tiers, late uploads); idempotent."""
    removed: list[str] = []
    with contextlib.suppress(NotFound):  # no container: nothing was staged
        for blob in list(storage.iter_blobs(container, prefix)):
            if storage.delete(container, blob.name):
                removed.append(blob.name)
    return sorted(removed)


def clean_up_run(
    storage: Any,
    db: Any,
    params: Mapping[str, Any],
    *,
    item_id: str,
    job_id: str,
    run: int,
) -> dict[str, Any]:
    """Remove what a failed or cancelled run staged: every blob under its own staging folder
    ``cogs/<collection>/<item>/_runs/<job_id[:16]>-r<run>/`` (listed, so late uploads go too; idempotent).

    Published (final) paths are never touched: they hold what an earlier run, or a still running job of the
    same source, published or is about to. The item's claim is released when this source has no item (and
    the claim is this source's); a running sibling re-claims it before publishing.
    """
    container, collection_id = str(params["output_container"]), str(params["collection_id"])
    removed = remove_staging(storage, container, staging_prefix(collection_id, item_id, job_id, run))
    source_container, source_blob = source_of(params)
    source = storage.url(source_container, source_blob)
    claim = claim_blob(collection_id, item_id)
    try:
        holder = json.loads(storage.read_bytes(container, claim)).get("source")
    except (NotFound, ValueError):
        holder = None
    unpublished = holder == source and get_item(db, collection_id, item_id) is None
    if unpublished and storage.delete(container, claim):
        removed.append(claim)
    return {"container": container, "removed": removed}
