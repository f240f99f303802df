"""services.raster on real generated files through GDAL: validation facts, tier plans, COGs per tier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rio_cogeo.cogeo import cog_validate

from core.errors import InvalidInput
from services.raster.cog import make_cog
from services.raster.inspect import inspect_raster
from tests.helpers import rasters


@pytest.mark.parametrize(
    ("kind", "raster_type", "visualization"),
    [
        ("rgb", "rgb", True),
        ("rgba", "rgba", True),
        ("dem", "dem", False),
        ("multispectral", "multispectral", False),
        ("categorical", "categorical", False),
        ("antimeridian", "rgb", True),
    ],
)
def test_detects_type_and_plans_tiers(tmp_path: Path, kind: str, raster_type: str, visualization: bool) -> None:
    facts = inspect_raster(str(rasters.make(kind, tmp_path, 128)))
    assert facts.raster_type == facts.detected_type == raster_type
    assert facts.tiers["visualization"].possible is visualization
    assert facts.tiers["analysis"].possible and facts.tiers["archive"].possible
    assert facts.tiers["analysis"].predictor == (3 if facts.dtype == "float32" else 2)
    assert facts.tiers["analysis"].overview_resampling == ("mode" if kind == "categorical" else "average")
    assert facts.crs_from_file and facts.uncompressed_bytes == 128 * 128 * facts.count * np.dtype(facts.dtype).itemsize
    if not visualization:
        assert facts.tiers["visualization"].reason


def test_facts_of_a_dem(tmp_path: Path) -> None:
    facts = inspect_raster(str(rasters.dem_float32(tmp_path / "dem.tif", 64)))
    assert (facts.width, facts.height, facts.count, facts.dtype) == (64, 64, 1, "float32")
    assert facts.nodata == rasters.DEM_NODATA and facts.crs == "EPSG:32633"
    west, south, east, north = facts.bounds_wgs84
    assert 14.9 < west < east < 15.1 and 46.8 < south < north < 47
    assert not facts.is_64bit and not facts.is_cog and facts.warnings == []
    assert "8-bit" in (facts.tiers["visualization"].reason or "")


def test_declared_type_is_checked(tmp_path: Path) -> None:
    rgb = str(rasters.rgb_uint8(tmp_path / "rgb.tif", 64))
    assert inspect_raster(rgb, raster_type="multispectral").raster_type == "multispectral"
    with pytest.raises(InvalidInput, match="raster_type 'dem' needs 1 band; the file has 3"):
        inspect_raster(rgb, raster_type="dem")
    with pytest.raises(InvalidInput, match="needs 4 bands"):
        inspect_raster(rgb, raster_type="rgba")
    dem = str(rasters.dem_float32(tmp_path / "dem.tif", 64))
    with pytest.raises(InvalidInput, match="integer classes"):
        inspect_raster(dem, raster_type="categorical")


def test_64bit_is_flagged_and_nodata_override_checked(tmp_path: Path) -> None:
    path = tmp_path / "f64.tif"
    profile = {"driver": "GTiff", "width": 32, "height": 32, "count": 1, "dtype": "float64", "crs": "EPSG:4326"}
    with rasterio.open(path, "w", transform=Affine(0.01, 0, 10, 0, -0.01, 50), **profile) as dst:
        dst.write(np.ones((1, 32, 32)))
    facts = inspect_raster(str(path), nodata=-1)
    assert facts.is_64bit and facts.nodata == -1 and "64-bit" in facts.warnings[0]
    with pytest.raises(InvalidInput, match="does not fit"):
        inspect_raster(str(rasters.rgb_uint8(tmp_path / "rgb.tif", 32)), nodata=300)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # the file this test makes on purpose
def test_crs_and_georeferencing_problems(tmp_path: Path) -> None:
    no_crs = str(rasters.no_crs(tmp_path / "nocrs.tif", 64))
    with pytest.raises(InvalidInput, match="no CRS; pass input_crs"):
        inspect_raster(no_crs)
    facts = inspect_raster(no_crs, input_crs="EPSG:32633")
    assert facts.crs == "EPSG:32633" and not facts.crs_from_file
    with pytest.raises(InvalidInput, match="not plausible for EPSG:4326"):
        inspect_raster(no_crs, input_crs="EPSG:4326")
    with pytest.raises(InvalidInput, match="not a CRS PROJ knows"):
        inspect_raster(no_crs, input_crs="EPSG:999999")
    ungeoreferenced = tmp_path / "pixels.tif"
    with rasterio.open(ungeoreferenced, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 8, 8), dtype="uint8"))
    with pytest.raises(InvalidInput, match="no georeferencing"):
        inspect_raster(str(ungeoreferenced), input_crs="EPSG:4326")
    rgb = str(rasters.rgb_uint8(tmp_path / "rgb.tif", 32))
    assert "ignored" in inspect_raster(rgb, input_crs="EPSG:4326").warnings[0]


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot be opened as a raster"):
        inspect_raster(str(rasters.not_a_raster(tmp_path / "text.tif")))
    with pytest.raises(InvalidInput, match="truncated"):
        inspect_raster(str(rasters.truncated(tmp_path / "cut.tif", 256)))
    with pytest.raises(InvalidInput, match="cannot be read \\(truncated or corrupt"):
        inspect_raster(str(rasters.truncated_cog(tmp_path / "cutcog.tif", 512)))


def _cog(
    tmp_path: Path, source: Path, tier: str, input_crs: str | None = None, target_crs: str | None = None
) -> tuple[Path, rasterio.io.DatasetReader]:
    facts = inspect_raster(str(source), input_crs=input_crs)
    out = tmp_path / f"{source.stem}_{tier}.tif"
    plan = facts.tiers[tier]
    written = make_cog(
        str(source), out, plan, raster_type=facts.raster_type, input_crs=input_crs, target_crs=target_crs
    )
    assert written.path == out and written.size == out.stat().st_size
    assert cog_validate(str(out), quiet=True)[0]
    return out, rasterio.open(out)


def test_rgb_with_nodata_gets_a_jpeg_mask(tmp_path: Path) -> None:
    source = rasters.rgb_uint8(tmp_path / "rgb.tif", 256)
    with rasterio.open(source, "r+") as dst:
        dst.nodata = 0
    _, dataset = _cog(tmp_path, source, "visualization")
    with dataset:
        assert dataset.count == 3 and dataset.nodata is None
        assert dataset.mask_flag_enums[0] == [rasterio.enums.MaskFlags.per_dataset]
        assert dataset.tags(ns="IMAGE_STRUCTURE")["JPEG_QUALITY"] == "85"


def test_gray_uint8_jpeg_is_minisblack(tmp_path: Path) -> None:
    source = rasters.no_crs(tmp_path / "gray.tif", 256)
    _, dataset = _cog(tmp_path, source, "visualization", input_crs="EPSG:32633")
    with dataset:
        assert dataset.count == 1 and dataset.crs.to_epsg() == 32633
        assert dataset.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "JPEG"


def test_reprojecting_rgb_masks_the_outside(tmp_path: Path) -> None:
    source = rasters.rgb_uint8(tmp_path / "rgb.tif", 256)
    _, dataset = _cog(tmp_path, source, "analysis", target_crs="EPSG:32632")  # the next zone west: rotated
    with dataset:
        assert dataset.crs.to_epsg() == 32632 and dataset.count == 3
        mask = dataset.dataset_mask()
        assert 0 < (mask == 0).sum() < mask.size  # the rotated grid leaves corners outside the source


def test_outputs_are_cogs_and_recognized_as_such(tmp_path: Path) -> None:
    source = rasters.multiband_int16(tmp_path / "ms.tif", 600)
    out, dataset = _cog(tmp_path, source, "analysis")
    with dataset:
        assert dataset.overviews(1) == [2, 4]  # 512 tiles halved to 256 for a small raster: 600 → 300 → 150
        assert dataset.block_shapes[0] == (256, 256)
        assert dataset.tags()["sensor"] == "synthetic"
    assert inspect_raster(str(out)).is_cog
    assert not inspect_raster(str(source)).is_cog


def test_reprojecting_across_the_antimeridian_to_wgs84_keeps_one_piece(tmp_path: Path) -> None:
    from services.stac.items import build_raster_item

    source = rasters.antimeridian(tmp_path / "fiji.tif", 256)
    out, dataset = _cog(tmp_path, source, "analysis", target_crs="EPSG:4326")
    with dataset:
        west, _, east, _ = dataset.bounds
        assert west == pytest.approx(178, abs=0.01) and east == pytest.approx(182, abs=0.05)
        assert dataset.width > 200 and dataset.height > 200  # not a coarse whole-globe grid
        mask = dataset.dataset_mask()
        assert (mask > 0).mean() > 0.9
    item = build_raster_item(out, item_id="fiji", collection_id="cogs", statistics=False)
    assert item["geometry"]["type"] == "MultiPolygon" and item["bbox"][0] > item["bbox"][2]


@pytest.mark.parametrize("target_crs", [None, "EPSG:3857"])
@pytest.mark.parametrize("tier", ["analysis", "archive"])
def test_lossless_tiers_keep_the_metadata(tmp_path: Path, tier: str, target_crs: str | None) -> None:
    source = rasters.dem_float32(tmp_path / "dem.tif", 512)
    with rasterio.open(source, "r+") as dst:
        dst.update_tags(ns="PROVIDER", licence="CC-BY-4.0")
        dst.update_tags(acquired="2024-01-01")
        dst.scales, dst.offsets, dst.units = (0.5,), (10.0,), ("metre",)
    _, dataset = _cog(tmp_path, source, tier, target_crs=target_crs)
    with dataset:
        assert dataset.tags()["acquired"] == "2024-01-01"
        assert dataset.tags().get("PROVIDER.licence") == ("CC-BY-4.0" if tier == "archive" else None)
        assert dataset.descriptions == ("elevation",) and dataset.tags(1)["units"] == "metre"
        assert (dataset.units, dataset.scales, dataset.offsets) == (("metre",), (0.5,), (10.0,))
        assert dataset.nodata == rasters.DEM_NODATA and dataset.overviews(1)
    assert not list(tmp_path.glob("*.metadata.tif"))  # the staging copy is gone


def test_a_reprojected_rgb_keeps_its_mask_and_tags(tmp_path: Path) -> None:
    source = rasters.rgb_uint8(tmp_path / "rgb.tif", 256)
    with rasterio.open(source, "r+") as dst:
        for band, name in enumerate(("red", "green", "blue"), start=1):
            dst.set_band_description(band, name)
    _, dataset = _cog(tmp_path, source, "archive", target_crs="EPSG:32632")
    with dataset:
        assert dataset.descriptions == ("red", "green", "blue") and dataset.tags()["kind"] == "rgb"
        mask = dataset.dataset_mask()
        assert 0 < (mask == 0).sum() < mask.size and dataset.mask_flag_enums[0] == [
            rasterio.enums.MaskFlags.per_dataset
        ]


def test_source_size_budget_and_float_nodata_range(tmp_path: Path) -> None:
    rgb = str(rasters.rgb_uint8(tmp_path / "rgb.tif", 64))  # 64 x 64 x 3 bytes
    assert inspect_raster(rgb, max_bytes=64 * 64 * 3).count == 3
    with pytest.raises(InvalidInput, match=r"at most 0\.0 GiB \(RASTER_MAX_SOURCE_BYTES\).*function's time limit"):
        inspect_raster(rgb, max_bytes=64 * 64 * 3 - 1)
    dem = str(rasters.dem_float32(tmp_path / "dem.tif", 32))
    with pytest.raises(InvalidInput, match="nodata 1e\\+39 does not fit the raster's data type float32"):
        inspect_raster(dem, nodata=1e39)
    assert inspect_raster(dem, nodata=-3.0e38).nodata == -3.0e38


@pytest.mark.parametrize(
    ("target_crs", "message"),
    [
        ("EPSG:4978", "not a map projection or a geographic CRS"),
        ("EPSG:5703", "not a map projection or a geographic CRS"),
        ("+proj=ortho +lat_0=-60 +lon_0=-100", "cannot be reprojected to target_crs"),  # the far side
    ],
)
def test_target_crs_the_raster_cannot_go_to_is_refused_in_validation(
    tmp_path: Path, target_crs: str, message: str
) -> None:
    dem = str(rasters.dem_float32(tmp_path / "dem.tif", 32))
    with pytest.raises(InvalidInput, match=message):
        inspect_raster(dem, target_crs=target_crs)
    assert inspect_raster(dem, target_crs="EPSG:3031").crs == "EPSG:32633"
