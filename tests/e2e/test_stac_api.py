"""The STAC endpoints and jobs end to end: HTTP in, the real function_app on the local host, pgstac underneath."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from infrastructure.context import AppContext
from services.stac import catalog
from services.stac.items import default_item_id
from tests.helpers import rasters
from tests.helpers.stac_schema import validate_collection, validate_item
from tests.plugins.jobs_api import wait_for_job

#: a polygon of two points: not a valid GeoJSON geometry
THIN = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}
INLINE = 3  # STAC_SEARCH_INLINE_FEATURES in these tests: a search of more items is written to storage


@pytest.fixture
def small_inline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STAC_SEARCH_INLINE_FEATURES", str(INLINE))
    yield


@pytest.fixture
def api(small_inline: None, jobs_api: str) -> str:
    return jobs_api


@pytest.fixture
def context(api: str, jobs_context: AppContext) -> AppContext:
    return jobs_context


def call(method: str, url: str, expected: int, **kwargs: Any) -> Any:
    response = httpx.request(method, url, timeout=30, **kwargs)
    assert response.status_code == expected, response.text
    return response.json()


def box_item(item_id: str, west: float, day: int, cloud: int) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": "scenes",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[west, 0], [west + 1, 0], [west + 1, 1], [west, 1], [west, 0]]],
        },
        "bbox": [west, 0, west + 1, 1],
        "properties": {"datetime": f"2024-01-{day:02d}T00:00:00Z", "cloud": cloud},
        "links": [{"rel": "collection", "href": "../../scenes"}],
        "assets": {},
    }


def upload(context: AppContext, kind: str, tmp_path: Path, name: str) -> str:
    path = rasters.make(kind, tmp_path, 64)
    context.storage.upload_file("bronze", name, path)
    return name


def test_setup_and_init(api: str) -> None:
    status = call("GET", f"{api}/stac/setup", 200)
    assert status["installed"] is True and status["pgstac_version"].startswith("0.10") and "version" not in status
    assert set(status["missing_default_collections"]) >= {"cogs", "vectors"}
    first = call("POST", f"{api}/stac/init", 200)
    assert set(first["created"]) == {"cogs", "vectors", "extracted"} and first["existing"] == []
    again = call("POST", f"{api}/stac/init", 200)
    assert again["created"] == [] and set(again["existing"]) == set(first["created"])
    status = call("GET", f"{api}/stac/setup", 200)
    assert status["missing_default_collections"] == [] and {"id": "cogs", "items": 0} in status["collections"]
    listed = call("GET", f"{api}/stac/collections", 200)
    assert {c["id"] for c in listed["collections"]} == set(first["created"])
    cogs = call("GET", f"{api}/stac/collections/cogs", 200)
    validate_collection(cogs)
    assert any(link["rel"] == "self" and link["href"].endswith("/api/stac/collections/cogs") for link in cogs["links"])


def test_extract_builds_and_inserts_items(api: str, context: AppContext, tmp_path: Path) -> None:
    name = upload(context, "dem", tmp_path, "rasters/dem 2024.tif")
    built = call("POST", f"{api}/stac/extract", 200, json={"blob_name": name})
    item = built["item"]
    assert built["inserted"] is False and item["id"] == default_item_id(name) and item["collection"] == "extracted"
    assert item["id"].startswith("rasters-dem-2024-")  # not <id>.tif: 8 hex digits of the name's SHA-256
    validate_item(item)
    assert item["assets"]["data"]["href"] == context.storage.url("bronze", name)
    assert item["assets"]["data"]["href"].startswith("file://")
    assert item["assets"]["data"]["raster:bands"][0]["nodata"] == -9999
    call("GET", f"{api}/stac/collections/extracted/items/{item['id']}", 404)

    body = {"blob_name": name, "collection_id": "dems", "item_id": "dem-1", "insert": True}
    first = call("POST", f"{api}/stac/extract", 200, json=body)
    assert first["inserted"] is True
    second = call("POST", f"{api}/stac/extract", 200, json=body)  # an upsert: still one item
    assert second["inserted"] is True
    # the same blob gives the same item in time: its last-modified time (the raster has no date of its own)
    modified = context.storage.properties("bronze", name).last_modified
    assert first["item"]["properties"]["datetime"] == second["item"]["properties"]["datetime"]
    assert datetime.fromisoformat(second["item"]["properties"]["datetime"]) == modified
    stored = httpx.get(f"{api}/stac/collections/dems/items/dem-1", timeout=10)
    assert stored.status_code == 200 and stored.headers["content-type"].startswith("application/geo+json")
    validate_item(stored.json())
    props = stored.json()["properties"]
    assert props["created"] == first["item"]["properties"]["created"]  # kept from the first insert
    assert props["updated"] == second["item"]["properties"]["updated"] > props["created"]
    assert props["datetime"] == first["item"]["properties"]["datetime"]
    links = {link["rel"]: link["href"] for link in stored.json()["links"]}
    assert links["self"].endswith("/api/stac/collections/dems/items/dem-1")
    assert links["collection"].endswith("/api/stac/collections/dems")
    collection = call("GET", f"{api}/stac/collections/dems", 200)
    assert collection["extent"]["spatial"]["bbox"] == [item["bbox"]]
    when = first["item"]["properties"]["datetime"]
    assert collection["extent"]["temporal"]["interval"] == [[when, when]]  # not widened to the second call
    assert call("GET", f"{api}/stac/setup", 200)["collections"] == [{"id": "dems", "items": 1}]


def test_extract_ids_are_process_rasters_and_container_name_is_accepted(
    api: str, context: AppContext, tmp_path: Path
) -> None:
    context.storage.ensure_container("silver")  # not the default container (bronze)
    path = rasters.make("rgb", tmp_path, 32)
    for name in ("a/b.tif", "a-b.tif"):
        context.storage.upload_file("silver", name, path)
    made = {}
    for key, name in (("container_name", "a/b.tif"), ("container", "a-b.tif")):  # 'container' is an alias
        made[name] = call("POST", f"{api}/stac/extract", 200, json={key: "silver", "blob_name": name})["item"]
    assert made["a-b.tif"]["id"] == "a-b" and made["a/b.tif"]["id"] == default_item_id("a/b.tif") != "a-b"
    assert made["a/b.tif"]["assets"]["data"]["href"] == context.storage.url("silver", "a/b.tif")
    both = {"container_name": "silver", "container": "silver", "blob_name": "a-b.tif"}
    assert "container" in json.dumps(call("POST", f"{api}/stac/extract", 400, json=both)["error"])


def test_extract_errors_name_the_problem(api: str, context: AppContext, tmp_path: Path) -> None:
    upload(context, "no_crs", tmp_path, "nocrs.tif")
    context.storage.write_bytes("bronze", "notes.tif", b"not a raster at all" * 10)
    cases = [
        ({"blob_name": "missing.tif"}, 404, "blob 'missing.tif' not found in container 'bronze'"),
        ({"blob_name": "notes.tif"}, 400, "not a readable raster"),
        ({"blob_name": "nocrs.tif"}, 400, "has no CRS"),
        ({"blob_name": "../etc/passwd"}, 400, "invalid blob name"),
        ({"blob_name": "nocrs.tif", "collection_id": "bad id"}, 400, "invalid collection id"),
        ({"blob_name": "nocrs.tif", "colour": 1}, 400, "colour"),
        ({}, 400, "blob_name"),
    ]
    for body, status, text in cases:
        error = call("POST", f"{api}/stac/extract", status, json=body)["error"]
        assert text in json.dumps(error), (body, error)
    call("GET", f"{api}/stac/collections/nope", 404)
    call("GET", f"{api}/stac/collections/nope/items/x", 404)
    call("GET", f"{api}/stac/collections/bad%20id", 400)


@pytest.fixture
def scenes(context: AppContext) -> None:
    for i in range(7):  # s0..s6: 1° boxes along the equator, one a day, cloud 0, 10, ... 60
        catalog.upsert_item(context.db, box_item(f"s{i}", i, i + 1, i * 10))


def ids(page: dict[str, Any]) -> list[str]:
    return sorted(f["id"] for f in page["features"])


def test_search_post_and_get_with_paging(api: str, scenes: None) -> None:
    url = f"{api}/stac/search"
    assert ids(call("POST", url, 200, json={"bbox": [2.5, 0.2, 3.5, 0.8]})) == ["s2", "s3"]
    assert ids(call("POST", url, 200, json={"ids": ["s1", "s5"]})) == ["s1", "s5"]
    assert ids(call("POST", url, 200, json={"datetime": "2024-01-06T00:00:00Z/.."})) == ["s5", "s6"]
    point = {"type": "Point", "coordinates": [4.5, 0.5]}
    assert ids(call("POST", url, 200, json={"intersects": point, "collections": ["scenes"]})) == ["s4"]
    cql = {"op": "<=", "args": [{"property": "cloud"}, 10]}
    assert ids(call("POST", url, 200, json={"filter": cql, "filter-lang": "cql2-json"})) == ["s0", "s1"]
    assert ids(call("GET", url, 200, params={"filter": json.dumps(cql), "bbox": "0.5,0,10,1"})) == ["s0", "s1"]

    seen: list[str] = []
    page = call("POST", url, 200, json={"collections": ["scenes"], "limit": 3, "sortby": [{"field": "datetime"}]})
    first = page["features"][0]
    self_link = next(link["href"] for link in first["links"] if link["rel"] == "self")
    assert self_link == f"{api}/stac/collections/scenes/items/s0"
    assert call("GET", self_link, 200)["id"] == "s0"
    while True:
        assert page["type"] == "FeatureCollection" and page["numberReturned"] == len(page["features"])
        seen += [f["id"] for f in page["features"]]
        following = [link for link in page["links"] if link["rel"] == "next"]
        if not following:
            break
        assert following[0]["method"] == "POST"
        page = call("POST", following[0]["href"], 200, json=following[0]["body"])
    assert seen == [f"s{i}" for i in range(7)]

    seen = []
    page = call("GET", url, 200, params={"collections": "scenes", "limit": 4, "sortby": "-datetime", "code": "k"})
    assert all("code=" not in link["href"] for link in page["links"])  # the key is never echoed in links
    while True:
        seen += [f["id"] for f in page["features"]]
        following = [link for link in page["links"] if link["rel"] == "next"]
        if not following:
            break
        page = call("GET", following[0]["href"], 200)
    assert seen == [f"s{i}" for i in reversed(range(7))]


def test_bad_searches_are_400(api: str, scenes: None) -> None:
    url = f"{api}/stac/search"
    for body, text in [
        ({"bbox": [0, 0, 1]}, "bbox"),
        ({"limit": 100_000}, "limit"),
        ({"datetime": "soon"}, "RFC 3339"),
        ({"filter": {"op": "nope", "args": []}}, "unknown operator 'nope'"),
        ({"filter": {"op": "and", "args": []}}, "takes at least 1 argument, not 0"),
        ({"filter": {"op": "+", "args": [1, 2]}}, "makes a value, not a condition"),
        ({"filter": {"op": "casei", "args": [{"property": "cloud"}]}}, "makes a value, not a condition"),
        ({"filter": {"op": "<", "args": [{"property": "geometry"}, 5]}}, "spatial operators"),
        ({"filter": {"op": "s_intersects", "args": [{"property": "geometry"}, THIN]}}, "not a valid GeoJSON"),
        ({"filter": {"op": "a_contains", "args": [{"property": "id"}, ["a"]]}}, "filter refused"),
        ({"datetime": "2024-01-01"}, "no time zone"),
        ({"datetime": "2024-01-01T00:00:00/.."}, "no time zone"),
        ({"token": "next:garbage"}, "pgstac refused"),
        ({"unknown": 1}, "unknown"),
    ]:
        error = call("POST", url, 400, json=body)["error"]
        assert text in json.dumps(error), (body, error)
    assert "cql2-text" in json.dumps(call("GET", url, 400, params={"filter-lang": "cql2-text", "filter": "x"}))
    assert "no time zone" in json.dumps(call("GET", url, 400, params={"datetime": "2024-01-01T00:00:00"}))
    assert "bbox" in json.dumps(call("GET", url, 400, params={"bbox": "a,b"}))
    assert "nonsense" in json.dumps(call("GET", url, 400, params={"nonsense": "1"}))
    call("POST", url, 400, content=b"[1, 2]")


def test_filters_pgstac_runs_are_accepted(api: str, scenes: None) -> None:
    """A GeometryCollection, a self-intersecting ("bowtie") polygon, and/or with one argument all run."""
    square = [[4.2, 0.2], [4.8, 0.2], [4.8, 0.8], [4.2, 0.8], [4.2, 0.2]]
    collection = {
        "type": "GeometryCollection",
        "geometries": [{"type": "Point", "coordinates": [0.5, 0.5]}, {"type": "Polygon", "coordinates": [square]}],
    }
    bowtie = {"type": "Polygon", "coordinates": [[[2.1, 0.1], [2.9, 0.9], [2.9, 0.1], [2.1, 0.9], [2.1, 0.1]]]}
    cloud = {"property": "cloud"}
    for expression, expected in [
        ({"op": "s_intersects", "args": [{"property": "geometry"}, collection]}, ["s0", "s4"]),
        ({"op": "s_intersects", "args": [{"property": "geometry"}, bowtie]}, ["s2"]),
        ({"op": "and", "args": [{"op": "=", "args": [cloud, 30]}]}, ["s3"]),
        ({"op": "or", "args": [{"op": "<", "args": [cloud, 20]}]}, ["s0", "s1"]),
    ]:
        page = call("POST", f"{api}/stac/search", 200, json={"collections": ["scenes"], "filter": expression})
        assert sorted(f["id"] for f in page["features"]) == expected, expression


def test_paging_over_http_with_the_longest_ids(api: str, context: AppContext) -> None:
    collection, prefix = "c" * 255, "i" * 253
    for i in range(3):
        item = box_item(f"{prefix}-{i}", i, i + 1, 0)
        item["collection"] = collection
        catalog.upsert_item(context.db, item)
    url = f"{api}/stac/search"
    for method in ("POST", "GET"):
        seen: list[str] = []
        if method == "POST":
            page = call("POST", url, 200, json={"collections": [collection], "limit": 1, "sortby": [{"field": "id"}]})
        else:
            page = call("GET", url, 200, params={"collections": collection, "limit": 1, "sortby": "id"})
        while True:
            seen += [f["id"] for f in page["features"]]
            following = [link for link in page["links"] if link["rel"] == "next"]
            if not following:
                break
            if method == "POST":
                assert len(following[0]["body"]["token"]) > 1000
                page = call("POST", following[0]["href"], 200, json=following[0]["body"])
            else:
                page = call("GET", following[0]["href"], 200)
        assert seen == [f"{prefix}-{i}" for i in range(3)], method


def submit(api: str, job_type: str, params: dict[str, Any], expected: int = 202) -> dict[str, Any]:
    return call("POST", f"{api}/jobs/submit/{job_type}", expected, json=params)  # type: ignore[no-any-return]


def test_stac_setup_job(api: str) -> None:
    job = wait_for_job(
        submit(api, "stac_setup", {"collections": [{"id": "extra-one", "title": "Extra"}]})["status_url"]
    )
    assert job["status"] == "completed", job
    result = job["result_data"]
    assert set(result["created"]) >= {"cogs", "vectors", "extra-one"} and result["pgstac_version"].startswith("0.10")
    assert call("GET", f"{api}/stac/collections/extra-one", 200)["title"] == "Extra"
    submit(api, "stac_setup", {"collections": [{"id": "a b"}]}, 400)
    submit(api, "stac_setup", {"collections": [{"id": "x"}, {"id": "x"}]}, 400)


def test_stac_search_job_inline_and_in_storage(api: str, context: AppContext, scenes: None) -> None:
    small = wait_for_job(submit(api, "stac_search", {"ids": ["s1", "s2"]})["status_url"])
    assert small["status"] == "completed", small
    assert small["result_data"]["count"] == 2 and ids(small["result_data"]) == ["s1", "s2"]
    assert "blob" not in small["result_data"]

    params = {"collections": ["scenes"], "limit": 2, "output_container": "gold"}
    large = wait_for_job(submit(api, "stac_search", params)["status_url"])
    assert large["status"] == "completed", large
    result = large["result_data"]
    assert result["count"] == 7 and result["truncated"] is False and "features" not in result
    assert result["blob"]["name"] == f"stac-search/{large['job_id']}/results.geojson"
    assert result["blob"]["container"] == "gold"
    stored = json.loads(context.storage.read_bytes("gold", result["blob"]["name"]))
    assert stored["type"] == "FeatureCollection" and ids(stored) == [f"s{i}" for i in range(7)]

    capped = wait_for_job(submit(api, "stac_search", {"collections": ["scenes"], "max_items": 5})["status_url"])
    assert capped["result_data"]["count"] == 5 and capped["result_data"]["truncated"] is True

    submit(api, "stac_search", {"token": "next:1:2"}, 400)
    submit(api, "stac_search", {"limit": 100_000}, 400)
    submit(api, "stac_search", {"output_container": "bronze"}, 400)
    for bad in (
        {"op": "nope", "args": [1]},
        {"op": "and", "args": []},
        {"op": "<", "args": [{"property": "geometry"}, 5]},
    ):
        assert "filter" in json.dumps(submit(api, "stac_search", {"filter": bad}, 400))
    # a filter only the database refuses: the job fails at once (a permanent error, not retried)
    refused = {"op": "=", "args": [{"op": "+", "args": [{"property": "id"}, 1]}, 6]}
    failed = wait_for_job(submit(api, "stac_search", {"filter": refused})["status_url"])
    assert failed["status"] == "failed" and "filter refused" in json.dumps(failed["error_details"])
    assert failed["error_details"]["details"]["attempts"] == 1


def test_extract_and_search_job_on_azurite(
    small_inline: None, azurite_jobs_api: str, azurite_jobs_context: AppContext, tmp_path: Path
) -> None:
    api, context = azurite_jobs_api, azurite_jobs_context
    name = upload(context, "antimeridian", tmp_path, f"stac-e2e/{tmp_path.name}/fiji.tif")
    body = {"blob_name": name, "collection_id": "cogs", "item_id": "fiji", "insert": True}
    item = call("POST", f"{api}/stac/extract", 200, json=body)["item"]
    validate_item(item)
    assert item["geometry"]["type"] == "MultiPolygon" and item["bbox"][0] > item["bbox"][2]
    href = item["assets"]["data"]["href"]
    assert href.startswith("http") and href.endswith(f"/bronze/{name}") and href == context.storage.url("bronze", name)
    near_zero = box_item("greenwich", 0, 1, 0)  # same latitudes as fiji, near 0°: outside a bbox over 180°
    near_zero.update(collection="cogs", bbox=[0, -19, 1, -17])
    near_zero["geometry"]["coordinates"] = [[[0, -19], [1, -19], [1, -17], [0, -17], [0, -19]]]
    catalog.upsert_item(context.db, near_zero)
    crossing = call("POST", f"{api}/stac/search", 200, json={"bbox": [179.5, -19, -179.5, -17]})
    assert ids(crossing) == ["fiji"]  # a search bbox over the antimeridian finds it, not the rest of the world
    assert ids(call("GET", f"{api}/stac/search", 200, params={"bbox": "179.5,-19,-179.5,-17"})) == ["fiji"]
    assert ids(call("POST", f"{api}/stac/search", 200, json={"bbox": [-1, -19, 2, -17]})) == ["greenwich"]
    assert call("POST", f"{api}/stac/extract", 404, json={"blob_name": f"stac-e2e/{tmp_path.name}/none.tif"})

    for i in range(INLINE + 1):
        catalog.upsert_item(context.db, box_item(f"az{i}", i, i + 1, 0))
    job = wait_for_job(submit(api, "stac_search", {"collections": ["scenes"]})["status_url"])
    assert job["status"] == "completed", job
    blob = job["result_data"]["blob"]
    assert blob["container"] == "silver" and blob["url"].startswith("http")
    stored = json.loads(context.storage.read_bytes("silver", blob["name"]))
    assert ids(stored) == [f"az{i}" for i in range(INLINE + 1)]
