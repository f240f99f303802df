"""H3 grid tables on a real PostGIS: ownership of tables, idempotent loads, area filters, boundary tables."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import h3
import pytest

from core.errors import Conflict, InvalidInput
from core.settings import DatabaseSettings
from infrastructure.db.database import Database
from services.h3 import cells, grid

JOB_A = "a" * 64
JOB_B = "b" * 64


@pytest.fixture
def db(fresh_db: DatabaseSettings) -> Iterator[Database]:
    database = Database(fresh_db)
    yield database
    database.close()


def count(db: Database, table: str) -> int:
    row = db.fetch_one(f"SELECT count(*) AS n FROM h3.{table}")
    assert row is not None
    return int(row["n"])


def test_tables_belong_to_their_job(db: Database) -> None:
    with db.transaction() as conn:
        assert grid.prepare_table(conn, "t1", JOB_A, replace=False) == "created"
    with db.transaction() as conn:
        assert grid.prepare_table(conn, "t1", JOB_A, replace=False) == "kept"
    with pytest.raises(Conflict, match="another job: pass replace=true"), db.transaction() as conn:
        grid.prepare_table(conn, "t1", JOB_B, replace=False)
    with db.transaction() as conn:
        assert grid.prepare_table(conn, "t1", JOB_B, replace=True) == "replaced"
    with db.transaction() as conn:
        conn.execute("CREATE TABLE h3.foreign_table (x int)")
    with pytest.raises(Conflict, match="not an H3 grid made by geoetl"), db.transaction() as conn:
        grid.prepare_table(conn, "foreign_table", JOB_A, replace=True)
    for bad in ("Upper", "1abc", "a-b", "x" * 49, 'a"; drop'):
        with pytest.raises(InvalidInput, match="invalid table name"):
            grid.validate_table_name(bad)


def test_loads_are_idempotent_per_split_cell(db: Database) -> None:
    parents = cells.res0_cells()[:3]
    with db.transaction() as conn:
        grid.prepare_table(conn, "base", JOB_A, replace=False)
    expected = sum(1 + 7 * (1 if not h3.is_pentagon(p) else 0) + (6 if h3.is_pentagon(p) else 0) for p in parents)
    for _ in range(2):  # a retried task replaces its rows
        with db.transaction() as conn:
            loaded = grid.load_cells(conn, "base", JOB_A, parents, [0, 1])
        assert loaded == expected == count(db, "base")
    with db.transaction() as conn:
        stats = grid.finish_table(conn, "base", JOB_A)
    assert stats["cells_by_resolution"] == {"0": 3, "1": expected - 3}
    assert stats["table"] == "h3.base"


def test_bbox_filter_keeps_only_cells_that_meet_the_box(db: Database) -> None:
    box = cells.BBox.parse([179.5, -17.5, -179.5, -16.5])
    parents = cells.covering_cells(box, 3)
    with db.transaction() as conn:
        grid.prepare_table(conn, "fiji", JOB_A, replace=False)
        loaded = grid.load_cells(conn, "fiji", JOB_A, parents, [6], bbox=box)
    assert loaded == count(db, "fiji") > 0
    outside = db.fetch_one(
        "SELECT count(*) AS n FROM h3.fiji WHERE NOT"
        " (ST_Intersects(geom, ST_MakeEnvelope(179.5, -17.5, 180, -16.5, 4326))"
        " OR ST_Intersects(geom, ST_MakeEnvelope(-180, -17.5, -179.5, -16.5, 4326)))"
    )
    assert outside == {"n": 0}
    # the Python filter keeps exactly the cells PostGIS finds intersecting the box (none missing)
    with db.transaction() as conn:
        grid.prepare_table(conn, "fiji_all", JOB_A, replace=False)
        grid.load_cells(conn, "fiji_all", JOB_A, parents, [6])
    meeting = db.fetch_one(
        "SELECT count(*) AS n FROM h3.fiji_all WHERE"
        " ST_Intersects(geom, ST_MakeEnvelope(179.5, -17.5, 180, -16.5, 4326))"
        " OR ST_Intersects(geom, ST_MakeEnvelope(-180, -17.5, -179.5, -16.5, 4326))"
    )
    assert meeting == {"n": loaded} and count(db, "fiji_all") > loaded


def test_boundary_tables_in_another_srid_and_their_errors(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute("CREATE TABLE geo.zone (id int, geom geometry(Polygon, 3857))")
        conn.execute("INSERT INTO geo.zone VALUES (1, ST_Transform(ST_MakeEnvelope(8, 46, 9, 47, 4326), 3857))")
        conn.execute("CREATE TABLE geo.nogeom (id int)")
        conn.execute("CREATE TABLE geo.nosrid (id int, geom geometry)")
        conn.execute("INSERT INTO geo.nosrid VALUES (1, ST_MakeEnvelope(8, 46, 9, 47))")
        boundary = grid.find_boundary(conn, "zone")
        assert (boundary.qualified, boundary.column, boundary.srid) == ("geo.zone", "geom", 3857)
        extent = grid.boundary_extent(conn, boundary)
        assert extent is not None and extent.west == pytest.approx(8) and extent.north == pytest.approx(47)
        assert grid.boundary_area_m2(conn, boundary) == pytest.approx(8.6e9, rel=0.05)
        grid.prepare_table(conn, "zone_r5", JOB_A, replace=False)
        loaded = grid.load_cells(conn, "zone_r5", JOB_A, cells.covering_cells(extent, 2), [5], boundary=boundary)
    assert loaded == count(db, "zone_r5") > 0
    with db.transaction() as conn:
        with pytest.raises(InvalidInput, match=r"geo\.missing does not exist"):
            grid.find_boundary(conn, "geo.missing")
        with pytest.raises(InvalidInput, match="no geometry column"):
            grid.find_boundary(conn, "geo.nogeom")
        with pytest.raises(InvalidInput, match="no SRID"):
            grid.find_boundary(conn, "geo.nosrid")
        with pytest.raises(InvalidInput, match="invalid table reference"):
            grid.find_boundary(conn, "geo.zone; drop table x")


def catalog_writes(conn: Any) -> int:
    """Rows this transaction inserted, updated or deleted in the catalogs that DDL changes."""
    row = conn.execute(
        "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::int AS n FROM pg_stat_xact_sys_tables "
        "WHERE relname IN ('pg_class', 'pg_attribute', 'pg_type', 'pg_depend')"
    ).fetchone()
    return int(row["n"])


def test_load_tasks_with_an_area_run_no_ddl(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute("CREATE TABLE geo.area (id int, geom geometry(Polygon, 4326))")
        conn.execute("INSERT INTO geo.area VALUES (1, ST_MakeEnvelope(8, 46, 9, 47, 4326))")
        grid.prepare_table(conn, "area_r5", JOB_A, replace=False)
    box = cells.BBox.parse([8.2, 46.2, 8.8, 46.8])
    parents = cells.covering_cells(box, 2)
    for bbox, boundary_name in ((box, None), (None, "geo.area"), (box, "geo.area")):
        with db.transaction() as conn:
            boundary = None if boundary_name is None else grid.find_boundary(conn, boundary_name)
            before = catalog_writes(conn)
            loaded = grid.load_cells(conn, "area_r5", JOB_A, parents, [5], bbox=bbox, boundary=boundary)
            assert catalog_writes(conn) == before, (bbox, boundary_name)  # no temporary tables, no DDL
        assert loaded == count(db, "area_r5") > 0
    # the boundary filter keeps the cells meeting the boundary, and only those
    with db.transaction() as conn:
        loaded = grid.load_cells(conn, "area_r5", JOB_A, parents, [5], boundary=grid.find_boundary(conn, "geo.area"))
    stray = db.fetch_one(
        "SELECT count(*) AS n FROM h3.area_r5 t WHERE NOT ST_Intersects(t.geom, ST_MakeEnvelope(8, 46, 9, 47, 4326))"
    )
    assert stray == {"n": 0} and loaded > 0


def test_tasks_of_a_job_whose_table_was_replaced_fail_without_touching_it(db: Database) -> None:
    parents = cells.res0_cells()[:2]
    with db.transaction() as conn:
        grid.prepare_table(conn, "shared", JOB_A, replace=False)
        grid.load_cells(conn, "shared", JOB_A, parents[:1], [0, 1])
        locks = conn.execute(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
            "AND mode = 'ShareLock'"
        ).fetchone()
        assert locks == {"n": 1}  # the load holds the name's advisory lock shared until it commits
    with db.transaction() as conn:
        assert grid.prepare_table(conn, "shared", JOB_B, replace=True) == "replaced"
        grid.load_cells(conn, "shared", JOB_B, parents[1:], [0])
    replaced = f"h3.shared was replaced by job {JOB_B} while job {JOB_A}"
    with pytest.raises(Conflict, match=replaced), db.transaction() as conn:
        grid.load_cells(conn, "shared", JOB_A, parents, [0, 1])
    with pytest.raises(Conflict, match="was replaced by job"), db.transaction() as conn:
        grid.finish_table(conn, "shared", JOB_A)
    assert db.fetch_one("SELECT array_agg(h3_index) AS cells FROM h3.shared") == {"cells": parents[1:]}
    with db.transaction() as conn:
        conn.execute("DROP TABLE h3.shared")
    with pytest.raises(Conflict, match="no longer exists"), db.transaction() as conn:
        grid.load_cells(conn, "shared", JOB_B, parents, [0])
