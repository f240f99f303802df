"""Pure logic of process_raster: parameters, item ids, output paths, tile sizes, creation options, costs."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.errors import InvalidInput
from jobs.process_raster import TIER_SETS, ProcessRasterParameters
from services.raster.cog import blocksize_for, creation_options, sweep_stale_temp_dirs
from services.raster.costs import GIB, monthly_costs, sizes_by_tier
from services.raster.inspect import (
    TierPlan,
    overview_resampling,
    parse_crs,
    predictor_for,
    require_2d,
    warp_resampling,
)
from services.raster.paths import output_blob
from services.stac.items import default_item_id


def test_parameters_defaults_match_the_issue() -> None:
    params = ProcessRasterParameters(blob_name="a/b.tif")
    assert (params.container_name, params.output_container, params.collection_id) == ("bronze", "silver", "cogs")
    assert params.output_tier == "analysis" and params.raster_type == "auto"
    assert params.item_id is None and params.input_crs is None and params.target_crs is None and params.nodata is None
    assert params.resolved_item_id() == "a-b-" + _hash("a/b.tif")
    assert params.tiers() == ("analysis",)


def _hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


@pytest.mark.parametrize(
    "bad",
    [
        {"blob_name": "a/../b.tif"},
        {"blob_name": "/abs.tif"},
        {"blob_name": "x.tif", "output_tier": "gold"},
        {"blob_name": "x.tif", "raster_type": "lidar"},
        {"blob_name": "x.tif", "unknown": 1},
        {"blob_name": "x.tif", "container_name": "Bad_Container"},
        {"blob_name": "x.tif", "item_id": "-leading-dash"},
        {"blob_name": "x.tif", "collection_id": "has space"},
        {"blob_name": "x.tif", "nodata": "nan"},
        {},
    ],
)
def test_parameters_reject_bad_input(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ProcessRasterParameters.model_validate(bad)


def test_tier_sets() -> None:
    assert TIER_SETS["both"] == ("visualization", "analysis")
    assert TIER_SETS["all"] == ("visualization", "analysis", "archive")


@pytest.mark.parametrize(
    ("blob", "item_id"),
    [
        ("scene.tif", "scene"),
        ("dem_30m.v2.tif", "dem_30m.v2"),
        ("imagery/2024/scene one.TIF", "imagery-2024-scene-one-" + _hash("imagery/2024/scene one.TIF")),
        ("dem/alps_30m.v2.tif", "dem-alps_30m.v2-" + _hash("dem/alps_30m.v2.tif")),
        ("ünïcode/ßtraße.tif", "n-code-tra-e-" + _hash("ünïcode/ßtraße.tif")),
        ("---.tif", "raster-" + _hash("---.tif")),
        ("noext", "noext-" + _hash("noext")),
        ("scene.jp2", "scene-" + _hash("scene.jp2")),
    ],
)
def test_default_item_id(blob: str, item_id: str) -> None:
    assert default_item_id(blob) == item_id


@pytest.mark.parametrize(
    "names",
    [("a/b.tif", "a-b.tif"), ("scene.tif", "scene.jp2", "scene.tiff", "scene"), ("x y.tif", "x-y.tif", "x--y.tif")],
)
def test_default_item_ids_of_different_blobs_differ(names: tuple[str, ...]) -> None:
    """Different sources must not share an item (and its output paths) by default."""
    assert len({default_item_id(name) for name in names}) == len(names)


@pytest.mark.parametrize("crs", ["EPSG:4978", "EPSG:5703", "EPSG:4979"])
def test_target_crs_must_be_2d_projected_or_geographic(crs: str) -> None:
    with pytest.raises(InvalidInput, match="target_crs"):
        require_2d(parse_crs(crs, "target_crs"), crs)


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857", "EPSG:32633", "+proj=ortho +lat_0=-60 +lon_0=-100"])
def test_2d_target_crs_are_accepted(crs: str) -> None:
    require_2d(parse_crs(crs, "target_crs"), crs)


def test_stale_temp_folders_are_swept(tmp_path: Path) -> None:
    old, fresh, other = tmp_path / "raster-old", tmp_path / "raster-fresh", tmp_path / "keep-old"
    for folder in (old, fresh, other):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "x.tif").write_bytes(b"x")
    past = time.time() - 7 * 3600
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    assert sweep_stale_temp_dirs(tmp_path, 6 * 3600) == 1
    assert not old.exists() and fresh.exists() and other.exists()
    assert sweep_stale_temp_dirs(tmp_path / "missing", 1) == 0


def test_output_paths_are_deterministic() -> None:
    assert output_blob("cogs", "scene", "analysis") == "cogs/cogs/scene/scene_analysis.tif"
    assert output_blob("cogs", "scene", "analysis") == output_blob("cogs", "scene", "analysis")


@pytest.mark.parametrize(
    ("width", "height", "configured", "expected"),
    [
        (100, 100, 512, 256),
        (512, 512, 512, 256),
        (1024, 300, 512, 512),
        (20000, 20000, 512, 512),
        (600, 600, 1024, 256),
    ],
)
def test_blocksize(width: int, height: int, configured: int, expected: int) -> None:
    assert blocksize_for(width, height, configured) == expected


def test_predictor_and_resampling_by_type() -> None:
    assert predictor_for("uint8") == predictor_for("int16") == 2
    assert predictor_for("float32") == predictor_for("float64") == 3
    assert overview_resampling("categorical") == "mode"
    assert overview_resampling("dem") == overview_resampling("rgb") == "average"
    assert warp_resampling("categorical") == "nearest" and warp_resampling("dem") == "bilinear"


def test_creation_options_per_tier() -> None:
    jpeg = TierPlan("visualization", True, compression="JPEG", quality=85, photometric="YCbCr", bands=[1, 2, 3])
    options = creation_options(jpeg, 512, "ALL_CPUS")
    assert options["jpeg_quality"] == 85 and "quality" not in options  # GTiff's name for the option
    assert options["photometric"] == "YCbCr" and "predictor" not in options
    deflate = TierPlan("analysis", True, compression="DEFLATE", predictor=3)
    assert creation_options(deflate, 256, "2") | {} == {
        "driver": "GTiff",
        "interleave": "pixel",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "DEFLATE",
        "num_threads": "2",
        "bigtiff": "IF_SAFER",
        "predictor": 3,
    }


def test_monthly_costs() -> None:
    sizes = sizes_by_tier(
        [
            {"tier": "visualization", "size": GIB},
            {"tier": "analysis", "size": 2 * GIB},
            {"tier": "archive", "size": GIB},
        ]
    )
    costs = monthly_costs(sizes, price_hot=0.02, price_cool=0.01, currency="EUR")
    assert costs["currency"] == "EUR"
    assert costs["tiers"]["visualization"] == {
        "bytes": GIB,
        "gb": 1.0,
        "access_tier": "Hot",
        "price_per_gb_month": 0.02,
        "monthly_cost": 0.02,
    }
    assert costs["tiers"]["analysis"]["monthly_cost"] == 0.04
    assert costs["tiers"]["archive"]["access_tier"] == "Cool" and costs["tiers"]["archive"]["monthly_cost"] == 0.01
    assert costs["total_monthly_cost"] == pytest.approx(0.07)
    assert monthly_costs({}, price_hot=1, price_cool=1)["total_monthly_cost"] == 0
