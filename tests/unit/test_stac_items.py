"""STAC items built from real rasters: schema-valid (offline), footprints, antimeridian, bands, assets."""

from __future__ import annotations

import copy
import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import rasterio
from shapely.geometry import Point, shape

from core.errors import InvalidInput
from infrastructure.storage.base import GdalPath
from services.stac.items import (
    COG_MEDIA_TYPE,
    FILE_EXTENSION,
    PROJECTION_EXTENSION,
    RASTER_EXTENSION,
    build_raster_item,
    default_item_id,
    file_asset,
    footprint_wgs84,
    validate_stac_id,
)
from tests.helpers import rasters
from tests.helpers.stac_schema import item_errors, validate_item

KINDS = ["rgb", "rgba", "dem", "multispectral", "categorical", "antimeridian"]


@pytest.mark.parametrize("kind", KINDS)
def test_items_from_every_kind_of_raster_validate(kind: str, tmp_path: Path) -> None:
    source = rasters.make(kind, tmp_path, 64)
    item = build_raster_item(source, item_id=f"{kind}-1", collection_id="cogs")
    validate_item(item)
    assert item["stac_extensions"] == [PROJECTION_EXTENSION, RASTER_EXTENSION]
    props = item["properties"]
    assert props["proj:shape"] == [64, 64] and len(props["proj:transform"]) == 6
    assert props["created"] == props["updated"] and props["datetime"]
    bands = item["assets"]["data"]["raster:bands"]
    assert len(bands) == {"rgb": 3, "rgba": 4, "multispectral": 4}.get(kind, 3 if kind == "antimeridian" else 1)
    assert item["assets"]["data"]["href"] == str(source)


def test_projected_raster_footprint_bbox_and_projection(tmp_path: Path) -> None:
    item = build_raster_item(rasters.rgb_uint8(tmp_path / "rgb.tif", 64), item_id="rgb", collection_id="cogs")
    assert item["properties"]["proj:code"] == "EPSG:32633"
    assert item["properties"]["proj:bbox"] == [500000.0, 5199360.0, 500640.0, 5200000.0]
    west, south, east, north = item["bbox"]
    assert 14.99 < west < east < 15.01 and 46.9 < south < north < 47.0  # UTM 33N at 15°E (its central meridian)
    assert item["geometry"]["type"] == "Polygon"
    ring = item["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) <= 12  # collinear points of the dense outline dropped


def test_antimeridian_footprint_is_split_and_bbox_wraps(tmp_path: Path) -> None:
    item = build_raster_item(rasters.antimeridian(tmp_path / "am.tif", 64), item_id="fiji", collection_id="cogs")
    assert item["geometry"]["type"] == "MultiPolygon"
    parts = item["geometry"]["coordinates"]
    assert len(parts) == 2
    lons = [sorted({round(x, 3) for x, _ in part[0]}) for part in parts]
    assert {(min(p), max(p)) for p in lons} == {(178.0, 180.0), (-180.0, -178.0)}
    west, south, east, north = item["bbox"]
    assert west == pytest.approx(178.0) and east == pytest.approx(-178.0) and west > east
    assert south == pytest.approx(-20.0, abs=1e-6) and north == pytest.approx(-16.0, abs=1e-6)
    validate_item(item)


def test_footprints_in_geographic_coordinates() -> None:
    geometry, bbox = footprint_wgs84((170.0, -10.0, 190.0, 10.0), "EPSG:4326")  # a 0..360 style grid
    assert geometry["type"] == "MultiPolygon" and bbox == [170.0, -10.0, -170.0, 10.0]
    geometry, bbox = footprint_wgs84((-180.0, -90.0, 180.0, 90.0), "EPSG:4326")
    assert geometry["type"] == "Polygon" and bbox == [-180.0, -90.0, 180.0, 90.0]
    geometry, bbox = footprint_wgs84((-3e6, -3e6, 3e6, 3e6), "EPSG:3413")  # polar stereographic: holds the pole
    assert bbox[2] == 180.0 and bbox[3] == 90.0 and bbox[0] == -180.0
    with pytest.raises(InvalidInput, match="outside the area the CRS covers"):
        footprint_wgs84((0.0, 0.0, 1e20, 1e20), "EPSG:32633")


def test_band_statistics_and_valid_percent(tmp_path: Path) -> None:
    dem = build_raster_item(rasters.dem_float32(tmp_path / "dem.tif", 100), item_id="dem", collection_id="cogs")
    band = dem["assets"]["data"]["raster:bands"][0]
    assert band["data_type"] == "float32" and band["nodata"] == -9999 and band["spatial_resolution"] == 30.0
    stats = band["statistics"]
    assert stats["minimum"] >= 200.0 and stats["maximum"] <= 2700.0  # the nodata hole is not counted
    assert stats["valid_percent"] == pytest.approx(100 * (1 - 20 * 20 / 100**2))
    no_nodata = rasters.dem_float32(tmp_path / "full.tif", 64, nodata=None)
    band = build_raster_item(no_nodata, item_id="full", collection_id="cogs")["assets"]["data"]["raster:bands"][0]
    assert "nodata" not in band and band["statistics"]["valid_percent"] == 100.0  # rio-stac would say otherwise
    rgba = build_raster_item(rasters.rgba_uint8(tmp_path / "rgba.tif", 64), item_id="rgba", collection_id="cogs")
    assert rgba["assets"]["data"]["raster:bands"][0]["statistics"]["valid_percent"] == pytest.approx(
        100 * (56 / 64) ** 2
    )
    quiet = build_raster_item(no_nodata, item_id="q", collection_id="cogs", statistics=False)
    assert "statistics" not in quiet["assets"]["data"]["raster:bands"][0]


def test_file_assets_links_and_properties(tmp_path: Path) -> None:
    source = rasters.multiband_int16(tmp_path / "ms.tif", 32)
    asset = file_asset(source, href="https://example.org/ms.tif", roles=["data"], title="analysis", extra={"x:y": 1})
    assert asset["type"] == COG_MEDIA_TYPE and asset["file:size"] == source.stat().st_size
    assert asset["file:checksum"] == "1220" + hashlib.sha256(source.read_bytes()).hexdigest()
    thumb = {"href": "https://example.org/t.png", "type": "image/png", "roles": ["thumbnail"]}
    item = build_raster_item(
        GdalPath(str(source), {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}),
        item_id="ms",
        collection_id="cogs",
        assets={"analysis": {k: v for k, v in asset.items() if k != "x:y"}, "thumbnail": thumb},
        links=[{"rel": "derived_from", "href": "https://example.org/bronze/ms.tif"}],
        properties={"datetime": "2024-05-01T10:00:00Z", "title": "four bands"},
    )
    validate_item(item)
    assert item["stac_extensions"] == [PROJECTION_EXTENSION, RASTER_EXTENSION, FILE_EXTENSION]
    assert item["properties"]["datetime"] == "2024-05-01T10:00:00Z" and item["properties"]["title"] == "four bands"
    assert len(item["assets"]["analysis"]["raster:bands"]) == 4 and "raster:bands" not in item["assets"]["thumbnail"]
    assert {link["rel"] for link in item["links"]} == {"derived_from", "collection"}
    ranged = build_raster_item(
        source,
        item_id="ranged",
        collection_id="cogs",
        properties={"start_datetime": "2024-01-01T00:00:00Z", "end_datetime": "2024-02-01T00:00:00Z"},
    )
    assert ranged["properties"]["datetime"] is None
    validate_item(ranged)


def test_the_schema_check_catches_broken_items(tmp_path: Path) -> None:
    item = build_raster_item(rasters.rgb_uint8(tmp_path / "rgb.tif", 32), item_id="rgb", collection_id="cogs")
    broken = copy.deepcopy(item)
    broken["properties"]["proj:shape"] = [32]
    broken["assets"]["data"]["raster:bands"][0]["data_type"] = "uint9"
    del broken["properties"]["datetime"]
    errors = "\n".join(item_errors(broken))
    assert "proj:shape" in errors and "uint9" in errors and "item.json: properties" in errors  # no datetime
    unlisted = copy.deepcopy(item)
    unlisted["stac_extensions"] = []
    assert item_errors(unlisted)
    unknown = copy.deepcopy(item)
    unknown["stac_extensions"].append("https://stac-extensions.github.io/eo/v1.1.0/schema.json")
    assert any("no offline schema" in e for e in item_errors(unknown))


@pytest.mark.parametrize("maker", [rasters.no_crs, rasters.not_a_raster, rasters.truncated])
def test_bad_rasters_are_invalid_input(maker: object, tmp_path: Path) -> None:
    path = maker(tmp_path / "bad.tif")  # type: ignore[operator]
    with pytest.raises(InvalidInput, match=r"no CRS|not a readable raster|cannot be read"):
        build_raster_item(path, item_id="bad", collection_id="cogs")


@pytest.mark.parametrize("bad", ["", "../up", "a/b", "with space", "-dash-first", "x" * 256])
def test_ids_are_checked(bad: str) -> None:
    with pytest.raises(InvalidInput, match="invalid item id"):
        validate_stac_id(bad)
    assert validate_stac_id("rgb_2024-01-01.v2") == "rgb_2024-01-01.v2"


def test_default_item_ids_are_process_rasters_and_do_not_collide() -> None:
    import jobs.process_raster

    assert jobs.process_raster.default_item_id is default_item_id  # one rule for process_raster and extract
    assert default_item_id("scene.tif") == "scene"
    digest = hashlib.sha256(b"a/b.tif").hexdigest()[:8]
    assert default_item_id("a/b.tif") == f"a-b-{digest}" != default_item_id("a-b.tif") == "a-b"
    names = ["a/b.tif", "a-b.tif", "a b.tif", "scene.tif", "scene.jp2", "scene.TIF", "x" * 300 + ".tif"]
    made = [default_item_id(name) for name in names]
    assert len(set(made)) == len(names)
    for item_id in made:
        assert validate_stac_id(item_id) == item_id and len(item_id) <= 128


def test_datetime_comes_from_the_raster_then_the_fallback_never_from_the_build_time(tmp_path: Path) -> None:
    plain = rasters.dem_float32(tmp_path / "plain.tif", 32)
    os.utime(plain, (1_700_000_000, 1_700_000_000))  # 2023-11-14T22:13:20Z
    first = build_raster_item(plain, item_id="p", collection_id="cogs", statistics=False)
    again = build_raster_item(plain, item_id="p", collection_id="cogs", statistics=False)
    assert first["properties"]["datetime"] == again["properties"]["datetime"] == "2023-11-14T22:13:20Z"
    given = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
    blob = GdalPath(str(plain), {})  # a storage path: no local modification time to fall back on
    assert (
        build_raster_item(blob, item_id="p", collection_id="cogs", fallback_datetime=given)["properties"]["datetime"]
        == "2024-06-01T12:30:00Z"
    )

    tagged = rasters.dem_float32(tmp_path / "tagged.tif", 32)
    with rasterio.open(tagged, "r+") as dataset:
        dataset.update_tags(TIFFTAG_DATETIME="2021:03:04 05:06:07")
    item = build_raster_item(tagged, item_id="t", collection_id="cogs", fallback_datetime=given)
    assert item["properties"]["datetime"] == "2021-03-04T05:06:07Z"
    with rasterio.open(tagged, "r+") as dataset:
        dataset.update_tags(ns="IMAGERY", ACQUISITIONDATETIME="2020-01-02 03:04:05")
    item = build_raster_item(tagged, item_id="t", collection_id="cogs")
    assert item["properties"]["datetime"] == "2020-01-02T03:04:05Z"  # the acquisition, before the file's date
    explicit = build_raster_item(
        tagged, item_id="t", collection_id="cogs", properties={"datetime": "2019-01-01T00:00:00Z"}
    )
    assert explicit["properties"]["datetime"] == "2019-01-01T00:00:00Z"
    validate_item(explicit)


@pytest.mark.parametrize(
    "bounds, crs, expected_bbox",
    [
        ((0.0, -1e6, 1e6, 1e6), "EPSG:3031", [0.0, -90.0, 180.0, -77.037]),  # the south pole on the west edge
        ((-1e6, -1e6, 0.0, 1e6), "EPSG:3031", [-180.0, -90.0, 0.0, -77.037]),  # ... on the east edge
        ((0.0, 0.0, 1e6, 1e6), "EPSG:3031", [0.0, -90.0, 90.0, -77.037]),  # ... at a corner
        ((-1e6, -1e6, 0.0, 1e6), "EPSG:3413", [135.0, 76.999, -45.0, 90.0]),  # the north pole, across 180°
    ],
)
def test_a_pole_on_the_edge_is_reached_over_the_right_longitudes(
    bounds: tuple[float, float, float, float], crs: str, expected_bbox: list[float]
) -> None:
    geometry, bbox = footprint_wgs84(bounds, crs)
    assert [round(v, 3) for v in bbox] == expected_bbox
    footprint = shape(geometry)
    assert footprint.is_valid
    west, east = expected_bbox[0], expected_bbox[2]
    middle = (west + east) / 2 if west < east else (west + east + 360) / 2 - 360
    pole = expected_bbox[1] if expected_bbox[1] == -90.0 else expected_bbox[3]
    assert footprint.contains(Point(middle, pole * 0.9999))  # near the pole, inside the covered longitudes
    assert not footprint.contains(Point(middle + 180 if middle < 0 else middle - 180, pole * 0.9999))
