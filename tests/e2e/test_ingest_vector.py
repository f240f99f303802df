"""ingest_vector end to end: generated files in every format → HTTP submit → real workers → PostGIS tables."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import httpx
import pandas as pd
import pytest

from core.settings import LocalHostSettings
from infrastructure.context import AppContext
from services.stac.catalog import get_item
from tests.helpers import vectors
from tests.helpers.servers import serve
from tests.helpers.stac_schema import validate_item
from tests.plugins.jobs_api import wait_for_job
from triggers.localhost.functions import FunctionTable
from triggers.localhost.host import LocalHost

TIMEOUT = 60.0


def upload(ctx: AppContext, path: Path, name: str | None = None) -> str:
    blob = name or f"vectors/{path.name}"
    ctx.storage.upload_file("bronze", blob, path)
    return blob


def submit(api: str, params: dict[str, Any], expected: int = 202) -> dict[str, Any]:
    response = httpx.post(f"{api}/jobs/submit/ingest_vector", json=params, timeout=30)
    assert response.status_code == expected, response.text
    body: dict[str, Any] = response.json()
    return body


def ingest(api: str, params: dict[str, Any]) -> dict[str, Any]:
    status = wait_for_job(submit(api, params)["status_url"], TIMEOUT)
    assert status["status"] == "completed", status.get("error_details")
    result: dict[str, Any] = status["result_data"]
    return result


def fail(api: str, params: dict[str, Any]) -> str:
    status = wait_for_job(submit(api, params)["status_url"], TIMEOUT)
    assert status["status"] == "failed", status
    error = status["error_details"]
    message: str = error["details"]["error"]["message"] if "error" in error.get("details", {}) else error["message"]
    return message


def rows(ctx: AppContext, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with ctx.db.transaction() as conn:
        return list(conn.execute(query, params).fetchall())


def count(ctx: AppContext, table: str) -> int:
    """The table's rows, counted here (not as the job reports them)."""
    return int(rows(ctx, f"SELECT count(*) AS n FROM geo.{table}")[0]["n"])


def tables_in(ctx: AppContext, schema: str = "geo") -> list[str]:
    found = rows(
        ctx,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY 1",
        (schema,),
    )
    return [r["relname"] for r in found]


def intermediate_blobs(ctx: AppContext) -> list[str]:
    return [b.name for b in ctx.storage.iter_blobs("silver", "tmp/ingest_vector/")]


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "files"


def test_geojson_points_load_with_types_index_key_and_stac_item(
    jobs_api: str, jobs_context: AppContext, files: Path
) -> None:
    gdf = vectors.points_frame(250)
    blob = upload(jobs_context, vectors.write(gdf, files / "Town Points.geojson", driver="GeoJSON"))
    result = ingest(jobs_api, {"blob_name": blob, "chunk_size": 100})

    (table,) = result["tables"]
    assert table["table"] == "geo.town_points"
    assert table["rows"] == 250 == count(jobs_context, "town_points")
    assert table["geometry_type"] == "MultiPoint" and table["srid"] == 4326
    assert result["rows"] == {"source": 250, "loaded": 250, "repaired": 0, "skipped": 0}
    assert result["chunks"] == 3 and set(result["seconds"]) >= {"prepare", "finalize"}
    types = {c["name"]: c["type"] for c in table["columns"]}
    assert types["gid"] == "bigint" and types["id"] == "integer" and types["value"] == "double precision"
    assert types["name"] == "text" and types["flag"] == "boolean" and types["geom"] == "geometry(MultiPoint,4326)"
    west, south, east, north = table["extent_wgs84"]
    assert -10 <= west < east <= 10 and 40 <= south < north <= 50

    first = rows(jobs_context, "SELECT id, name, flag, ST_AsText(geom) AS wkt FROM geo.town_points WHERE id = 7")[0]
    expected = gdf.iloc[7]
    assert first["name"] == "point 7" and first["flag"] is False
    assert first["wkt"].startswith("MULTIPOINT(")
    indexes = rows(jobs_context, "SELECT indexdef FROM pg_indexes WHERE schemaname='geo' AND tablename='town_points'")
    assert any("gist" in r["indexdef"] for r in indexes) and any("(gid)" in r["indexdef"] for r in indexes)
    persistence = rows(jobs_context, "SELECT relpersistence FROM pg_class WHERE oid = 'geo.town_points'::regclass")
    assert persistence[0]["relpersistence"] == "p"  # logged (crash-safe) at the end
    xy = rows(jobs_context, "SELECT ST_X(ST_GeometryN(geom, 1)) AS x FROM geo.town_points WHERE id = 7")[0]["x"]
    assert xy == pytest.approx(expected.geometry.x)

    item = get_item(jobs_context.db, "vectors", "geo.town_points")
    assert item is not None and item["properties"]["geoetl:row_count"] == 250
    validate_item(item)  # the STAC JSON schemas (core + projection)
    assert tables_in(jobs_context) == ["town_points"]  # no staging or ledger table left
    assert intermediate_blobs(jobs_context) == []


def test_mixed_geometry_file_gives_one_table_per_family(jobs_api: str, jobs_context: AppContext, files: Path) -> None:
    blob = upload(jobs_context, vectors.mixed_geojson(files / "mixed.geojson"))
    result = ingest(jobs_api, {"blob_name": blob})
    by_name = {t["table"]: t for t in result["tables"]}
    assert set(by_name) == {"geo.mixed_points", "geo.mixed_lines", "geo.mixed_polygons"}
    assert by_name["geo.mixed_points"]["rows"] == 2 and by_name["geo.mixed_points"]["geometry_type"] == "MultiPoint"
    assert by_name["geo.mixed_lines"]["geometry_type"] == "MultiLineString"
    assert by_name["geo.mixed_polygons"]["rows"] == 3
    assert (count(jobs_context, "mixed_points"), count(jobs_context, "mixed_polygons")) == (2, 3)
    kinds = rows(jobs_context, "SELECT DISTINCT GeometryType(geom) AS t FROM geo.mixed_polygons")
    assert [r["t"] for r in kinds] == ["MULTIPOLYGON"]


def test_invalid_polygons_repaired_or_skipped(jobs_api: str, jobs_context: AppContext, files: Path) -> None:
    blob = upload(jobs_context, vectors.invalid_geojson(files / "invalid.geojson"))
    repaired = ingest(jobs_api, {"blob_name": blob, "table_name": "repaired"})
    assert repaired["rows"] == {"source": 3, "loaded": 2, "repaired": 1, "skipped": 1}  # the flat one has no area
    valid = rows(jobs_context, "SELECT bool_and(ST_IsValid(geom)) AS ok, count(*) AS n FROM geo.repaired")[0]
    assert valid["ok"] is True and valid["n"] == 2

    skipped = ingest(jobs_api, {"blob_name": blob, "table_name": "skipped", "invalid_geometry": "skip"})
    assert skipped["rows"] == {"source": 3, "loaded": 1, "repaired": 0, "skipped": 2}


def test_antimeridian_polygons_and_reprojection(jobs_api: str, jobs_context: AppContext, files: Path) -> None:
    blob = upload(jobs_context, vectors.antimeridian_geojson(files / "fiji.geojson"))
    result = ingest(jobs_api, {"blob_name": blob, "target_crs": "EPSG:3832"})
    (table,) = result["tables"]
    assert table["srid"] == 3832 and table["rows"] == 3 == count(jobs_context, "fiji")
    west, south, east, north = table["extent_wgs84"]
    assert (west, east) == (pytest.approx(178.5), pytest.approx(-179))  # crosses: west > east, as STAC writes it
    assert (south, north) == (pytest.approx(-20), pytest.approx(51))
    # a ring with edges across the antimeridian (179.5 → -179.5) is the 1°x1° square the short way round, cut at
    # ±180 into two parts, not a 358° strip around the globe
    # (in EPSG:3832, centred on 150°E, its two parts sit side by side: 1° of longitude wide)
    crossing = rows(
        jobs_context,
        "SELECT ST_NumGeometries(geom) AS parts, ST_XMax(geom) - ST_XMin(geom) AS width "
        "FROM geo.fiji WHERE name = 'crossing'",
    )[0]
    assert crossing["parts"] == 2 and crossing["width"] == pytest.approx(6378137 * math.pi / 180, rel=1e-6)
    item = get_item(jobs_context.db, "vectors", "geo.fiji")
    assert item is not None and item["geometry"]["type"] == "MultiPolygon" and item["bbox"][0] > item["bbox"][2]
    validate_item(item)
    area = rows(jobs_context, "SELECT ST_Area(geom) AS a FROM geo.fiji WHERE name = 'fiji'")[0]["a"]
    assert area > 1e10  # two 1°x1° parts in metres, not a strip around the globe


def test_multilayer_geopackage_layers_and_unknown_layer(jobs_api: str, jobs_context: AppContext, files: Path) -> None:
    blob = upload(jobs_context, vectors.multilayer_gpkg(files / "atlas.gpkg"))
    first = ingest(jobs_api, {"blob_name": blob})
    (roads,) = first["tables"]
    assert roads["table"] == "geo.atlas" and roads["geometry_type"] == "MultiLineString" and roads["rows"] == 2
    assert roads["extent_wgs84"][2] == pytest.approx(0.008983, abs=1e-5)  # reprojected from EPSG:3857

    towns = ingest(jobs_api, {"blob_name": blob, "layer_name": "towns", "table_name": "towns"})
    assert towns["tables"][0]["rows"] == 5 and towns["layer"] == "towns"

    message = fail(jobs_api, {"blob_name": blob, "layer_name": "rivers", "table_name": "rivers"})
    assert "layer 'rivers' not found" in message and "roads" in message and "towns" in message
    assert "rivers" not in tables_in(jobs_context)


def test_zipped_shapefile_in_a_subfolder_with_latin1_cpg(jobs_api: str, jobs_context: AppContext, files: Path) -> None:
    path = vectors.shapefile_zip(
        files / "cities.zip", vectors.latin1_frame(), folder="export/shapes/", stem="cities", encoding="latin1"
    )
    result = ingest(jobs_api, {"blob_name": upload(jobs_context, path)})
    assert result["tables"][0]["table"] == "geo.cities" and result["rows"]["loaded"] == 2
    names = {r["name"] for r in rows(jobs_context, "SELECT name FROM geo.cities")}
    assert names == {"Zürich", "Bruxelles"}


def test_zip_with_several_shapefiles_needs_layer_name(jobs_api: str, jobs_context: AppContext, files: Path) -> None:
    path = vectors.shapefile_zip(
        files / "two.zip", vectors.points_frame(3), stem="alpha", extra={"beta": vectors.polygons_frame(4)}
    )
    blob = upload(jobs_context, path)
    message = fail(jobs_api, {"blob_name": blob})
    assert "pass layer_name" in message and "alpha" in message and "beta" in message
    result = ingest(jobs_api, {"blob_name": blob, "layer_name": "beta"})
    assert result["tables"][0]["rows"] == 4 and result["tables"][0]["geometry_type"] == "MultiPolygon"


def test_csv_latlon_wkt_and_encoding(jobs_api: str, jobs_context: AppContext, files: Path) -> None:
    latlon = vectors.csv_file(files / "stops.csv", "Latitude;Longitude;name;count\n48.1;11.5;Ä;3\n52.5;13.4;b;\n")
    result = ingest(jobs_api, {"blob_name": upload(jobs_context, latlon)})
    assert result["tables"][0]["rows"] == 2
    got = rows(jobs_context, "SELECT name, count, ST_X(ST_GeometryN(geom, 1)) AS x FROM geo.stops ORDER BY gid")
    assert got[0] == {"name": "Ä", "count": 3, "x": pytest.approx(11.5)} and got[1]["count"] is None

    wkt = vectors.csv_file(files / "areas.csv", 'id,wkt\n1,"POLYGON((0 0,1 0,1 1,0 0))"\n2,"POINT(3 4)"\n')
    mixed = ingest(jobs_api, {"blob_name": upload(jobs_context, wkt)})
    assert {t["table"] for t in mixed["tables"]} == {"geo.areas_points", "geo.areas_polygons"}

    latin = vectors.csv_file(files / "latin.csv", "x,y,name\n1,2,Liège\n", encoding="latin-1")
    blob = upload(jobs_context, latin)
    message = fail(jobs_api, {"blob_name": blob})
    assert "cannot be decoded" in message and "encoding" in message
    ok = ingest(jobs_api, {"blob_name": blob, "encoding": "latin-1", "table_name": "latin_ok"})
    assert ok["rows"]["loaded"] == 1
    assert rows(jobs_context, "SELECT name FROM geo.latin_ok")[0]["name"] == "Liège"


def test_kml_kmz_geoparquet_flatgeobuf(jobs_api: str, jobs_context: AppContext, files: Path) -> None:
    kml = ingest(jobs_api, {"blob_name": upload(jobs_context, vectors.kml_file(files / "places.kml"))})
    assert {t["table"] for t in kml["tables"]} == {"geo.places_points", "geo.places_polygons"}
    kmz = ingest(jobs_api, {"blob_name": upload(jobs_context, vectors.kmz_file(files / "zipped.kmz"))})
    assert kmz["rows"]["loaded"] == 2

    parquet = vectors.write(vectors.polygons_frame(30, crs=3857), files / "blocks.parquet")
    pq_result = ingest(jobs_api, {"blob_name": upload(jobs_context, parquet)})
    assert pq_result["tables"][0]["rows"] == 30 and pq_result["source_crs"] == "EPSG:3857"

    fgb = vectors.write(vectors.points_frame(20), files / "fast.fgb", driver="FlatGeobuf")
    fgb_result = ingest(jobs_api, {"blob_name": upload(jobs_context, fgb), "target_crs": "EPSG:3857"})
    assert fgb_result["tables"][0]["srid"] == 3857 and fgb_result["rows"]["loaded"] == 20


def test_z_kept_and_curves_linearised(jobs_api: str, jobs_context: AppContext, files: Path) -> None:
    from shapely.geometry import Point

    gdf = vectors.frame([{"n": 1}, {"n": 2}], [Point(1, 2, 30), Point(3, 4, 40)])
    z = ingest(jobs_api, {"blob_name": upload(jobs_context, vectors.write(gdf, files / "peaks.gpkg", driver="GPKG"))})
    assert z["tables"][0]["geometry_type"] == "MultiPoint Z"
    assert rows(jobs_context, "SELECT ST_Z(ST_GeometryN(geom, 1)) AS z FROM geo.peaks ORDER BY gid")[1]["z"] == 40

    curves = ingest(jobs_api, {"blob_name": upload(jobs_context, vectors.curve_gpkg(files / "arcs.gpkg"))})
    assert curves["tables"][0]["geometry_type"] == "MultiLineString"
    points = rows(jobs_context, "SELECT ST_NPoints(geom) AS n FROM geo.arcs ORDER BY gid")
    assert points[0]["n"] > 10 and points[1]["n"] == 2


def test_replace_swaps_and_append_adds(jobs_api: str, jobs_context: AppContext, files: Path) -> None:
    first = upload(jobs_context, vectors.write(vectors.points_frame(10), files / "a.geojson", driver="GeoJSON"))
    second = upload(jobs_context, vectors.write(vectors.points_frame(4, seed=2), files / "b.geojson", driver="GeoJSON"))
    ingest(jobs_api, {"blob_name": first, "table_name": "swap"})

    refused = submit(jobs_api, {"blob_name": second, "table_name": "swap"}, expected=400)
    assert "already exists" in refused["error"]["message"]

    ingest(jobs_api, {"blob_name": second, "table_name": "swap", "if_exists": "replace"})
    assert rows(jobs_context, "SELECT count(*) AS n FROM geo.swap")[0]["n"] == 4
    ingest(jobs_api, {"blob_name": first, "table_name": "swap", "if_exists": "append"})
    counted = rows(jobs_context, "SELECT count(*) AS n, count(DISTINCT gid) AS ids FROM geo.swap")[0]
    assert counted == {"n": 14, "ids": 14}
    assert tables_in(jobs_context) == ["swap"]


def test_bad_input_at_submit(jobs_api: str, jobs_context: AppContext, files: Path) -> None:
    blob = upload(jobs_context, vectors.write(vectors.points_frame(3), files / "ok.geojson", driver="GeoJSON"))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"blob_name": blob, "table_name": "!!!"}, "not a usable table name"),
        ({"blob_name": blob, "schema": "no such schema"}, "not a valid schema name"),
        ({"blob_name": blob, "schema": "pgstac"}, "reserved"),
        ({"blob_name": blob, "schema": "missing"}, "schema 'missing' does not exist"),
        ({"blob_name": "vectors/nothing.geojson"}, "does not exist"),
        ({"blob_name": "vectors/data.shp"}, "bare .shp"),
        ({"blob_name": "vectors/data.xyz"}, "unsupported file extension"),
        ({"blob_name": blob, "target_crs": "EPSG:999999"}, "target_crs"),
        ({"blob_name": blob, "surprise": 1}, "surprise"),
    ]
    for params, expected in cases:
        body = submit(jobs_api, params, expected=400)
        assert expected in str(body["error"]), (params, body)


def test_bad_files_fail_with_specific_messages(jobs_api: str, jobs_context: AppContext, files: Path) -> None:
    def put(name: str, data: bytes) -> str:
        jobs_context.storage.write_bytes("bronze", f"bad/{name}", data)
        return f"bad/{name}"

    shp = vectors.shapefile_zip(files / "nodbf.zip", vectors.points_frame(2), drop=(".dbf",))
    noprj = vectors.shapefile_zip(files / "noprj.zip", vectors.points_frame(2), drop=(".prj",))
    cases = {
        put("corrupt.zip", b"PK\x03\x04 this is not a zip"): "not a readable zip",
        put("empty.zip", vectors.zip_bytes({"readme.txt": b"hello"})): "no .shp file",
        upload(jobs_context, shp): "has no .dbf",
        upload(jobs_context, noprj): "has no CRS",
        put("nocoords.csv", b"name,size\na,1\n"): "no recognisable coordinates",
        put("empty.geojson", b""): "empty",
        put("nothing.geojson", b'{"type": "FeatureCollection", "features": []}'): "no features",
        put("broken.gpkg", b"SQLite format 3\x00 garbage" * 10): "cannot",
    }
    submitted = {blob: submit(jobs_api, {"blob_name": blob}) for blob in cases}
    for blob, expected in cases.items():
        status = wait_for_job(submitted[blob]["status_url"], TIMEOUT)
        assert status["status"] == "failed", (blob, status)
        details = status["error_details"]["details"]
        assert details["attempts"] == 1, (blob, details)  # permanent: never retried
        assert expected in details["error"]["message"], (blob, details["error"])
    assert tables_in(jobs_context) == []
    assert intermediate_blobs(jobs_context) == []


def test_on_azurite(azurite_jobs_api: str, azurite_jobs_context: AppContext, files: Path) -> None:
    path = vectors.shapefile_zip(files / "az.zip", vectors.polygons_frame(40), folder="deep/er/", stem="parcels")
    blob = upload(azurite_jobs_context, path, "vectors/azurite-parcels.zip")
    result = ingest(azurite_jobs_api, {"blob_name": blob, "table_name": "az_parcels", "chunk_size": 15})
    assert result["tables"][0]["rows"] == 40 and result["chunks"] == 3
    assert [b.name for b in azurite_jobs_context.storage.iter_blobs("silver", "tmp/ingest_vector/")] == []


@pytest.fixture
def four_workers_api(app_functions: FunctionTable, jobs_context: AppContext) -> Iterator[str]:
    """function_app.py served with four queue workers per queue."""
    host = LocalHost(
        app_functions,
        LocalHostSettings(local_host_timers=False, local_host_workers=4),
        message_source=jobs_context.message_source,
    )
    with serve(host.asgi_app()) as url:
        yield f"{url}/api"


def test_many_chunks_of_two_tables_with_four_workers(
    four_workers_api: str, jobs_context: AppContext, files: Path
) -> None:
    points, polygons = vectors.points_frame(1500), vectors.polygons_frame(1500)
    both = pd.concat(
        [points[["name", "geometry"]], polygons.rename(columns={"label": "name"})[["name", "geometry"]]]
    ).sort_index(kind="stable")  # point, polygon, point, polygon…
    path = vectors.write(
        gpd.GeoDataFrame(both, geometry="geometry", crs=4326),
        files / "many.fgb",
        driver="FlatGeobuf",
        SPATIAL_INDEX="NO",
    )
    result = ingest(four_workers_api, {"blob_name": upload(jobs_context, path), "chunk_size": 100})
    assert result["chunks"] == 60  # 30 batches, each split into a point chunk and a polygon chunk
    counts = {t["table"]: t["rows"] for t in result["tables"]}
    assert counts == {"geo.many_points": 1500, "geo.many_polygons": 1500}
    for table in ("many_points", "many_polygons"):  # counted here, and no row loaded twice
        [stats] = rows(jobs_context, f"SELECT count(*) AS n, count(DISTINCT gid) AS gids FROM geo.{table}")
        assert stats == {"n": 1500, "gids": 1500}
    assert result["rows"]["loaded"] == 3000
    assert sorted(tables_in(jobs_context)) == ["many_points", "many_polygons"]
