"""Container jobs and the blobs endpoint end to end: a 10,000+ blob local container, Azurite, empty and missing
containers."""

from __future__ import annotations

import io
import os
import uuid
import warnings
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from shapely.geometry import Point

from infrastructure.context import AppContext
from tests.plugins.jobs_api import wait_for_job

PLAIN_BLOBS = 10_050
BASE_TIME = 1_700_000_000  # 2023-11-14


def submit(api: str, job_type: str, params: dict[str, Any], expected: int = 202) -> dict[str, Any]:
    response = httpx.post(f"{api}/jobs/submit/{job_type}", json=params, timeout=30)
    assert response.status_code == expected, response.text
    body: dict[str, Any] = response.json()
    return body


def run(api: str, job_type: str, params: dict[str, Any], timeout: float = 90.0) -> dict[str, Any]:
    status = wait_for_job(submit(api, job_type, params)["status_url"], timeout)
    assert status["status"] == "completed", status
    return status


def geotiff_bytes(georeferenced: bool = True) -> bytes:
    data = np.arange(20 * 30, dtype="uint16").reshape(1, 20, 30)
    profile: dict[str, Any] = {"driver": "GTiff", "width": 30, "height": 20, "count": 1, "dtype": "uint16"}
    if georeferenced:
        profile.update(crs="EPSG:4326", transform=Affine(0.1, 0.0, 10.0, 0.0, -0.1, 50.0))
    with warnings.catch_warnings(), rasterio.MemoryFile() as memory:
        # a scanned image without georeferencing is what this file is meant to be
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with memory.open(**profile) as dst:
            dst.write(data)
        return bytes(memory.read())


def gpkg_bytes(tmp: Path) -> bytes:
    frame = gpd.GeoDataFrame({"n": [1, 2, 3]}, geometry=[Point(1, 2), Point(3, 4), Point(5, 6)], crs="EPSG:4326")
    path = tmp / "points.gpkg"
    frame.to_file(path, driver="GPKG")
    return path.read_bytes()


def geo_files(tmp: Path) -> dict[str, bytes]:
    return {
        "geo/dem.tif": geotiff_bytes(),
        "geo/scan.tif": geotiff_bytes(georeferenced=False),
        "geo/broken.tif": b"this is not a tiff",
        "geo/points.gpkg": gpkg_bytes(tmp),
    }


@pytest.fixture
def big_container(jobs_context: AppContext, tmp_path: Path) -> dict[str, Any]:
    """10,050 small plain files written straight under the local storage root, plus four geo files."""
    root = jobs_context.settings.storage.storage_local_root / "bronze"
    exts = ["txt", "csv", "json", "bin", "xml"]
    expected: dict[str, Any] = {"names": [], "sizes": {}, "times": {}}
    for folder in range(10):
        (root / "data" / f"f{folder}").mkdir(parents=True, exist_ok=True)
    for i in range(PLAIN_BLOBS):
        name = f"data/f{i % 10}/blob{i:05d}.{exts[i % 5]}"
        path = root / name
        size = i % 97
        path.write_bytes(b"x" * size)
        os.utime(path, (BASE_TIME + i, BASE_TIME + i))
        expected["names"].append(name)
        expected["sizes"][name] = size
    for name, data in geo_files(tmp_path).items():
        jobs_context.storage.write_bytes("bronze", name, data)
        expected["names"].append(name)
        expected["sizes"][name] = len(data)
    return expected


def test_list_and_summarize_a_container_of_10k_blobs(
    jobs_api: str, jobs_context: AppContext, big_container: dict[str, Any]
) -> None:
    """Both container jobs over the same 10,054 blobs (made once: writing them is the slow part)."""
    check_summary_over_10k_blobs(jobs_api, big_container)
    total = len(big_container["names"])
    status = run(jobs_api, "list_container_contents", {"container_name": "bronze", "include_metadata": True})
    result = status["result_data"]
    assert result["blobs"] == total and result["total_bytes"] == sum(big_container["sizes"].values())
    assert result["pages"] == 3 and result["truncated"] is False  # 5,000 blobs a listing page
    assert (result["rasters"], result["vectors"], result["metadata_errors"]) == (3, 1, 1)
    assert result["table"] == "geoetl.inventory"
    assert result["parquet"] == {"container": "gold", "blob": f"inventories/{status['job_id']}/inventory.parquet"}
    assert [s["tasks"] for s in status["stages"]] == [1, 3, 1]

    rows = jobs_context.db.quick(
        "SELECT name, size_bytes, extension, kind, format, crs, width, height, band_count, dtype, feature_count,"
        " geometry_type, bounds, metadata_error, details FROM geoetl.inventory WHERE job_id = %s ORDER BY name",
        (status["job_id"],),
    )
    assert [r["name"] for r in rows] == sorted(big_container["names"])
    assert all(r["size_bytes"] == big_container["sizes"][r["name"]] for r in rows)
    by_name = {r["name"]: r for r in rows}
    dem = by_name["geo/dem.tif"]
    assert (dem["kind"], dem["format"], dem["crs"], dem["width"], dem["height"], dem["band_count"], dem["dtype"]) == (
        "raster",
        "GTiff",
        "EPSG:4326",
        30,
        20,
        1,
        "uint16",
    )
    assert dem["bounds"] == pytest.approx([10.0, 48.0, 13.0, 50.0])
    scan = by_name["geo/scan.tif"]
    assert scan["crs"] is None and scan["bounds"] is None and scan["metadata_error"] is None
    assert "broken" not in str(scan) and by_name["geo/broken.tif"]["metadata_error"]
    points = by_name["geo/points.gpkg"]
    assert (points["kind"], points["format"], points["crs"], points["feature_count"], points["geometry_type"]) == (
        "vector",
        "GPKG",
        "EPSG:4326",
        3,
        "Point",
    )
    assert points["details"]["layers"] == ["points"]
    plain = by_name["data/f3/blob00003.bin"]
    assert (plain["extension"], plain["kind"], plain["format"]) == ("bin", "other", None)

    parquet = pq.read_table(io.BytesIO(jobs_context.storage.read_bytes("gold", result["parquet"]["blob"])))
    assert parquet.num_rows == total and sorted(parquet.column("name").to_pylist()) == sorted(big_container["names"])
    assert parquet.schema.names[:3] == ["container", "name", "size_bytes"]

    # a successful run leaves no work files (a retried write after that: tests/integration/test_container_work_files.py)
    work = jobs_context.settings.analytics.inventory_work_container
    assert list(jobs_context.storage.iter_blobs(work, f"inventory-work/{status['job_id']}/")) == []
    count = jobs_context.db.fetch_one(
        "SELECT count(*) AS n FROM geoetl.inventory WHERE job_id = %s", (status["job_id"],)
    )
    assert count == {"n": total}


def check_summary_over_10k_blobs(jobs_api: str, big_container: dict[str, Any]) -> None:
    status = run(jobs_api, "summarize_container", {"container_name": "bronze", "top_n": 3})
    result = status["result_data"]
    names, sizes = big_container["names"], big_container["sizes"]
    assert result["blobs"] == len(names) and result["total_bytes"] == sum(sizes.values())
    counted: Counter[str] = Counter()
    nbytes: Counter[str] = Counter()
    for name in names:
        ext = name.rsplit(".", 1)[-1]
        counted[ext] += 1
        nbytes[ext] += sizes[name]
    extensions = result["by_extension"]
    assert {e["key"]: (e["count"], e["bytes"]) for e in extensions["extensions"]} == {
        k: (counted[k], nbytes[k]) for k in counted
    }
    assert (extensions["distinct"], extensions["other"]) == (len(counted), {"count": 0, "bytes": 0})
    level1 = result["by_prefix_level"]["1"]
    assert level1["distinct"] == 2
    assert {p["key"]: p["count"] for p in level1["prefixes"]} == {"data/": PLAIN_BLOBS, "geo/": 4}
    level2 = result["by_prefix_level"]["2"]
    assert level2["distinct"] == 11 and {p["key"] for p in level2["prefixes"]} >= {"data/f0/", "geo/"}
    largest = sorted(names, key=lambda n: (sizes[n], n), reverse=True)[:3]
    assert [b["name"] for b in result["largest"]] == largest
    assert [b["name"] for b in result["oldest"]] == [
        "data/f0/blob00000.txt",
        "data/f1/blob00001.csv",
        "data/f2/blob00002.json",
    ]
    assert result["oldest"][0]["last_modified"] == datetime.fromtimestamp(BASE_TIME, UTC).isoformat()
    assert {b["name"] for b in result["newest"]} <= {n for n in names if n.startswith("geo/")}


def test_empty_and_missing_containers_and_file_limit(jobs_api: str, jobs_context: AppContext) -> None:
    jobs_context.storage.ensure_container("empty")
    listed = run(jobs_api, "list_container_contents", {"container_name": "empty"})["result_data"]
    assert (listed["blobs"], listed["total_bytes"], listed["pages"], listed["truncated"]) == (0, 0, 0, False)
    empty_parquet = pq.read_table(io.BytesIO(jobs_context.storage.read_bytes("gold", listed["parquet"]["blob"])))
    assert empty_parquet.num_rows == 0
    summary = run(jobs_api, "summarize_container", {"container_name": "empty"})["result_data"]
    assert (summary["blobs"], summary["total_bytes"], summary["by_extension"]["extensions"], summary["largest"]) == (
        0,
        0,
        [],
        [],
    )

    for job_type in ("list_container_contents", "summarize_container"):
        missing = submit(jobs_api, job_type, {"container_name": "nosuchcontainer"}, expected=400)
        assert "container 'nosuchcontainer' does not exist" in missing["error"]["message"]
        bad = submit(jobs_api, job_type, {"container_name": "Bad_Name"}, expected=400)
        assert "invalid container name 'Bad_Name'" in bad["error"]["message"]
        submit(jobs_api, job_type, {"container_name": "bronze", "prefix": "../x"}, expected=400)
        submit(jobs_api, job_type, {"container_name": "bronze", "file_limit": 0}, expected=400)

    for i in range(25):
        jobs_context.storage.write_bytes("silver", f"lim/{i:02d}.txt", b"abc")
    limited = run(jobs_api, "list_container_contents", {"container_name": "silver", "prefix": "lim/", "file_limit": 7})
    assert (limited["result_data"]["blobs"], limited["result_data"]["truncated"]) == (7, True)
    exact = run(jobs_api, "summarize_container", {"container_name": "silver", "prefix": "lim/", "file_limit": 25})
    assert (exact["result_data"]["blobs"], exact["result_data"]["truncated"]) == (25, False)


def test_blobs_endpoint_pages_with_a_cursor(jobs_api: str, jobs_context: AppContext) -> None:
    names = sorted(f"pages/{i % 3}/item{i:02d}.txt" for i in range(11))
    for name in names:
        jobs_context.storage.write_bytes("bronze", name, name.encode())
    jobs_context.storage.write_bytes("bronze", "other.txt", b"-")
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query: dict[str, Any] = {"prefix": "pages/", "limit": 4, **({"cursor": cursor} if cursor else {})}
        response = httpx.get(f"{jobs_api}/containers/bronze/blobs", params=query, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["container"] == "bronze" and body["prefix"] == "pages/"
        seen += [b["name"] for b in body["blobs"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == names and pages == 3
    first = httpx.get(f"{jobs_api}/containers/bronze/blobs", params={"prefix": "pages/0/", "limit": 1}).json()
    blob = first["blobs"][0]
    assert blob["size_bytes"] == len(blob["name"]) and blob["content_type"] == "text/plain"
    assert blob["last_modified"].endswith("+00:00") and blob["etag"]

    missing = httpx.get(f"{jobs_api}/containers/nosuchcontainer/blobs", timeout=10)
    assert missing.status_code == 404 and "nosuchcontainer" in missing.json()["error"]["message"]
    for query in ({"limit": 0}, {"limit": 5001}, {"cursor": "%%%"}, {"prefix": "../etc"}):
        bad = httpx.get(f"{jobs_api}/containers/bronze/blobs", params=query, timeout=10)
        assert bad.status_code == 400, (query, bad.text)


def test_list_container_contents_on_azurite(
    azurite_jobs_api: str, azurite_jobs_context: AppContext, tmp_path: Path
) -> None:
    prefix = f"inv-{uuid.uuid4().hex[:8]}/"
    storage = azurite_jobs_context.storage
    for i in range(40):
        storage.write_bytes("bronze", f"{prefix}plain/{i:02d}.txt", b"y" * i)
    for name, data in geo_files(tmp_path).items():
        storage.write_bytes("bronze", f"{prefix}{name}", data)
    params = {"container_name": "bronze", "prefix": prefix, "include_metadata": True}
    status = run(azurite_jobs_api, "list_container_contents", params)
    result = status["result_data"]
    assert result["blobs"] == 44 and (result["rasters"], result["vectors"], result["metadata_errors"]) == (3, 1, 1)
    rows = {
        r["name"]: r
        for r in azurite_jobs_context.db.quick(
            "SELECT name, format, crs, width, feature_count FROM geoetl.inventory WHERE job_id = %s",
            (status["job_id"],),
        )
    }
    assert rows[f"{prefix}geo/dem.tif"] == {
        "name": f"{prefix}geo/dem.tif",
        "format": "GTiff",
        "crs": "EPSG:4326",
        "width": 30,
        "feature_count": None,
    }
    assert rows[f"{prefix}geo/points.gpkg"]["feature_count"] == 3
    assert storage.exists("gold", result["parquet"]["blob"])

    summary = run(azurite_jobs_api, "summarize_container", {"container_name": "bronze", "prefix": prefix})
    assert summary["result_data"]["blobs"] == 44
    page = httpx.get(f"{azurite_jobs_api}/containers/bronze/blobs", params={"prefix": prefix, "limit": 30}).json()
    assert len(page["blobs"]) == 30 and page["next_cursor"]
    rest = httpx.get(
        f"{azurite_jobs_api}/containers/bronze/blobs", params={"prefix": prefix, "cursor": page["next_cursor"]}
    ).json()
    assert len(rest["blobs"]) == 14 and rest["next_cursor"] is None
    missing = httpx.get(f"{azurite_jobs_api}/containers/nosuchcontainer/blobs", timeout=10)
    assert missing.status_code == 404, missing.text
