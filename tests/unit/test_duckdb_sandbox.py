"""The DuckDB sandbox's submit-time check: DuckDB's parser decides, every refusal says why."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from services.duckdb.query import output_blob, validate_output_name
from services.duckdb.results import map_locations, projection
from services.duckdb.sandbox import check_sql
from services.duckdb.urls import Mapping, parse_storage_url

REFUSED = {
    "read /etc/passwd as a table": ("SELECT * FROM '/etc/passwd'", "not in storage"),
    "read_csv of /etc/passwd": ("SELECT * FROM read_csv('/etc/passwd')", "not in storage"),
    "read_csv outside storage, with options": (
        "SELECT * FROM read_csv('/work/data.csv', header = true)",
        "not in storage",
    ),
    "read_text": ("SELECT * FROM read_text('/etc/passwd')", "not in storage"),
    "read_blob": ("SELECT * FROM read_blob('/etc/shadow')", "not in storage"),
    "ST_Read": ("SELECT * FROM ST_Read('/etc/passwd')", "not in storage"),
    "glob": ("SELECT * FROM glob('/etc/*')", "not in storage"),
    "parquet_metadata": ("SELECT * FROM parquet_metadata('/tmp/x.parquet')", "not in storage"),
    "a list with one path outside": (
        "SELECT * FROM read_parquet(['storage://bronze/a.parquet', '/tmp/b.parquet'])",
        "not in storage",
    ),
    "a computed path": ("SELECT * FROM read_csv('/etc' || '/passwd')", "string literal"),
    "a file reader as a scalar": ("SELECT read_text('/etc/passwd')", "only be used in FROM"),
    "COPY ... TO": ("COPY (SELECT 1) TO '/tmp/out.csv'", "not COPY"),
    "COPY ... FROM": ("COPY t FROM '/etc/passwd'", "not COPY"),
    "ATTACH": ("ATTACH '/tmp/other.duckdb' AS other", "not ATTACH"),
    "INSTALL": ("INSTALL httpfs", "not INSTALL or LOAD"),
    "LOAD": ("LOAD spatial", "not INSTALL or LOAD"),
    "PRAGMA": ("PRAGMA database_list", "PRAGMA"),
    "SET": ("SET enable_external_access = true", "not SET"),
    "RESET": ("RESET lock_configuration", "not SET"),
    "a second statement": ("SELECT 1; SELECT 2", "a second statement after ';'"),
    "a second statement that writes": ("SELECT 1; COPY (SELECT 1) TO '/tmp/x'", "exactly one statement"),
    "CREATE": ("CREATE TABLE t AS SELECT 1", "not CREATE"),
    "CALL": ("CALL pragma_version()", "not CALL"),
    "EXPORT": ("EXPORT DATABASE '/tmp/dump'", "not EXPORT"),
    "a catalog function": ("SELECT * FROM duckdb_settings()", "duckdb_settings() is not allowed"),
    "secrets": ("SELECT * FROM duckdb_secrets()", "duckdb_secrets() is not allowed"),
    "query()": ("SELECT * FROM query('COPY (SELECT 1) TO ''/tmp/x''')", "query() is not allowed"),
    "getenv": ("SELECT getenv('HOME')", "getenv() is not allowed"),
    "current_setting": ("SELECT current_setting('allowed_directories')", "current_setting() is not allowed"),
    "a dotdot escape": ("SELECT * FROM 'storage://bronze/../../etc/passwd'", "'..' path segment"),
    "a dotdot escape in read_csv": ("SELECT * FROM read_csv('storage://bronze/a/../../../x.csv')", "'..'"),
    "an absolute storage path": ("SELECT * FROM read_csv('storage://bronze//etc/passwd')", "absolute path"),
    "a bad container": ("SELECT * FROM 'storage://../etc/passwd'", "invalid container name"),
    "no path": ("SELECT * FROM read_csv('storage://bronze')", "names no file"),
    "a quoted identifier as a file": ('SELECT * FROM "storage://bronze/a.csv"', "plain string literal"),
    "a file in a subquery": ("SELECT (SELECT count(*) FROM read_csv('/etc/passwd'))", "not in storage"),
    "a file in a CTE": ("WITH t AS (FROM '/etc/hosts') SELECT * FROM t", "not in storage"),
    "ST_Read_Meta": ("SELECT * FROM ST_Read_Meta('storage://bronze/a.gpkg')", "st_read_meta() is not allowed"),
    "ST_Read with its own drivers": (
        "SELECT * FROM ST_Read('storage://bronze/a.vrt', allowed_drivers = ['OGR_VRT'])",
        "allowed_drivers is set by the sandbox",
    ),
    "ST_Read with SQL in an open option": (
        "SELECT * FROM ST_Read('storage://bronze/a.gpkg', open_options = ['PRELUDE_STATEMENTS=ATTACH ''/x'' AS x'])",
        "open option",
    ),
    "ST_Read sibling files outside storage": (
        "SELECT * FROM ST_Read('storage://bronze/a.shp', sibling_files = ['/etc/passwd'])",
        "not in storage",
    ),
    "a PIVOT without an IN list": (
        "WITH a AS (SELECT * FROM 'storage://bronze/a.parquet') PIVOT a ON k USING sum(v)",
        "a PIVOT without an IN list (PIVOT ... ON <column> USING ...) is not supported",
    ),
    "a PIVOT over a catalog view": (
        "PIVOT (SELECT * FROM duckdb_settings()) ON name IN ('x') USING count(*)",
        "duckdb_settings() is not allowed",
    ),
    "a PIVOT over a file outside storage": (
        "SELECT * FROM read_csv('/etc/passwd') PIVOT (count(*) FOR column0 IN ('x'))",
        "'/etc/passwd' is not in storage",
    ),
    "an UNPIVOT over a catalog view": (
        "UNPIVOT (SELECT * FROM duckdb_settings()) ON name INTO NAME n VALUE v",
        "duckdb_settings() is not allowed",
    ),
    "not SQL": ("SELEC 1", "not valid SQL"),
    "empty": ("   ", "empty"),
    "only a comment": ("-- nothing", "exactly one statement"),
}


@pytest.mark.parametrize("sql, reason", REFUSED.values(), ids=list(REFUSED))
def test_refused_queries_say_why(sql: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_sql(sql)
    assert str(caught.value).startswith("query refused: ")
    assert reason in str(caught.value)
    assert caught.value.details.get("field") == "sql"


ACCEPTED = [
    "SELECT 1",
    "select 1;",
    "WITH t AS (SELECT 42 AS x) SELECT x FROM t",
    "FROM range(10) SELECT sum(range)",
    "SELECT * FROM 'storage://bronze/sales/*.parquet' WHERE amount > 0",
    "SELECT * FROM read_csv('storage://bronze/a.csv', header = true, delim = ';')",
    "SELECT * FROM read_parquet(['storage://bronze/a.parquet', 'storage://silver/b.parquet'])",
    "SELECT name, ST_Area(geom) FROM ST_Read('storage://bronze/parcels.gpkg', layer = 'parcels')",
    "SELECT * FROM read_json('storage://bronze/events/**/*.json')",
    "SUMMARIZE SELECT * FROM 'storage://bronze/a.parquet'",
    "DESCRIBE SELECT 1 AS x",
    "SELECT 1 -- a trailing comment",
    # WITH queries in scope: earlier siblings, enclosing queries, subqueries, set operations, recursion
    "WITH a AS (SELECT 1 AS x), b AS (SELECT * FROM a) SELECT * FROM b",
    "WITH q AS (SELECT 5 AS y) SELECT (SELECT y FROM q)",
    "WITH a AS (SELECT 1) SELECT * FROM a UNION ALL SELECT * FROM a",
    "WITH a AS (SELECT 1) SELECT * FROM (WITH b AS (SELECT * FROM a) SELECT * FROM b)",
    "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) SELECT * FROM t",
    "WITH tables AS (SELECT 1) SELECT * FROM tables",  # information_schema.tables is not reachable unqualified
    "SUMMARIZE SELECT 1 AS x",
    # PIVOT with its values listed and UNPIVOT are one SELECT, checked like any other
    "WITH a AS (SELECT * FROM 'storage://bronze/a.parquet') PIVOT a ON k IN ('x', 'y') USING sum(v)",
    "SELECT * FROM 'storage://bronze/a.parquet' PIVOT (sum(v) FOR k IN ('x', 'y'))",
    "UNPIVOT 'storage://bronze/a.parquet' ON a, b INTO NAME n VALUE v",
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_read_only_queries_over_storage_pass(sql: str) -> None:
    check_sql(sql)


def test_a_storage_url_in_plain_text_is_left_alone() -> None:
    sql = "SELECT 'storage://bronze/x' AS just_text"
    checked = check_sql(sql)
    assert checked.urls == () and checked.spans == ()
    assert checked.rewritten(Mapping("local", {}, {})) == sql


def test_storage_urls_are_found_and_rewritten_in_place() -> None:
    sql = (
        "SELECT 'é' AS accent, * FROM read_csv('storage://bronze/a.csv', header = true) a "
        "JOIN 'storage://bronze/dir/*.parquet' b USING (id) -- 'storage://bronze/comment.csv'"
    )
    checked = check_sql(sql)
    assert [u.url for u in checked.urls] == ["storage://bronze/a.csv", "storage://bronze/dir/*.parquet"]
    mapping = Mapping(
        "local",
        {
            "storage://bronze/a.csv": "/data/bronze/it's.csv",
            "storage://bronze/dir/*.parquet": "/data/bronze/dir/*.parquet",
        },
        {"/data/bronze/": "bronze"},
    )
    rewritten = mapping_sql = checked.rewritten(mapping)
    assert "read_csv('/data/bronze/it''s.csv', header = true)" in rewritten
    assert "JOIN '/data/bronze/dir/*.parquet' b" in mapping_sql
    assert "'é' AS accent" in rewritten
    assert "-- 'storage://bronze/comment.csv'" in rewritten  # comments and plain text are left alone
    check_sql("SELECT 1")  # the parser connection is reusable
    assert mapping.to_storage_url('Cannot open "/data/bronze/x.csv"') == 'Cannot open "storage://bronze/x.csv"'


def test_a_storage_url_keeps_globs_and_refuses_escapes() -> None:
    url = parse_storage_url("storage://bronze/sales/2024/*.parquet")
    assert (url.container, url.path, url.is_glob) == ("bronze", "sales/2024/*.parquet", True)
    for bad in ("storage://bronze/../x", "storage://bronze/a\\..\\b", "s3://bronze/x", "storage://BRONZE/x"):
        with pytest.raises(InvalidInput):
            parse_storage_url(bad)


@pytest.mark.parametrize(
    "sql",
    [
        "PRAGMA database_list",
        "PRAGMA show_tables",
        "PRAGMA table_info('x')",
        "PRAGMA enable_profiling",
        "PRAGMA memory_limit = '100GB'",
        "SELECT * FROM pragma_database_list",
        "SELECT * FROM duckdb_settings",
        "SELECT * FROM information_schema.tables",
        # a WITH name defined in a subquery does not reach the outer query (it would read the catalog view)
        "WITH x AS (SELECT 1) SELECT * FROM (WITH pg_settings AS (SELECT 1) SELECT 1), pg_settings",
        "WITH x AS (SELECT 1) SELECT * FROM (WITH duckdb_databases AS (SELECT 1) SELECT 1), duckdb_databases",
        "SELECT * FROM (WITH sqlite_master AS (SELECT 1) SELECT 1) a, sqlite_master",
        "WITH pg_settings AS (SELECT 1) SELECT * FROM pg_settings",
        "SHOW TABLES",
        "SHOW ALL TABLES",
        "SHOW duckdb_settings",
        "DESCRIBE pg_settings",
        "SUMMARIZE duckdb_databases",
    ],
)
def test_pragmas_and_catalog_views_are_refused(sql: str) -> None:
    with pytest.raises(InvalidInput, match="query refused"):
        check_sql(sql)


@pytest.mark.parametrize(
    "sql, reason",
    [
        # scope, with names that are no catalog view: refused because the name is not a WITH query in scope
        ("WITH x AS (SELECT 1) SELECT * FROM (WITH t AS (SELECT 1) SELECT 1), t", "no table 't'"),
        ("SELECT * FROM (WITH t AS (SELECT 1) SELECT 1) a WHERE EXISTS (SELECT 1 FROM t)", "no table 't'"),
        ("WITH a AS (SELECT * FROM a) SELECT * FROM a", "no table 'a'"),  # a body does not see itself
        ("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", "no table 'b'"),  # nor later siblings
        ("WITH a AS (SELECT 1) SELECT 1 UNION ALL SELECT * FROM (WITH c AS (SELECT 2) SELECT 1), c", "no table 'c'"),
        # names that could reach a catalog view or a file
        ("WITH pg_settings AS (SELECT 1) SELECT 1", "name of a DuckDB catalog view"),
        ("WITH Duckdb_Settings AS (SELECT 1) SELECT 1", "name of a DuckDB catalog view"),
        ("WITH duckdb_anything AS (SELECT 1) SELECT 1", "name of a DuckDB catalog view"),
        ('WITH "/etc/passwd" AS (SELECT 1) SELECT * FROM "/etc/passwd"', "looks like a file path"),
        ('SELECT * FROM (WITH "a.csv" AS (SELECT 1) SELECT 1), "a.csv"', "looks like a file path"),
        ('WITH "c:x" AS (SELECT 1) SELECT 1', "looks like a file path"),
        ("SHOW TABLES", "SHOW TABLES and other catalog listings are not allowed"),
    ],
)
def test_with_names_are_resolved_by_scope(sql: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match="query refused") as caught:
        check_sql(sql)
    assert reason in str(caught.value)


def test_output_files_stay_under_the_jobs_folder() -> None:
    assert output_blob("j1", "parquet") == "duckdb/j1/result.parquet"
    assert output_blob("j1", "geoparquet") == "duckdb/j1/result.parquet"
    assert output_blob("j1", "csv", "report.csv") == "duckdb/j1/report.csv"
    for bad in ("../x.csv", "a/b.csv", "..", "cogs\\x.tif", "/abs.csv"):
        with pytest.raises(InvalidInput):
            validate_output_name(bad)
        with pytest.raises(InvalidInput):
            output_blob("j1", "csv", bad)


def test_mapped_locations_are_written_back_as_storage_urls() -> None:
    folders = {"/data/bronze/": "bronze", "az://silver/": "silver"}
    rows = [{"file": "/data/bronze/a.csv", "nested": {"list": ["az://silver/b.parquet", 3]}, "n": 1}]
    assert map_locations(rows, folders) == [
        {"file": "storage://bronze/a.csv", "nested": {"list": ["storage://silver/b.parquet", 3]}, "n": 1}
    ]
    select = projection(["file", "files", "n"], ["VARCHAR", "VARCHAR[]", "INTEGER"], "parquet", folders)
    assert "replace(" in select and "'storage://bronze/'" in select and 'list_transform("files"' in select
    assert select.endswith(', "n"')
    assert projection(["file"], ["VARCHAR"], "csv", {}) == '"file"'


def test_st_read_is_limited_to_self_contained_drivers() -> None:
    checked = check_sql(
        "SELECT * FROM ST_Read('storage://bronze/p.csv', "
        "open_options = ['X_POSSIBLE_NAMES=lon', 'Y_POSSIBLE_NAMES=lat'],"
        " sibling_files = ['storage://bronze/p.csvt']) a, ST_Read('storage://bronze/q.gpkg', layer = 'q') b"
    )
    assert checked.spatial
    mapping = Mapping(
        "local", {u.url: f"/data/{u.container}/{u.path}" for u in checked.urls}, {"/data/bronze/": "bronze"}
    )
    sql = checked.rewritten(mapping)
    assert sql.count("allowed_drivers = ['GeoJSON'") == 2 and "OGR_VRT" not in sql
    assert "sibling_files = ['/data/bronze/p.csvt'], allowed_drivers" in sql
    assert "ST_Read('/data/bronze/q.gpkg', layer = 'q', allowed_drivers = [" in sql
    assert not check_sql("SELECT * FROM read_parquet('storage://bronze/a.parquet')").spatial
