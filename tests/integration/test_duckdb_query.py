"""duckdb_query's service on real files: local storage and Azurite, every output format, the run-time sandbox."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from core.errors import Forbidden, InvalidInput
from core.settings import AnalyticsSettings
from infrastructure.storage import BlobStore
from infrastructure.storage.azure import AzureBlobStore
from infrastructure.storage.local import LocalBlobStore
from services.duckdb.query import QueryRequest, run_query
from services.duckdb.sandbox import Limits, connect
from services.duckdb.urls import map_urls, parse_storage_url

FEATURES = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"name": "a", "kind": 1},
            "geometry": {"type": "Point", "coordinates": [1, 2]},
        },
        {
            "type": "Feature",
            "properties": {"name": "b", "kind": 2},
            "geometry": {"type": "Point", "coordinates": [3, 4]},
        },
        {
            "type": "Feature",
            "properties": {"name": "c", "kind": 2},
            "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]]]},
        },
    ],
}


def parquet_bytes(sql: str) -> bytes:
    """A Parquet file made by a plain DuckDB from ``sql`` (test data, generated)."""
    con = duckdb.connect()
    table = con.sql(sql).to_arrow_table()
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def fill(storage: BlobStore) -> None:
    for container in ("bronze", "silver"):
        storage.ensure_container(container)
    for part in range(3):
        sql = f"SELECT {part} * 100 + range AS id, (range % 4)::INT AS region, range * 1.5 AS amount FROM range(100)"
        storage.write_bytes("bronze", f"sales/part-{part}.parquet", parquet_bytes(sql))
    storage.write_bytes("bronze", "sales/notes.txt", b"not parquet")
    storage.write_bytes("bronze", "regions.csv", b"region,label\n0,north\n1,east\n2,south\n3,west\n")
    storage.write_bytes("bronze", "events.json", b'[{"id": 1, "tag": "x"}, {"id": 2, "tag": "y"}]')
    storage.write_bytes("bronze", "places.geojson", json.dumps(FEATURES).encode())


def run(
    storage: BlobStore, sql: str, settings: AnalyticsSettings | None = None, container: str = "silver", **kw: Any
) -> dict[str, Any]:
    return run_query(
        QueryRequest(sql, **kw), storage, settings or AnalyticsSettings(), job_id="job1", output_container=container
    )


@pytest.fixture
def local(tmp_path: Path) -> LocalBlobStore:
    store = LocalBlobStore(tmp_path / "storage")
    fill(store)
    return store


def test_parquet_glob_joined_with_csv_inline(local: LocalBlobStore) -> None:
    result = run(
        local,
        "SELECT r.label, count(*) AS n, sum(s.amount) AS total "
        "FROM 'storage://bronze/sales/*.parquet' s JOIN read_csv('storage://bronze/regions.csv') r USING (region) "
        "GROUP BY r.label ORDER BY r.label",
    )
    assert result["output_format"] == "json" and result["row_count"] == 4 and result["truncated"] is False
    assert [r["label"] for r in result["rows"]] == ["east", "north", "south", "west"]
    assert sum(r["n"] for r in result["rows"]) == 300
    assert sum(r["total"] for r in result["rows"]) == pytest.approx(3 * 1.5 * sum(range(100)))
    assert result["columns"][1] == {"name": "n", "type": "BIGINT"}
    assert result["inputs"] == ["storage://bronze/sales/*.parquet", "storage://bronze/regions.csv"]


def test_pivot_with_its_values_listed_runs(local: LocalBlobStore) -> None:
    result = run(
        local,
        "WITH s AS (SELECT region FROM 'storage://bronze/sales/*.parquet') "
        "PIVOT s ON region IN (0, 1) USING count(*) AS n",
    )
    assert result["row_count"] == 1 and result["rows"] == [{"0_n": 75, "1_n": 75}]


def test_json_files_and_types_are_returned_as_json(local: LocalBlobStore) -> None:
    result = run(
        local,
        "SELECT id, tag, DATE '2024-01-02' AS day, 1.25::DECIMAL(5, 2) AS price, 'nan'::DOUBLE AS nothing, "
        "[1, 2] AS list FROM read_json('storage://bronze/events.json') ORDER BY id",
    )
    assert result["rows"][0] == {
        "id": 1,
        "tag": "x",
        "day": "2024-01-02",
        "price": 1.25,
        "nothing": None,
        "list": [1, 2],
    }


def test_ogr_formats_through_st_read_and_geojson_inline(local: LocalBlobStore) -> None:
    result = run(local, "SELECT name, geom FROM ST_Read('storage://bronze/places.geojson') ORDER BY name")
    assert result["rows"][0] == {"name": "a", "geom": {"type": "Point", "coordinates": [1.0, 2.0]}}
    assert result["rows"][2]["geom"]["type"] == "Polygon"


def test_geoparquet_output_has_geo_metadata(local: LocalBlobStore) -> None:
    local.ensure_container("gold")
    result = run(
        local,
        "SELECT name, kind, geom FROM ST_Read('storage://bronze/places.geojson')",
        output_format="geoparquet",
        container="gold",
        output_name="places.parquet",
    )
    assert result["row_count"] == 3
    assert result["output"]["url"] == "storage://gold/duckdb/job1/places.parquet"
    data = local.read_bytes("gold", "duckdb/job1/places.parquet")
    assert result["output"]["size"] == len(data)
    table = pq.read_table(io.BytesIO(data))
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["primary_column"] == "geom" and geo["columns"]["geom"]["encoding"] == "WKB"
    assert sorted(geo["columns"]["geom"]["geometry_types"]) == ["Point", "Polygon"]
    assert geo["columns"]["geom"]["bbox"] == [0.0, 0.0, 3.0, 4.0]
    assert table.num_rows == 3


def test_parquet_output_goes_to_the_default_path_with_wkb(local: LocalBlobStore) -> None:
    result = run(local, "SELECT name, geom FROM ST_Read('storage://bronze/places.geojson')", output_format="parquet")
    assert result["output"]["blob"] == "duckdb/job1/result.parquet" and result["output"]["container"] == "silver"
    table = pq.read_table(io.BytesIO(local.read_bytes("silver", "duckdb/job1/result.parquet")))
    assert b"geo" not in (table.schema.metadata or {})
    assert table.column("geom").to_pylist()[0][:1] in (b"\x01", b"\x00")  # WKB byte order mark
    assert {"name": "geom", "type": "BLOB"} in result["columns"]


def test_csv_output_with_wkt_and_row_limit(local: LocalBlobStore) -> None:
    result = run(
        local,
        "SELECT name, geom FROM ST_Read('storage://bronze/places.geojson') ORDER BY name",
        output_format="csv",
        row_limit=2,
    )
    assert result["row_count"] == 2 and result["truncated"] is True
    table = pacsv.read_csv(io.BytesIO(local.read_bytes("silver", "duckdb/job1/result.csv")))
    assert table.column("geom").to_pylist() == ["POINT (1 2)", "POINT (3 4)"]
    # exactly row_limit rows: written whole, not truncated
    exact = run(local, "SELECT name FROM ST_Read('storage://bronze/places.geojson')", output_format="csv", row_limit=3)
    assert exact["row_count"] == 3 and exact["truncated"] is False
    whole = run(local, "SELECT * FROM range(5)", AnalyticsSettings(duckdb_row_limit_cap=5), output_format="parquet")
    assert whole["row_count"] == 5 and whole["row_limit"] == 5 and whole["truncated"] is False
    more = run(local, "SELECT * FROM range(6)", AnalyticsSettings(duckdb_row_limit_cap=5), output_format="parquet")
    assert more["row_count"] == 5 and more["truncated"] is True


def test_results_show_storage_urls_not_local_paths(local: LocalBlobStore) -> None:
    """glob() and the readers' filename columns give the mapped locations: the results write them back as URLs."""
    root = str(local.root)
    files = run(local, "SELECT file FROM glob('storage://bronze/sales/*.parquet') ORDER BY file")
    assert [r["file"] for r in files["rows"]] == [f"storage://bronze/sales/part-{i}.parquet" for i in range(3)]
    nested = run(local, "SELECT list(file ORDER BY file) AS files FROM glob('storage://bronze/sales/*.parquet')")
    assert nested["rows"][0]["files"][0] == "storage://bronze/sales/part-0.parquet"
    sql = "SELECT DISTINCT filename FROM read_parquet('storage://bronze/sales/*.parquet', filename = true)"
    csv = run(local, sql, output_format="csv")
    text = local.read_bytes("silver", "duckdb/job1/result.csv").decode()
    assert csv["row_count"] == 3 and "storage://bronze/sales/part-1.parquet" in text and root not in text
    run(local, f"{sql.replace('DISTINCT filename', 'list(DISTINCT filename) AS names')}", output_format="parquet")
    table = pq.read_table(io.BytesIO(local.read_bytes("silver", "duckdb/job1/result.parquet")))
    assert sorted(table.column("names").to_pylist()[0])[0] == "storage://bronze/sales/part-0.parquet"
    text_rows = run(local, "SELECT filename, size FROM read_text('storage://bronze/regions.csv')")["rows"]
    assert text_rows[0]["filename"] == "storage://bronze/regions.csv"


def test_inline_results_are_bounded(local: LocalBlobStore) -> None:
    settings = AnalyticsSettings(duckdb_max_rows_inline=50, duckdb_max_inline_bytes=2048)
    with pytest.raises(InvalidInput, match=r"more than 50 rows.*use output_format parquet"):
        run(local, "SELECT * FROM 'storage://bronze/sales/*.parquet'", settings)
    truncated = run(local, "SELECT id FROM 'storage://bronze/sales/*.parquet' ORDER BY id", settings, row_limit=5)
    assert truncated["truncated"] is True and [r["id"] for r in truncated["rows"]] == [0, 1, 2, 3, 4]
    with pytest.raises(InvalidInput, match="bytes as JSON"):
        run(local, "SELECT repeat('x', 100) AS text FROM range(40)", settings)


def test_symbolic_links_out_of_storage_are_refused(local: LocalBlobStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    bronze = local.root / "bronze"
    os.symlink(secret, bronze / "link.csv")
    os.symlink(tmp_path, bronze / "linkdir")
    with pytest.raises(Forbidden, match="resolves outside container"):
        run(local, "SELECT * FROM 'storage://bronze/link.csv'")
    with pytest.raises(Forbidden, match="resolves outside container"):
        run(local, "SELECT * FROM read_csv('storage://bronze/linkdir/secret.csv')")
    with pytest.raises(InvalidInput, match="refused access outside the allowed storage") as caught:
        run(local, "SELECT * FROM read_csv('storage://bronze/*.csv')")  # the glob matches the link
    assert str(local.root) not in str(caught.value)  # local paths are shown as storage URLs


def test_an_ogr_vrt_in_storage_cannot_read_outside(local: LocalBlobStore, tmp_path: Path) -> None:
    """GDAL would open a VRT's source itself, past DuckDB's checks: ST_Read only gets self-contained drivers."""
    (tmp_path / "outside.csv").write_text("user,password\nroot,hunter2\n")
    vrt = (
        f"<OGRVRTDataSource><OGRVRTLayer name='outside'><SrcDataSource>{tmp_path}/outside.csv</SrcDataSource>"
        "</OGRVRTLayer></OGRVRTDataSource>"
    ).encode()
    local.write_bytes("bronze", "evil.vrt", vrt)
    local.write_bytes("bronze", "evil.geojson", vrt)  # drivers go by content, not by name
    for name in ("evil.vrt", "evil.geojson"):
        with pytest.raises(InvalidInput, match="Could not open GDAL dataset") as caught:
            run(local, f"SELECT * FROM ST_Read('storage://bronze/{name}')")
        assert "hunter2" not in str(caught.value)


def test_missing_files_and_bad_sql_fail_readably(local: LocalBlobStore) -> None:
    with pytest.raises(InvalidInput, match=r"No files found.*storage://bronze/nothing/\*\.parquet"):
        run(local, "SELECT * FROM 'storage://bronze/nothing/*.parquet'")
    with pytest.raises(InvalidInput, match=r"container 'nosuch' of 'storage://nosuch/x\.csv' does not exist"):
        run(local, "SELECT * FROM 'storage://nosuch/x.csv'")
    with pytest.raises(InvalidInput, match=r"the query failed: .*missing_column"):
        run(local, "SELECT missing_column FROM 'storage://bronze/regions.csv'")
    with pytest.raises(InvalidInput, match="needs a GEOMETRY column"):
        run(local, "SELECT 1 AS x", output_format="geoparquet")


def test_time_and_memory_limits(local: LocalBlobStore) -> None:
    slow = AnalyticsSettings(duckdb_timeout_seconds=0.3)
    with pytest.raises(InvalidInput, match=r"ran longer than 0\.3 s and was stopped") as caught:
        run(local, "SELECT count(*) FROM range(1000000000000) a WHERE a.range % 7 = 3", slow)
    assert caught.value.details["reason"] == "timeout"
    small = AnalyticsSettings(duckdb_memory_limit="30MB", duckdb_threads=1)
    with pytest.raises(InvalidInput, match="more memory than its limit of 30MB"):
        run(local, "SELECT len(list(range)) AS n FROM range(20000000)", small)


def test_the_locked_connection_refuses_what_the_parser_would(local: LocalBlobStore, tmp_path: Path) -> None:
    """Defence in depth: even SQL that skipped check_sql cannot leave the allowed folders or unlock anything."""
    mapping = map_urls([parse_storage_url("storage://bronze/regions.csv")], local)
    con = connect(mapping, Limits("256MB", 1, str(tmp_path / "spill")))
    try:
        assert con.execute(
            f"SELECT count(*) FROM read_csv('{mapping.paths['storage://bronze/regions.csv']}')"
        ).fetchone() == (4,)
        blocked = [
            "SELECT * FROM read_csv('/etc/passwd')",
            f"SELECT * FROM read_parquet('{local.root}/silver/x.parquet')",  # another container
            f"COPY (SELECT 1) TO '{local.root}/silver/out.csv'",  # a folder the query does not read
            f"ATTACH '{tmp_path}/x.duckdb'",
            "INSTALL httpfs",
            "LOAD httpfs",
            "SET enable_external_access = true",
            "SET allowed_directories = ['/']",
            "SET memory_limit = '100GB'",
            "RESET lock_configuration",
        ]
        for sql in blocked:
            with pytest.raises(duckdb.Error):
                con.execute(sql)
                pytest.fail(f"ran: {sql}")
        assert not (local.root / "silver" / "out.csv").exists()
        settings = dict(con.execute("SELECT name, value FROM duckdb_settings()").fetchall())
        assert settings["enable_external_access"] == "false" and settings["lock_configuration"] == "true"
        assert settings["autoload_known_extensions"] == "false" and settings["threads"] == "1"
    finally:
        con.close()


def test_azurite_storage_through_the_azure_extension(azurite_connection_string: str) -> None:
    store = AzureBlobStore.from_connection_string(azurite_connection_string)
    try:
        fill(store)
        result = run(
            store,
            "SELECT region, count(*) AS n FROM 'storage://bronze/sales/*.parquet' GROUP BY region ORDER BY region",
        )
        assert [(r["region"], r["n"]) for r in result["rows"]] == [(0, 75), (1, 75), (2, 75), (3, 75)]
        out = run(
            store,
            "SELECT name, geom FROM ST_Read('storage://bronze/places.geojson')",
            output_format="geoparquet",
            output_name="places.parquet",
        )
        assert out["output"]["blob"] == "duckdb/job1/places.parquet"
        table = pq.read_table(io.BytesIO(store.read_bytes("silver", "duckdb/job1/places.parquet")))
        assert out["row_count"] == table.num_rows == 3 and b"geo" in table.schema.metadata
        with pytest.raises(InvalidInput, match="No files found"):
            run(store, "SELECT * FROM 'storage://bronze/none/*.parquet'")
    finally:
        store.close()


def test_geometry_from_geoparquet_without_spatial_functions(local: LocalBlobStore) -> None:
    """GEOMETRY is a core type: spatial is loaded only when the query or the result's encoding needs it."""
    run(
        local,
        "SELECT name, geom FROM ST_Read('storage://bronze/places.geojson')",
        output_format="geoparquet",
        output_name="places.parquet",
    )
    places = "'storage://silver/duckdb/job1/places.parquet'"
    rows = run(local, f"SELECT name, geom FROM {places} ORDER BY name")["rows"]
    assert rows[0]["geom"] == {"type": "Point", "coordinates": [1.0, 2.0]}  # GeoJSON needs spatial: loaded
    csv = run(local, f"SELECT name, geom FROM {places} ORDER BY name", output_format="csv")
    assert csv["row_count"] == 3
    assert b"POINT (3 4)" in local.read_bytes("silver", "duckdb/job1/result.csv")
    wkb = run(local, f"SELECT geom FROM {places}", output_format="parquet")
    assert wkb["columns"] == [{"name": "geom", "type": "BLOB"}]
