"""The STAC catalog in a real pgstac: collections, idempotent upserts, extents, and every search filter."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from core.errors import DatabaseBusy, InvalidInput, ServiceUnavailable
from core.settings import DatabaseSettings, RasterSettings
from infrastructure.db.database import Database
from services.stac import catalog
from services.stac.items import COG_MEDIA_TYPE, build_raster_item, file_asset
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
    assert status["installed"] is True and status["pgstac_version"].startswith("0.10") and "version" not in status
    assert set(catalog.DEFAULT_COLLECTIONS) == {"cogs", "vectors", "extracted"}
    assert {"id": "cogs", "items": 0} in status["collections"]
    assert status["missing_default_collections"] == []


def in_threads(*calls: Callable[[], Any]) -> list[Any]:
    """Run each call in a thread of its own; every result, and a failure in any thread fails the test."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def work(index: int, call: Callable[[], Any]) -> None:
        try:
            results[index] = call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


def test_concurrent_ensure_collection_creates_it_once(db: Database) -> None:
    results = in_threads(*[lambda: catalog.ensure_collection(db, "race")] * 4)
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
    with pytest.raises(InvalidInput, match="unknown operator 'no-such-op'"):
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
        items = [box_item(f"p{i}", i, 0, i + 1, 1, "2024-01-01T00:00:00Z") for i in range(6)]
        in_threads(*[lambda item=item: catalog.upsert_item(db, item) for item in items])  # type: ignore[misc]
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


# -- review fixes: antimeridian bbox, bad filters, long tokens, created kept, time zones, order ----------------


def crossing_item(item_id: str, south: float, north: float, when: str = "2024-01-01T00:00:00Z") -> dict[str, Any]:
    """An item from 179°E to 179°W: a MultiPolygon split at 180°, bbox west > east."""
    item = box_item(item_id, 179, south, 180, north, when)
    item["geometry"] = {
        "type": "MultiPolygon",
        "coordinates": [
            [[[179, south], [180, south], [180, north], [179, north], [179, south]]],
            [[[-180, south], [-179, south], [-179, north], [-180, north], [-180, south]]],
        ],
    }
    item["bbox"] = [179, south, -179, north]
    return item


def test_a_bbox_crossing_the_antimeridian_searches_across_it_not_the_rest_of_the_world(loaded: Database) -> None:
    catalog.upsert_item(loaded, crossing_item("dateline", 0, 1))  # same latitudes as i0..i5 (0..6°E)
    catalog.upsert_item(loaded, crossing_item("dateline-north", 20, 21))
    assert run(loaded, bbox=[178, -5, -178, 5]) == ["dateline"]
    assert run(loaded, bbox=[178, -5, 0, -178, 5, 100]) == ["dateline"]  # with heights
    assert run(loaded, bbox=[179.5, 0.2, 179.9, 0.8]) == ["dateline"]  # west part only, no crossing
    assert run(loaded, bbox=[170, -5, 2.5, 5]) == ["dateline", "i0", "i1", "i2"]  # 170°E over 180° to 2.5°E
    assert run(loaded, bbox=[-5, -5, 2.5, 5]) == ["i0", "i1", "i2"]
    body = parse_search({"bbox": [178, -5, -178, 5]}).pgstac_body(SETTINGS)
    assert "bbox" not in body and body["intersects"]["type"] == "MultiPolygon"


@pytest.mark.parametrize(
    "expression, problem",
    [
        ({"op": "and", "args": []}, "'and' operator takes at least 1 argument, not 0"),
        ({"op": "or", "args": [{"op": "=", "args": [1, 1]}, []]}, "args[1]: must be a condition"),
        ({"op": "+", "args": [1, 2]}, "'+' operator makes a value, not a condition"),
        ({"op": "casei", "args": [{"property": "title"}]}, "'casei' operator makes a value"),
        (
            {
                "op": "s_intersects",
                "args": [{"property": "geometry"}, {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}],
            },
            "args[1]: not a valid GeoJSON geometry",
        ),
        ({"op": "<", "args": [{"property": "geometry"}, 5]}, "args[0]: the 'geometry' property can only be used"),
        ({"op": "not", "args": []}, "'not' operator takes 1 argument, not 0"),
        ({"op": "=", "args": [{"property": "cloud"}]}, "'=' operator takes 2 arguments, not 1"),
        ({"op": "between", "args": [{"property": "cloud"}, 1]}, "'between' operator takes 3 arguments"),
        ({"op": "in", "args": [{"property": "cloud"}, 3]}, "non-empty list of values"),
        ({"op": "or", "args": [{"op": "=", "args": [1, 1]}, 5]}, "args[1]: must be a condition"),
        ({"op": "t_intersects", "args": [{"property": "datetime"}, "2024"]}, "temporal operand"),
        ({"op": "t_after", "args": [{"property": "datetime"}, {"timestamp": "2024-01-01T00:00:00"}]}, "time zone"),
        ({"op": "=", "args": [{"op": "nope", "args": [1]}, 1]}, "args[0]: unknown operator 'nope'"),
        ({"op": "=", "args": [{"op": "*", "args": ["a", 2]}, 1]}, "'*' operator takes numbers"),
        ({"op": "a_contains", "args": [{"property": "tags"}, [{"x": 1}]]}, "list of strings or numbers"),
        ({"op": "=", "args": [{"property": "cloud"}, 1], "extra": 1}, "unexpected keys"),
        ({"op": "s_intersects", "args": [{"property": "geometry"}, [0, 0, 1]]}, "bbox operand"),
    ],
)
def test_filters_pgstac_cannot_run_are_refused_naming_the_place(expression: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(problem)):
        parse_search({"filter": expression})


def test_filters_the_database_refuses_are_invalid_input_not_unavailable(loaded: Database) -> None:
    # these pass the checks but pgstac makes SQL PostgreSQL refuses (no such function or operator for a text column)
    for expression in (
        {"op": "a_contains", "args": [{"property": "id"}, ["a"]]},
        {"op": "=", "args": [{"op": "+", "args": [{"property": "id"}, 1]}, 6]},
    ):
        with pytest.raises(InvalidInput, match=r"filter refused: .*does not exist"):
            search(loaded, parse_search({"filter": expression}), SETTINGS)
    good = {"op": "=", "args": [{"op": "+", "args": [{"property": "cloud"}, 5]}, 25]}
    assert run(loaded, filter=good) == ["i2"]
    assert run(loaded, filter={"op": "isNull", "args": [{"property": "cloud"}]}) == ["other"]
    span = {"interval": ["2024-01-02T00:00:00Z", "2024-01-04T00:00:00Z"]}
    assert run(loaded, filter={"op": "t_intersects", "args": [{"property": "datetime"}, span]}) == ["i1", "i2", "i3"]


def test_a_database_without_pgstac_is_unavailable_not_a_bad_filter(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute("ALTER FUNCTION pgstac.search(jsonb) RENAME TO search_moved_away")
    with pytest.raises(ServiceUnavailable, match="pgstac is not installed"):
        search(db, parse_search({"filter": {"op": "=", "args": [{"property": "id"}, "x"]}}), SETTINGS)


def test_pages_with_the_longest_ids_follow_their_tokens(db: Database) -> None:
    collection, prefix = "c" * 255, "i" * 253
    for i in range(3):
        catalog.upsert_item(db, box_item(f"{prefix}-{i}", i, 0, i + 1, 1, f"2024-01-0{i + 1}T00:00:00Z", collection))
    request = parse_search({"collections": [collection], "limit": 1, "sortby": [{"field": "id"}]})
    seen, page = [], search(db, request, SETTINGS)
    while True:
        seen += [f["id"] for f in page.features]
        if not page.next_token:
            break
        assert len(page.next_token) > 1000
        request = parse_search({**request.model_dump(by_alias=True, exclude_none=True), "token": page.next_token})
        page = search(db, request, SETTINGS)
    assert seen == [f"{prefix}-{i}" for i in range(3)]


def test_replacing_an_item_keeps_its_created_and_takes_the_new_updated(db: Database) -> None:
    first = box_item(
        "c1", 0, 0, 1, 1, "2024-01-01T00:00:00Z", created="2024-02-01T00:00:00Z", updated="2024-02-01T00:00:00Z"
    )
    catalog.upsert_item(db, first)
    again = box_item(
        "c1", 0, 0, 1, 1, "2024-01-01T00:00:00Z", created="2024-03-01T00:00:00Z", updated="2024-03-01T00:00:00Z"
    )
    catalog.upsert_item(db, again)
    props = catalog.get_item(db, "things", "c1")["properties"]  # type: ignore[index]
    assert (props["created"], props["updated"]) == ("2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z")
    assert again["properties"]["created"] == "2024-03-01T00:00:00Z"  # the caller's dict is left alone

    bulk = [box_item(f"c{i}", i, 0, i + 1, 1, "2024-01-01T00:00:00Z", created="2024-04-01T00:00:00Z") for i in (1, 2)]
    catalog.upsert_items(db, bulk)
    created = {i: catalog.get_item(db, "things", i)["properties"]["created"] for i in ("c1", "c2")}  # type: ignore[index]
    assert created == {"c1": "2024-02-01T00:00:00Z", "c2": "2024-04-01T00:00:00Z"}


@pytest.mark.parametrize(
    "value", ["2024-01-01", "2024-01-01T00:00:00", "2024-01-01T00:00:00Z/2024-01-02", "../2024-01-02T00:00:00"]
)
def test_a_search_datetime_without_a_time_zone_is_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="no time zone"):
        parse_search({"datetime": value})


def test_search_datetimes_with_offsets_are_instants(loaded: Database) -> None:
    assert run(loaded, datetime="2024-01-02T02:00:00+02:00") == ["i1"]  # = 2024-01-02T00:00:00Z
    assert run(loaded, datetime="2024-01-01T20:00:00-04:00/2024-01-03T00:00:00.5Z") == ["i1", "i2"]
    with pytest.raises(InvalidInput, match="RFC 3339"):
        parse_search({"datetime": "20240101T000000Z"})


def test_sortby_orders_the_results(loaded: Database) -> None:
    def ordered(**body: Any) -> list[str]:
        return [f["id"] for f in search(loaded, parse_search({"collections": ["things"], **body}), SETTINGS).features]

    days = [f"i{i}" for i in range(6)]
    assert ordered(sortby=[{"field": "datetime", "direction": "desc"}]) == days[::-1]
    assert ordered(sortby=[{"field": "datetime", "direction": "asc"}]) == days
    assert ordered(sortby=[{"field": "cloud", "direction": "desc"}]) == days[::-1]
    query = SearchQuery.model_validate({"collections": "things", "sortby": "-datetime", "limit": "3"})
    assert [f["id"] for f in search(loaded, query.to_request(), SETTINGS).features] == ["i5", "i4", "i3"]


def make_collection(db: Database, collection_id: str, partition_trunc: str | None) -> None:
    """A collection with item_assets (so pgstac's base item has assets to dehydrate against), partitioned."""
    document = catalog.collection_document(collection_id)
    document["item_assets"] = {"data": {"type": COG_MEDIA_TYPE, "roles": ["data"], "title": "the data"}}
    with catalog.stac_transaction(db) as conn:
        conn.execute("SELECT create_collection(%s)", (Jsonb(document),))
        if partition_trunc:
            conn.execute("UPDATE collections SET partition_trunc = %s WHERE id = %s", (partition_trunc, collection_id))


def test_bulk_upsert_stores_what_single_upserts_store(db: Database, tmp_path: Path) -> None:
    source = rasters.multiband_int16(tmp_path / "ms.tif", 32)
    asset = file_asset(source, href="https://example.org/ms.tif", roles=["data"])
    raster = build_raster_item(source, item_id="r", collection_id="x", assets={"data": asset}, statistics=False)
    items = [
        {**raster, "id": f"r{i}", "properties": {**raster["properties"], "datetime": f"2024-0{i + 1}-15T00:00:00Z"}}
        for i in range(3)
    ]
    ranged = box_item(
        "span", 0, 0, 1, 1, "x", start_datetime="2023-12-20T00:00:00Z", end_datetime="2024-02-01T00:00:00Z"
    )
    ranged["properties"]["datetime"] = None
    items.append(ranged)
    stored: dict[str, dict[str, Any]] = {}
    for collection, trunc in (("single", None), ("bulk", "month")):
        make_collection(db, collection, trunc)
        mine = [{**item, "collection": collection} for item in items]
        if collection == "single":
            for item in mine:
                catalog.upsert_item(db, item)
        else:
            assert catalog.upsert_items(db, [*mine, mine[0]], batch_size=2) == len(mine) + 1  # r0 twice: once stored
        for item in mine:
            document = catalog.get_item(db, collection, item["id"])
            assert document is not None
            document.pop("collection")
            document["links"] = []
            stored[f"{collection}/{item['id']}"] = document
    for item in items:
        single, bulk = stored[f"single/{item['id']}"], stored[f"bulk/{item['id']}"]
        assert bulk == single
    assert catalog.item_counts(db)["bulk"] == 4
    extent = catalog.get_collection(db, "bulk")["extent"]  # type: ignore[index]
    assert extent["temporal"]["interval"] == [["2023-12-20T00:00:00Z", "2024-03-15T00:00:00Z"]]

    # an item moved to another month (another partition) is replaced, not duplicated
    moved = {
        **items[0],
        "collection": "bulk",
        "properties": {**items[0]["properties"], "datetime": "2024-06-01T00:00:00Z"},
    }
    catalog.upsert_items(db, [moved])
    assert catalog.item_counts(db)["bulk"] == 4
    assert run(db, collections=["bulk"], datetime="2024-06-01T00:00:00Z") == ["r0"]
    assert run(db, collections=["bulk"], datetime="2024-01-15T00:00:00Z") == ["span"]  # r0 left January
    assert catalog.get_item(db, "bulk", "r0")["properties"]["created"] == raster["properties"]["created"]  # type: ignore[index]


@pytest.mark.parametrize(
    "sqlstate, message, expected, text",
    [
        ("42501", "permission denied for table items", ServiceUnavailable, "the STAC database failed (42501"),
        ("XX000", "cache lookup failed for relation 1", ServiceUnavailable, "the STAC database failed (XX000"),
        ("42P01", "relation items_1 does not exist", ServiceUnavailable, "the STAC database failed (42P01"),
        ("XX000", "GEOSIntersects: TopologyException: side location conflict", InvalidInput, "filter refused: GEOS"),
        ("42804", "argument of WHERE must be type boolean", InvalidInput, "filter refused: argument of WHERE"),
        ("42601", "syntax error at or near x", InvalidInput, "filter refused: syntax error"),
        ("42883", "operator does not exist: text + integer", InvalidInput, "filter refused: operator does not"),
    ],
)
def test_only_errors_the_filter_causes_are_refused_filters(
    db: Database, sqlstate: str, message: str, expected: type[Exception], text: str
) -> None:
    # pgstac's search() fails with the given SQL state (an outage, a missing privilege, a GEOS error, ...)
    with db.transaction() as conn:
        conn.execute("ALTER FUNCTION pgstac.search(jsonb) RENAME TO search_moved_away")
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION pgstac.search(jsonb) RETURNS jsonb LANGUAGE plpgsql"
                " AS $$ BEGIN RAISE EXCEPTION USING ERRCODE = {}, MESSAGE = {}; END $$"
            ).format(sql.Literal(sqlstate), sql.Literal(message))
        )
    with pytest.raises(expected, match=re.escape(text)):
        search(db, parse_search({"filter": {"op": "=", "args": [{"property": "cloud"}, 1]}}), SETTINGS)


def test_bulk_upsert_locks_the_rows_it_replaces_in_pgstacs_order(db: Database) -> None:
    """Like pgstac's staging trigger: changed rows locked by (collection, id), whatever order they come in,
    so a load and another writer (pypgstac, a STAC API) replacing the same items cannot deadlock."""
    old = [box_item(i, 0, 0, 1, 1, "2024-01-01T00:00:00Z", cloud=1) for i in ("b", "a")]  # b stored first
    catalog.upsert_items(db, old)
    new = [box_item(i, 0, 0, 1, 1, "2024-01-01T00:00:00Z", cloud=2) for i in ("b", "a")]
    lock = "SELECT 1 FROM pgstac.items WHERE collection = 'things' AND id = %s FOR UPDATE"
    with db.connection() as holder:  # another writer holds 'b'
        holder.execute(lock, ("b",))
        worker = threading.Thread(target=catalog.upsert_items, args=(db, new))
        worker.start()
        try:
            deadline = time.monotonic() + 60
            while not db.fetch_one(
                "SELECT 1 AS waiting FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE %s",
                ("%DELETE FROM items%",),
            ):
                assert time.monotonic() < deadline, "the load never waited for the row 'b'"
                time.sleep(0.05)
            # the load waits for 'b' while holding 'a', which comes first in pgstac's order
            with pytest.raises(DatabaseBusy, match="lock not available"), db.transaction() as probe:
                probe.execute(lock + " NOWAIT", ("a",))
        finally:
            holder.rollback()
            worker.join()
    assert {i: catalog.get_item(db, "things", i)["properties"]["cloud"] for i in ("a", "b")} == {"a": 2, "b": 2}  # type: ignore[index]
