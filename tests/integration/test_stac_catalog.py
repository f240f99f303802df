"""The STAC catalog in a real pgstac: collections, idempotent upserts, extents, and every search filter."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import InvalidInput
from core.settings import DatabaseSettings, RasterSettings
from infrastructure.db.database import Database
from services.stac import catalog
from services.stac.items import build_raster_item, file_asset
from services.stac.search import SearchQuery, iter_search, parse_search, search
from tests.helpers import rasters
from tests.helpers.stac_schema import validate_collection, validate_item

SETTINGS = RasterSettings()


@pytest.fixture
def db(fresh_db: DatabaseSettings) -> Iterator[Database]:
    database = Database(DatabaseSettings(**{**fresh_db.model_dump(), "pg_pool_max_size": 4}))
    try:
        yield database
    finally:
        database.close()


def box_item(
    item_id: str,
    west: float,
    south: float,
    east: float,
    north: float,
    when: str,
    collection: str = "things",
    **props: Any,
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": collection,
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]],
        },
        "bbox": [west, south, east, north],
        "properties": {"datetime": when, **props},
        "links": [{"rel": "collection", "href": f"../../{collection}"}],
        "assets": {},
    }


def ids(features: list[dict[str, Any]]) -> list[str]:
    return sorted(f["id"] for f in features)


def test_default_collections_are_created_once_and_valid(db: Database) -> None:
    assert catalog.ensure_default_collections(db) == dict.fromkeys(catalog.DEFAULT_COLLECTIONS, True)
    assert catalog.ensure_default_collections(db) == dict.fromkeys(catalog.DEFAULT_COLLECTIONS, False)
    listed = catalog.list_collections(db)
    assert {c["id"] for c in listed} >= {"cogs", "vectors"}
    for collection in listed:
        validate_collection(collection)
    status = catalog.pgstac_status(db)
    assert status["installed"] is True and status["version"].startswith("0.10")
    assert {"id": "cogs", "items": 0} in status["collections"]
    assert status["missing_default_collections"] == []


def test_concurrent_ensure_collection_creates_it_once(db: Database) -> None:
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(catalog.ensure_collection(db, "race"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]


def test_upsert_creates_the_collection_replaces_the_item_and_widens_the_extent(db: Database, tmp_path: Path) -> None:
    source = rasters.dem_float32(tmp_path / "dem.tif", 64)
    item = build_raster_item(
        source,
        item_id="dem-1",
        collection_id="cogs",
        assets={"analysis": file_asset(source, href="file:///dem.tif", roles=["data"])},
        properties={"datetime": "2024-03-01T00:00:00Z"},
    )
    validate_item(item)
    catalog.upsert_item(db, item)
    stored = catalog.get_item(db, "cogs", "dem-1")
    assert stored is not None and stored["properties"]["proj:code"] == "EPSG:32633"
    validate_item(stored)
    extent = catalog.get_collection(db, "cogs")["extent"]  # type: ignore[index]
    assert extent["spatial"]["bbox"] == [item["bbox"]]  # the first item replaces the world placeholder
    assert extent["temporal"]["interval"] == [["2024-03-01T00:00:00Z", "2024-03-01T00:00:00Z"]]

    second = {**item, "properties": {**item["properties"], "title": "replaced"}}
    catalog.upsert_item(db, second)  # same id: replaced, not added
    assert catalog.item_counts(db)["cogs"] == 1
    assert catalog.get_item(db, "cogs", "dem-1")["properties"]["title"] == "replaced"  # type: ignore[index]

    catalog.upsert_item(db, box_item("far", 100, -10, 101, -9, "2020-01-01T00:00:00Z", collection="cogs"))
    extent = catalog.get_collection(db, "cogs")["extent"]  # type: ignore[index]
    west, south, east, north = extent["spatial"]["bbox"][0]
    assert (west, south, north) == (item["bbox"][0], -10, item["bbox"][3]) and east == 101
    assert extent["temporal"]["interval"] == [["2020-01-01T00:00:00Z", "2024-03-01T00:00:00Z"]]
    validate_collection(catalog.get_collection(db, "cogs"))  # type: ignore[arg-type]

    assert catalog.delete_item(db, "cogs", "far") is True
    assert catalog.delete_item(db, "cogs", "far") is False
    refreshed = catalog.refresh_collection_extent(db, "cogs")
    assert refreshed["spatial"]["bbox"][0] == pytest.approx(item["bbox"])


def test_an_antimeridian_item_makes_the_extent_span_all_longitudes(db: Database) -> None:
    crossing = box_item("fiji", 178, -20, 180, -16, "2024-01-01T00:00:00Z")
    crossing["bbox"] = [178, -20, -178, -16]
    catalog.upsert_item(db, crossing)
    assert catalog.get_collection(db, "things")["extent"]["spatial"]["bbox"] == [[-180, -20, 180, -16]]  # type: ignore[index]


def test_missing_items_and_collections_are_none(db: Database) -> None:
    assert catalog.get_item(db, "nowhere", "x") is None
    catalog.ensure_collection(db, "empty")
    assert catalog.get_item(db, "empty", "x") is None
    assert catalog.get_collection(db, "nope") is None


@pytest.mark.parametrize(
    "item, problem",
    [
        ({"id": "a", "collection": "c", "type": "Feature", "properties": {}}, "datetime"),
        ({"id": "../x", "collection": "c", "type": "Feature", "properties": {}}, "item id"),
        ({"id": "a", "collection": "c c", "type": "Feature", "properties": {}}, "collection id"),
    ],
)
def test_bad_items_are_refused(db: Database, item: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        catalog.upsert_item(db, item)


@pytest.fixture
def loaded(db: Database) -> Database:
    for i in range(6):  # i0..i5: 1° boxes along the equator, one per day of January 2024
        catalog.upsert_item(db, box_item(f"i{i}", i, 0, i + 1, 1, f"2024-01-0{i + 1}T00:00:00Z", cloud=i * 10))
    catalog.upsert_item(db, box_item("other", 50, 50, 51, 51, "2023-06-01T00:00:00Z", collection="elsewhere"))
    return db


def run(db: Database, **body: Any) -> list[str]:
    return ids(search(db, parse_search(body), SETTINGS).features)


def test_search_filters(loaded: Database) -> None:
    db = loaded
    assert run(db, collections=["elsewhere"]) == ["other"]
    assert run(db, collections=["things"], limit=100) == [f"i{i}" for i in range(6)]
    assert run(db, ids=["i2", "other"]) == ["i2", "other"]
    assert run(db, bbox=[2.5, 0.2, 3.5, 0.8]) == ["i2", "i3"]
    assert run(db, intersects={"type": "Point", "coordinates": [4.5, 0.5]}) == ["i4"]
    assert run(db, datetime="2024-01-02T00:00:00Z/2024-01-03T12:00:00Z") == ["i1", "i2"]
    assert run(db, datetime="../2023-12-31T00:00:00Z") == ["other"]
    assert run(db, datetime="2024-01-06T00:00:00Z") == ["i5"]
    cql = {
        "op": "and",
        "args": [{"op": ">=", "args": [{"property": "cloud"}, 20]}, {"op": "<", "args": [{"property": "cloud"}, 40]}],
    }
    assert run(db, filter=cql, **{"filter-lang": "cql2-json"}) == ["i2", "i3"]
    assert run(db, filter={"op": "=", "args": [{"property": "id"}, "i1"]}) == ["i1"]


def test_search_pages_with_tokens(loaded: Database) -> None:
    request = parse_search(
        {"collections": ["things"], "limit": 4, "sortby": [{"field": "datetime", "direction": "asc"}]}
    )
    first = search(loaded, request, SETTINGS)
    assert [f["id"] for f in first.features] == ["i0", "i1", "i2", "i3"] and first.next_token
    second = search(loaded, request.model_copy(update={"token": first.next_token}), SETTINGS)
    assert [f["id"] for f in second.features] == ["i4", "i5"] and second.next_token is None and second.prev_token
    everything = [f["id"] for f in iter_search(loaded, parse_search({"limit": 2}), SETTINGS)]
    assert sorted(everything) == [*[f"i{i}" for i in range(6)], "other"]
    assert len(list(iter_search(loaded, parse_search({"limit": 2}), SETTINGS, max_items=3))) == 3


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"bbox": [1, 2, 3]}, "bbox"),
        ({"bbox": [0, 10, 1, 5]}, "south <= north"),
        ({"bbox": [0, 0, 1, 1], "intersects": {"type": "Point", "coordinates": [0, 0]}}, "not both"),
        ({"intersects": {"type": "Circle"}}, "GeoJSON geometry"),
        ({"datetime": "yesterday"}, "RFC 3339"),
        ({"datetime": "2024-02-01T00:00:00Z/2024-01-01T00:00:00Z"}, "start is after the end"),
        ({"limit": 0}, "limit"),
        ({"filter": {"args": []}}, "CQL2-JSON"),
        ({"filter-lang": "cql2-text"}, "filter-lang"),
        ({"colections": ["x"]}, "colections"),
    ],
)
def test_bad_searches_name_the_problem(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        parse_search(body)


def test_limits_tokens_and_filters_the_database_refuses(loaded: Database) -> None:
    with pytest.raises(InvalidInput, match="limit 5000 is over the maximum"):
        search(loaded, parse_search({"limit": 5000}), SETTINGS)
    with pytest.raises(InvalidInput, match="pgstac refused"):
        search(loaded, parse_search({"token": "next:nonsense"}), SETTINGS)
    with pytest.raises(InvalidInput, match="pgstac refused"):
        search(loaded, parse_search({"filter": {"op": "no-such-op", "args": [1]}}), SETTINGS)


def test_get_query_parameters_become_the_same_search(loaded: Database) -> None:
    query = SearchQuery.model_validate(
        {
            "collections": "things,elsewhere",
            "bbox": "2.5,0.2,3.5,0.8",
            "datetime": "2024-01-01T00:00:00Z/..",
            "filter": '{"op": ">", "args": [{"property": "cloud"}, 25]}',
            "filter-lang": "cql2-json",
            "sortby": "-datetime",
            "limit": "5",
        }
    )
    assert ids(search(loaded, query.to_request(), SETTINGS).features) == ["i3"]
    with pytest.raises(InvalidInput, match="bbox"):
        SearchQuery(bbox="a,b,c,d").to_request()
    with pytest.raises(InvalidInput, match="intersects must be JSON"):
        SearchQuery(intersects="{nope").to_request()
    with pytest.raises(InvalidInput, match="not supported"):
        SearchQuery.model_validate({"filter-lang": "cql2-text", "filter": "cloud > 3"}).to_request()


def test_bulk_upsert_is_idempotent_and_sets_the_extent(db: Database) -> None:
    items = [box_item(f"b{i}", i, -5, i + 1, 5, f"2024-02-{i % 28 + 1:02d}T00:00:00Z") for i in range(30)]
    assert catalog.upsert_items(db, items, batch_size=7) == 30
    assert catalog.upsert_items(db, items, batch_size=7) == 30
    assert catalog.item_counts(db) == {"things": 30}
    extent = catalog.get_collection(db, "things")["extent"]  # type: ignore[index]
    assert extent["spatial"]["bbox"] == [[0, -5, 30, 5]]
    assert extent["temporal"]["interval"] == [["2024-02-01T00:00:00Z", "2024-02-28T00:00:00Z"]]


def test_catalog_and_search_work_through_pgbouncer_transaction_mode(pgbouncer: DatabaseSettings) -> None:
    db = Database(DatabaseSettings(**{**pgbouncer.model_dump(), "pg_pool_max_size": 3}))
    try:
        threads = [
            threading.Thread(
                target=catalog.upsert_item, args=(db, box_item(f"p{i}", i, 0, i + 1, 1, "2024-01-01T00:00:00Z"))
            )
            for i in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert catalog.item_counts(db) == {"things": 6}
        everything = [f["id"] for f in iter_search(db, parse_search({"limit": 2, "collections": ["things"]}), SETTINGS)]
        assert sorted(everything) == [f"p{i}" for i in range(6)]
        assert catalog.get_collection(db, "things")["extent"]["spatial"]["bbox"] == [[0, 0, 6, 1]]  # type: ignore[index]
    finally:
        db.close()


def test_extent_keeps_fractions_of_a_second(db: Database) -> None:
    catalog.upsert_item(db, box_item("f", 0, 0, 1, 1, "2024-05-01T10:00:00.250Z"))
    interval = catalog.get_collection(db, "things")["extent"]["temporal"]["interval"]  # type: ignore[index]
    assert interval == [["2024-05-01T10:00:00.250000Z", "2024-05-01T10:00:00.250000Z"]]
