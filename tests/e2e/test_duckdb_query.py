"""duckdb_query end to end: HTTP in, real workers, generated files in local storage and on Azurite."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from infrastructure.context import AppContext
from infrastructure.storage import BlobStore
from tests.plugins.jobs_api import wait_for_job

POINTS = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "properties": {"city": c}, "geometry": {"type": "Point", "coordinates": [x, y]}}
        for c, x, y in [("oslo", 10.75, 59.91), ("lima", -77.04, -12.05), ("pune", 73.86, 18.52)]
    ],
}

# Each refused query and a piece of the reason the 400 gives.
REFUSED = [
    ("SELECT * FROM read_csv('/etc/passwd')", "'/etc/passwd' is not in storage"),
    ("SELECT * FROM '/etc/passwd'", "'/etc/passwd' is not in storage"),
    ("COPY (SELECT 1) TO '/tmp/geoetl-out.csv'", "not COPY"),
    ("ATTACH '/tmp/other.duckdb' AS other", "not ATTACH"),
    ("INSTALL httpfs", "not INSTALL or LOAD"),
    ("SELECT 1; SELECT * FROM read_csv('/etc/passwd')", "a second statement after ';'"),
    ("SET enable_external_access = true", "not SET"),
    ("SELECT * FROM read_csv('/work/main/local.settings.json')", "is not in storage"),
    ("SELECT * FROM read_text('storage://bronze/../../etc/passwd')", "'..' path segment"),
    ("SELECT * FROM 'storage://bronze/../../../etc/passwd'", "'..' path segment"),
    ("PRAGMA database_list", "PRAGMA"),
    (
        "WITH x AS (SELECT 1) SELECT * FROM (WITH pg_settings AS (SELECT 1) SELECT 1), pg_settings",
        "name of a DuckDB catalog view",
    ),
    ("WITH x AS (SELECT 1) SELECT * FROM (WITH t AS (SELECT 1) SELECT 1), t", "no table 't'"),
    ("SHOW ALL TABLES", "SHOW TABLES and other catalog listings are not allowed"),
]


def submit(api: str, params: dict[str, Any], expected: int = 202) -> dict[str, Any]:
    response = httpx.post(f"{api}/jobs/submit/duckdb_query", json=params, timeout=10)
    assert response.status_code == expected, response.text
    body: dict[str, Any] = response.json()
    return body


def run(api: str, params: dict[str, Any]) -> dict[str, Any]:
    return wait_for_job(submit(api, params)["status_url"], timeout=60)


def sales_parquet(rows: int, offset: int) -> bytes:
    table = pa.table(
        {
            "id": pa.array(range(offset, offset + rows), pa.int64()),
            "shop": pa.array([f"shop-{i % 3}" for i in range(rows)]),
            "amount": pa.array([float(i % 10) for i in range(rows)]),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def fill(storage: BlobStore) -> None:
    storage.write_bytes("bronze", "duckdb-e2e/sales/a.parquet", sales_parquet(60, 0))
    storage.write_bytes("bronze", "duckdb-e2e/sales/b.parquet", sales_parquet(30, 60))
    storage.write_bytes("bronze", "duckdb-e2e/shops.csv", b"shop,city\nshop-0,oslo\nshop-1,lima\nshop-2,pune\n")
    storage.write_bytes("bronze", "duckdb-e2e/cities.geojson", json.dumps(POINTS).encode())


def test_refused_queries_are_400_with_the_reason(jobs_api: str) -> None:
    for sql, reason in REFUSED:
        error = submit(jobs_api, {"sql": sql}, expected=400)["error"]
        assert error["code"] == "invalid_input", (sql, error)
        assert reason in error["message"], (sql, error["message"])
    csv = {"sql": "SELECT 1", "output_format": "csv"}
    bad = [
        ({"sql": "SELECT 1", "output_name": "x.parquet"}, "output_name is for output_format parquet"),
        ({"sql": "SELECT 1", "output_container": "gold"}, "output_container gold is for output_format parquet"),
        ({"sql": "SELECT 1", "row_limit": 10_000}, "row_limit 10000 is above"),
        ({"sql": "SELECT 1", "output_format": "xlsx"}, "output_format"),
        # a result file can only go under duckdb/<job_id>/ in silver or gold: never over other data
        ({**csv, "output_blob": "cogs/x/x_analysis.tif"}, "output_blob is not accepted"),
        ({**csv, "output_blob": "duckdb/x/result.csv"}, "output_blob is not accepted"),
        ({**csv, "output_container": "bronze"}, "output_container"),
        ({**csv, "output_container": "inventory-work"}, "output_container"),
        ({**csv, "output_name": "../x.csv"}, "without folders"),
        ({**csv, "output_name": "sub/x.csv"}, "without folders"),
        ({**csv, "output_name": ".."}, "'..' path segment"),
        ({"sql": "SELECT 1", "bogus": True}, "bogus"),
    ]
    for params, reason in bad:
        assert reason in json.dumps(submit(jobs_api, params, expected=400)["error"]), params


def test_the_default_output_container_spelled_out_is_the_same_job(jobs_api: str) -> None:
    """output_container defaults to silver: a body without it and one naming silver are one job; with json the
    default container is simply unused (not refused)."""
    for output_format in ("parquet", "json"):
        body = {"sql": "SELECT 42 AS answer", "output_format": output_format}
        first = submit(jobs_api, body)
        second = submit(jobs_api, {**body, "output_container": "silver"})
        assert first["job_id"] == second["job_id"], output_format
        assert wait_for_job(first["status_url"], timeout=60)["status"] == "completed"


def test_parquet_csv_and_geojson_from_storage(jobs_api: str, jobs_context: AppContext) -> None:
    fill(jobs_context.storage)
    sql = (
        "SELECT c.city, count(*) AS sales, sum(s.amount) AS total, any_value(g.geom) AS geom "
        "FROM 'storage://bronze/duckdb-e2e/sales/*.parquet' s "
        "JOIN read_csv('storage://bronze/duckdb-e2e/shops.csv') c USING (shop) "
        "JOIN ST_Read('storage://bronze/duckdb-e2e/cities.geojson') g ON g.city = c.city "
        "GROUP BY c.city ORDER BY c.city"
    )
    status = run(jobs_api, {"sql": sql})
    assert status["status"] == "completed", status
    result = status["result_data"]
    assert result["row_count"] == 3 and [r["city"] for r in result["rows"]] == ["lima", "oslo", "pune"]
    assert sum(r["sales"] for r in result["rows"]) == 90
    assert result["rows"][1]["geom"] == {"type": "Point", "coordinates": [10.75, 59.91]}
    assert [c["name"] for c in result["columns"]] == ["city", "sales", "total", "geom"]

    geo = run(jobs_api, {"sql": sql, "output_format": "geoparquet", "output_container": "gold"})
    assert geo["status"] == "completed", geo
    output = geo["result_data"]["output"]
    assert output["container"] == "gold" and output["blob"] == f"duckdb/{geo['job_id']}/result.parquet"
    table = pq.read_table(io.BytesIO(jobs_context.storage.read_bytes("gold", output["blob"])))
    assert table.num_rows == geo["result_data"]["row_count"] == 3
    assert json.loads(table.schema.metadata[b"geo"])["primary_column"] == "geom"

    csv = run(jobs_api, {"sql": sql, "output_format": "csv", "output_name": "cities.csv", "row_limit": 2})
    assert csv["result_data"]["row_count"] == 2 and csv["result_data"]["truncated"] is True
    assert csv["result_data"]["output"]["container"] == "silver"
    assert csv["result_data"]["output"]["blob"] == f"duckdb/{csv['job_id']}/cities.csv"
    text = jobs_context.storage.read_bytes("silver", f"duckdb/{csv['job_id']}/cities.csv").decode()
    assert text.splitlines()[0] == "city,sales,total,geom" and "POINT (-77.04 -12.05)" in text


def test_escapes_at_run_time_fail_the_job_readably(jobs_api: str, jobs_context: AppContext, tmp_path: Path) -> None:
    fill(jobs_context.storage)
    secret = tmp_path / "secret.csv"
    secret.write_text("user,password\nroot,hunter2\n")
    root = Path(jobs_context.settings.storage.storage_local_root)
    os.symlink(secret, root / "bronze" / "duckdb-e2e" / "link.csv")

    direct = run(jobs_api, {"sql": "SELECT * FROM read_csv('storage://bronze/duckdb-e2e/link.csv')"})
    assert direct["status"] == "failed"
    assert "resolves outside container" in direct["error_details"]["details"]["error"]["message"]

    globbed = run(jobs_api, {"sql": "SELECT * FROM read_csv('storage://bronze/duckdb-e2e/*.csv')"})
    assert globbed["status"] == "failed"
    message = globbed["error_details"]["details"]["error"]["message"]
    assert "refused access outside the allowed storage" in message and "hunter2" not in json.dumps(globbed)

    too_many = run(jobs_api, {"sql": "SELECT * FROM range(5000)"})
    assert too_many["status"] == "failed"
    assert "use output_format parquet" in too_many["error_details"]["details"]["error"]["message"]


def test_azurite_storage(azurite_jobs_api: str, azurite_jobs_context: AppContext) -> None:
    fill(azurite_jobs_context.storage)
    sql = "SELECT shop, count(*) AS n FROM 'storage://bronze/duckdb-e2e/sales/*.parquet' GROUP BY shop ORDER BY shop"
    status = run(azurite_jobs_api, {"sql": sql})
    assert status["status"] == "completed", status
    assert [(r["shop"], r["n"]) for r in status["result_data"]["rows"]] == [
        ("shop-0", 30),
        ("shop-1", 30),
        ("shop-2", 30),
    ]
    out = run(
        azurite_jobs_api,
        {"sql": sql, "output_format": "parquet", "output_container": "gold", "output_name": "shops.parquet"},
    )
    assert out["status"] == "completed", out
    assert out["result_data"]["output"]["blob"] == f"duckdb/{out['job_id']}/shops.parquet"
    data = azurite_jobs_context.storage.read_bytes("gold", out["result_data"]["output"]["blob"])
    assert pq.read_table(io.BytesIO(data)).num_rows == 3
