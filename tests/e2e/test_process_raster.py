"""``process_raster`` end to end: generated rasters in, the job through the HTTP API and real queue workers,
COGs in storage checked with rio-cogeo and GDAL, the STAC item in pgstac."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from infrastructure.context import AppContext
from services.raster.paths import claim_blob
from services.stac.catalog import get_item
from services.stac.items import default_item_id
from tests.helpers import rasters
from tests.helpers.stac_schema import validate_item
from tests.plugins.jobs_api import wait_for_job

SOURCE = "bronze"
OUTPUT = "silver"


def upload(context: AppContext, folder: Path, kind: str, blob: str, size: int = 512) -> str:
    path = rasters.make(kind, folder, size)
    context.storage.upload_file(SOURCE, blob, path)
    return blob


def submit(api: str, params: dict[str, Any], expected: int = 202) -> dict[str, Any]:
    response = httpx.post(f"{api}/jobs/submit/process_raster", json=params, timeout=30)
    assert response.status_code == expected, response.text
    body: dict[str, Any] = response.json()
    return body


def run(api: str, params: dict[str, Any]) -> dict[str, Any]:
    return wait_for_job(submit(api, params)["status_url"], timeout=90)


def fetch(context: AppContext, blob: str, folder: Path) -> Path:
    return context.storage.download_file(OUTPUT, blob, folder / Path(blob).name)


def structure(path: Path) -> dict[str, str]:
    with rasterio.open(path) as dataset:
        return dict(dataset.tags(ns="IMAGE_STRUCTURE"))


def output_blobs(context: AppContext) -> list[str]:
    """Everything the job wrote in the output container: COGs and item claims."""
    return [b.name for b in context.storage.iter_blobs(OUTPUT, "cogs/")]


def wait_for_event(api: str, job_id: str, event: str, timeout: float = 30) -> dict[str, Any]:
    """The details of the job's first ``event`` (e.g. job_cleaned_up, sent after the job ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{api}/jobs/{job_id}/events", timeout=10)
        assert response.status_code == 200, response.text
        found = [e for e in response.json()["events"] if e["event"] == event]
        if found:
            details: dict[str, Any] = found[0]["details"]
            return details
        time.sleep(0.05)
    raise AssertionError(f"no {event} event for job {job_id} after {timeout} s")


def test_rgba_all_tiers_cogs_item_and_costs(jobs_api: str, jobs_context: AppContext, tmp_path: Path) -> None:
    blob = upload(jobs_context, tmp_path / "in", "rgba", "imagery/scene one.tif")
    status = run(jobs_api, {"blob_name": blob, "output_tier": "all"})
    assert status["status"] == "completed", status["error_details"]
    result = status["result_data"]
    item_id = default_item_id(blob)
    assert item_id.startswith("imagery-scene-one-")
    assert result["stac"] == {"collection_id": "cogs", "item_id": item_id}
    assert result["raster"]["raster_type"] == "rgba" and result["skipped_tiers"] == {}
    by_tier = {o["tier"]: o for o in result["outputs"]}
    assert set(by_tier) == {"visualization", "analysis", "archive"}
    for tier, output in by_tier.items():
        assert output["blob"] == f"cogs/cogs/{item_id}/{item_id}_{tier}.tif"
        assert output["container"] == OUTPUT
        assert result["sizes"][tier] == output["size"] > 0
    claim = claim_blob("cogs", item_id)
    assert set(output_blobs(jobs_context)) == {o["blob"] for o in by_tier.values()} | {claim}

    local = {tier: fetch(jobs_context, o["blob"], tmp_path / "out") for tier, o in by_tier.items()}
    for path in local.values():
        assert cog_validate(str(path), quiet=True)[0]
    visual = structure(local["visualization"])
    assert visual["COMPRESSION"] == "YCbCr JPEG" and visual["JPEG_QUALITY"] == "85"
    with rasterio.open(local["visualization"]) as dataset:
        assert dataset.count == 3  # alpha became a mask
        assert all(flags == [rasterio.enums.MaskFlags.per_dataset] for flags in dataset.mask_flag_enums)
        assert dataset.overviews(1) == [2]
        assert dataset.tags()["OVERVIEW_RESAMPLING"] == "AVERAGE"
    analysis = structure(local["analysis"])
    assert (analysis["COMPRESSION"], analysis["PREDICTOR"]) == ("DEFLATE", "2")
    archive = structure(local["archive"])
    assert archive["COMPRESSION"] == "LZW"
    with rasterio.open(local["archive"]) as dataset:
        assert dataset.count == 4 and dataset.colorinterp[3].name == "alpha"

    costs = result["costs"]
    assert costs["tiers"]["archive"]["access_tier"] == "Cool"
    assert costs["tiers"]["analysis"]["access_tier"] == "Hot"
    expected = by_tier["analysis"]["size"] / 1024**3 * jobs_context.settings.raster.raster_price_per_gb_hot
    assert costs["tiers"]["analysis"]["monthly_cost"] == pytest.approx(expected, abs=1e-6)

    item = get_item(jobs_context.db, "cogs", item_id)
    assert item is not None
    validate_item(item)
    assert set(item["assets"]) == {"visualization", "analysis", "archive"}
    asset = item["assets"]["analysis"]
    assert asset["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert asset["file:size"] == by_tier["analysis"]["size"]
    assert asset["file:checksum"].startswith("1220") and len(asset["file:checksum"]) == 68
    assert "visual" in item["assets"]["visualization"]["roles"]
    assert len(item["assets"]["visualization"]["raster:bands"]) == 3
    assert len(asset["raster:bands"]) == 4
    assert any(link["rel"] == "derived_from" for link in item["links"])
    assert item["properties"]["proj:shape"] == [512, 512]


def test_dem_float32_analysis_predictor_3_and_visualization_skipped(
    jobs_api: str, jobs_context: AppContext, tmp_path: Path
) -> None:
    blob = upload(jobs_context, tmp_path, "dem", "dem/alps.tif")
    status = run(jobs_api, {"blob_name": blob, "output_tier": "both", "item_id": "alps-dem"})
    assert status["status"] == "completed", status["error_details"]
    result = status["result_data"]
    assert "8-bit" in result["skipped_tiers"]["visualization"]
    [output] = result["outputs"]
    assert output["tier"] == "analysis" and output["predictor"] == 3
    path = fetch(jobs_context, output["blob"], tmp_path / "out")
    assert structure(path)["PREDICTOR"] == "3"
    with rasterio.open(path) as dataset:
        assert dataset.nodata == rasters.DEM_NODATA and dataset.dtypes[0] == "float32"
    item = get_item(jobs_context.db, "cogs", "alps-dem")
    assert item is not None and set(item["assets"]) == {"analysis"}
    validate_item(item)
    band = item["assets"]["analysis"]["raster:bands"][0]
    assert band["data_type"] == "float32" and band["nodata"] == rasters.DEM_NODATA and "statistics" in band


def test_categorical_mode_overviews_and_reprojection(jobs_api: str, jobs_context: AppContext, tmp_path: Path) -> None:
    blob = upload(jobs_context, tmp_path, "categorical", "landcover.tif")
    status = run(jobs_api, {"blob_name": blob, "target_crs": "EPSG:4326", "collection_id": "landcover"})
    assert status["status"] == "completed", status["error_details"]
    [output] = status["result_data"]["outputs"]
    assert output["crs"] == "EPSG:4326"
    path = fetch(jobs_context, output["blob"], tmp_path / "out")
    with rasterio.open(path) as dataset:
        assert dataset.crs.to_epsg() == 4326
        assert dataset.tags()["OVERVIEW_RESAMPLING"] == "MODE"
        assert set(dataset.read(1).ravel().tolist()) <= {0, 1, 2, 3, 4, 5}  # classes kept (nearest warp)
        assert dataset.colormap(1)[1] == rasters.CATEGORY_COLORS[1]
    item = get_item(jobs_context.db, "landcover", "landcover")
    assert item is not None and item["properties"]["proj:code"] == "EPSG:4326"


def test_int16_multiband_archive_keeps_bands_and_tags(jobs_api: str, jobs_context: AppContext, tmp_path: Path) -> None:
    blob = upload(jobs_context, tmp_path, "multispectral", "s2/tile.tif", size=256)
    status = run(jobs_api, {"blob_name": blob, "output_tier": "archive"})
    assert status["status"] == "completed", status["error_details"]
    [output] = status["result_data"]["outputs"]
    path = fetch(jobs_context, output["blob"], tmp_path / "out")
    with rasterio.open(path) as dataset:
        assert dataset.count == 4 and dataset.dtypes[0] == "int16" and dataset.nodata == -9999
        assert dataset.tags()["sensor"] == "synthetic"
        assert dataset.descriptions == ("band1", "band2", "band3", "band4")
    assert structure(path)["COMPRESSION"] == "LZW"


def test_no_crs_with_input_crs_and_antimeridian_item(jobs_api: str, jobs_context: AppContext, tmp_path: Path) -> None:
    no_crs = upload(jobs_context, tmp_path, "no_crs", "nocrs.tif", size=256)
    status = run(jobs_api, {"blob_name": no_crs, "input_crs": "EPSG:32633", "output_tier": "both"})
    assert status["status"] == "completed", status["error_details"]
    assert status["result_data"]["raster"]["crs_from_file"] is False
    for output in status["result_data"]["outputs"]:
        assert output["crs"] == "EPSG:32633"

    fiji = upload(jobs_context, tmp_path, "antimeridian", "fiji.tif", size=256)
    status = run(jobs_api, {"blob_name": fiji})
    assert status["status"] == "completed", status["error_details"]
    item = get_item(jobs_context.db, "cogs", "fiji")
    assert item is not None
    validate_item(item)
    assert item["geometry"]["type"] == "MultiPolygon"
    west, _, east, _ = item["bbox"]
    assert west > east  # the STAC rule for a bbox across the antimeridian


def test_jpeg_quality_option_is_really_85(tmp_path: Path) -> None:
    """GTiff's option is JPEG_QUALITY; the COG driver's QUALITY would be ignored (GDAL's default 75)."""
    from rio_cogeo.cogeo import cog_translate

    from services.raster.cog import make_cog
    from services.raster.inspect import inspect_raster

    source = rasters.rgb_uint8(tmp_path / "rgb.tif", 512)
    plan = inspect_raster(str(source)).tiers["visualization"]
    ours = make_cog(str(source), tmp_path / "ours.tif", plan, raster_type="rgb")
    wrong = tmp_path / "quality.tif"
    options = {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "JPEG"}
    cog_translate(str(source), str(wrong), {**options, "photometric": "YCbCr", "quality": 85}, quiet=True)
    assert ours.quality == 85 and structure(ours.path)["JPEG_QUALITY"] == "85"
    assert structure(wrong)["JPEG_QUALITY"] == "75"  # QUALITY silently ignored
    assert ours.size > wrong.stat().st_size  # higher quality, larger file


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"blob_name": "a/../b.tif"}, "blob_name"),
        ({"blob_name": "x.tif", "output_tier": "gold"}, "output_tier"),
        ({"blob_name": "x.tif", "colour": "red"}, "colour"),
        ({"blob_name": "x.tif", "raster_type": "hyperspectral"}, "raster_type"),
        ({"blob_name": "x.tif", "item_id": "bad id/.."}, "item_id"),
    ],
)
def test_bad_parameters_are_400_at_submit(jobs_api: str, params: dict[str, Any], field: str) -> None:
    body = submit(jobs_api, params, expected=400)
    assert field in str(body)


def test_missing_blob_and_unknown_crs_are_400_at_submit(
    jobs_api: str, jobs_context: AppContext, tmp_path: Path
) -> None:
    body = submit(jobs_api, {"blob_name": "nowhere/missing.tif"}, expected=400)
    assert "does not exist" in body["error"]["message"]
    blob = upload(jobs_context, tmp_path, "no_crs", "nocrs2.tif", size=64)
    body = submit(jobs_api, {"blob_name": blob, "input_crs": "EPSG:999999"}, expected=400)
    assert "input_crs" in body["error"]["message"]


@pytest.mark.parametrize(
    ("make", "params", "message"),
    [
        (rasters.not_a_raster, {}, "cannot be opened as a raster"),
        (rasters.dem_float32, {"nodata": 1e39}, "does not fit the raster's data type float32"),
        (rasters.truncated, {}, "truncated"),
        (rasters.truncated_cog, {}, "cannot be read (truncated or corrupt?)"),
        (rasters.no_crs, {}, "no CRS; pass input_crs"),
        (rasters.no_crs, {"input_crs": "EPSG:4326"}, "not plausible for EPSG:4326"),
        (rasters.dem_float32, {"raster_type": "rgb"}, "raster_type 'rgb' needs 3 bands"),
    ],
    ids=["not_a_raster", "float_nodata", "truncated", "truncated_cog", "no_crs", "implausible_bounds", "wrong_type"],
)
def test_bad_files_fail_permanently_with_a_clear_error_and_no_outputs(
    jobs_api: str, jobs_context: AppContext, tmp_path: Path, make: Any, params: dict[str, Any], message: str
) -> None:
    path = make(tmp_path / "bad.tif")
    jobs_context.storage.upload_file(SOURCE, "bad/input.tif", path)
    status = run(jobs_api, {"blob_name": "bad/input.tif", "output_tier": "all", **params})
    assert status["status"] == "failed"
    error = status["error_details"]
    assert error["details"]["attempts"] == 1  # permanent: no retries
    assert error["details"]["stage"] == 1
    assert message in error["details"]["error"]["message"]
    assert output_blobs(jobs_context) == []  # refused before anything was written
    assert get_item(jobs_context.db, "cogs", default_item_id("bad/input.tif")) is None


def test_a_corrupt_tile_found_while_converting_fails_at_once_and_the_run_is_cleaned_up(
    jobs_api: str, jobs_context: AppContext, tmp_path: Path
) -> None:
    path = rasters.corrupt_middle_tile(tmp_path / "corrupt.tif", 1024)
    jobs_context.storage.upload_file(SOURCE, "bad/corrupt.tif", path)
    response = submit(jobs_api, {"blob_name": "bad/corrupt.tif", "output_tier": "all", "item_id": "corrupt"})
    status = wait_for_job(response["status_url"], timeout=90)
    assert status["status"] == "failed"
    error = status["error_details"]["details"]
    assert error["stage"] == 2 and error["attempts"] == 1  # bad input: not retried
    assert "the source is corrupt" in error["error"]["message"] and "IReadBlock" in error["error"]["message"]
    cleaned = wait_for_event(jobs_api, response["job_id"], "job_cleaned_up")
    removed = set(cleaned["removed"])
    assert claim_blob("cogs", "corrupt") in removed  # the validate stage had claimed the item
    staging = f"cogs/cogs/corrupt/_runs/{response['job_id'][:16]}-r1/"
    assert all(name.startswith(staging) for name in removed - {claim_blob("cogs", "corrupt")})  # siblings' tiers
    assert output_blobs(jobs_context) == []


def test_target_crs_and_item_conflicts_are_refused_at_submit(
    jobs_api: str, jobs_context: AppContext, tmp_path: Path
) -> None:
    blob = upload(jobs_context, tmp_path, "rgb", "first.tif", size=64)
    body = submit(jobs_api, {"blob_name": blob, "target_crs": "EPSG:4978"}, expected=400)
    assert "not a map projection or a geographic CRS" in body["error"]["message"]
    status = run(jobs_api, {"blob_name": blob, "item_id": "taken"})
    assert status["status"] == "completed", status["error_details"]
    other = upload(jobs_context, tmp_path, "dem", "second.tif", size=64)
    body = submit(jobs_api, {"blob_name": other, "item_id": "taken"}, expected=409)
    assert "already exists and was made from another source" in body["error"]["message"]


def test_azurite_reads_through_vsiaz_and_archive_goes_cool(
    azurite_jobs_api: str, azurite_jobs_context: AppContext, tmp_path: Path
) -> None:
    context = azurite_jobs_context
    blob = upload(context, tmp_path, "rgb", "azurite/raster-e2e.tif", size=256)
    status = run(azurite_jobs_api, {"blob_name": blob, "output_tier": "all", "item_id": "azurite-rgb"})
    assert status["status"] == "completed", status["error_details"]
    by_tier = {o["tier"]: o for o in status["result_data"]["outputs"]}
    assert by_tier["archive"]["access_tier"] == "Cool"
    assert by_tier["visualization"]["jpeg_quality"] == 85
    for output in by_tier.values():
        path = context.storage.download_file(OUTPUT, output["blob"], tmp_path / "out" / Path(output["blob"]).name)
        assert cog_validate(str(path), quiet=True)[0]
        assert path.stat().st_size == output["size"]
    item = get_item(context.db, "cogs", "azurite-rgb")
    assert item is not None and set(item["assets"]) == {"visualization", "analysis", "archive"}
    published = {b.name for b in context.storage.iter_blobs(OUTPUT, "cogs/cogs/azurite-rgb/")}
    assert published == {o["blob"] for o in by_tier.values()} | {claim_blob("cogs", "azurite-rgb")}  # staging gone
    archive = context.storage._blob(OUTPUT, by_tier["archive"]["blob"]).get_blob_properties()  # type: ignore[attr-defined]
    assert archive.blob_tier == "Cool"  # set on the published blob, not on the staged one
