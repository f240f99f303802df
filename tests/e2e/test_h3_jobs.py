"""H3 grid jobs end to end: submitted over HTTP, run by the local host's workers, checked in PostGIS."""

from __future__ import annotations

from typing import Any

import h3
import httpx
import pytest
import shapely

from infrastructure.context import AppContext
from services.h3 import cells
from tests.plugins.jobs_api import wait_for_job


def submit(api: str, job_type: str, params: dict[str, Any], expected: int = 202) -> dict[str, Any]:
    response = httpx.post(f"{api}/jobs/submit/{job_type}", json=params, timeout=30)
    assert response.status_code == expected, response.text
    body: dict[str, Any] = response.json()
    return body


def run(api: str, job_type: str, params: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    return wait_for_job(submit(api, job_type, params)["status_url"], timeout)


def one(context: AppContext, query: str, params: tuple[Any, ...] = ()) -> dict[str, Any]:
    row = context.db.fetch_one(query, params)
    assert row is not None
    return row


def test_create_h3_base_loads_res0_and_res1_with_parents_and_valid_split_polygons(
    jobs_api: str, jobs_context: AppContext
) -> None:
    status = run(jobs_api, "create_h3_base", {"max_resolution": 1})
    assert status["status"] == "completed", status
    result = status["result_data"]
    assert result["table"] == "h3.base_cells"
    assert result["cells_by_resolution"] == {"0": 122, "1": 842} and result["cells"] == 964

    stats = one(
        jobs_context,
        "SELECT count(*) FILTER (WHERE NOT ST_IsValid(geom)) AS invalid,"
        " count(*) FILTER (WHERE GeometryType(geom) <> 'MULTIPOLYGON' OR ST_SRID(geom) <> 4326) AS wrong_type,"
        " min(ST_XMin(geom)) AS xmin, max(ST_XMax(geom)) AS xmax,"
        " count(*) FILTER (WHERE h3_int <> ('x' || lpad(h3_index, 16, '0'))::bit(64)::bigint) AS bad_int"
        " FROM h3.base_cells",
    )
    assert stats == {"invalid": 0, "wrong_type": 0, "xmin": -180.0, "xmax": 180.0, "bad_int": 0}
    # every res-1 row's parent is a res-0 row
    orphans = one(
        jobs_context,
        "SELECT count(*) AS n FROM h3.base_cells c WHERE resolution = 1 AND NOT EXISTS "
        "(SELECT 1 FROM h3.base_cells p WHERE p.h3_index = c.parent_index AND p.resolution = 0)",
    )
    assert orphans["n"] == 0
    # each resolution tiles the lon/lat plane exactly once: the planar areas add up to 360 x 180
    for resolution in (0, 1):
        area = one(
            jobs_context, "SELECT sum(ST_Area(geom)) AS a FROM h3.base_cells WHERE resolution = %s", (resolution,)
        )
        assert area["a"] == pytest.approx(64800.0, rel=1e-9)
        # the poles lie in exactly one cell each, the cell H3 says
        for lat in (90.0, -90.0):
            found = jobs_context.db.quick(
                "SELECT h3_index FROM h3.base_cells WHERE resolution = %s AND "
                "ST_Intersects(geom, ST_SetSRID(ST_MakePoint(0, %s), 4326))",
                (resolution, lat * 0.999999),
            )
            assert [r["h3_index"] for r in found] == [h3.latlng_to_cell(lat * 0.999999, 0, resolution)]
    # cells across the antimeridian are two-part MultiPolygons touching -180 and 180
    split = jobs_context.db.quick(
        "SELECT h3_index, ST_NumGeometries(geom) AS parts, ST_XMin(geom) AS xmin, ST_XMax(geom) AS xmax "
        "FROM h3.base_cells WHERE ST_NumGeometries(geom) > 1"
    )
    assert len(split) == result["antimeridian_split_cells"] > 0
    for row in split:
        assert row["parts"] == 2 and row["xmin"] == -180.0 and row["xmax"] == 180.0, row
    # one cell whose H3 boundary crosses the antimeridian, checked by value
    crossing = h3.latlng_to_cell(-16.5, 179.9, 1)
    geom = one(jobs_context, "SELECT ST_AsText(geom) AS wkt FROM h3.base_cells WHERE h3_index = %s", (crossing,))
    shape = shapely.from_wkt(geom["wkt"])
    assert shape.equals(cells.cell_geometry(crossing)) and len(shape.geoms) == 2


def test_generate_h3_level4_loads_all_288122_cells_in_122_tasks(jobs_api: str, jobs_context: AppContext) -> None:
    status = run(jobs_api, "generate_h3_level4", {}, timeout=120)
    assert status["status"] == "completed", status
    result = status["result_data"]
    assert result["cells"] == 288_122 and result["load_tasks"] == 122
    assert result["cells_by_resolution"] == {"4": 288_122}
    stats = one(
        jobs_context,
        "SELECT count(*) AS n, count(DISTINCT h3_int) AS ints,"
        " count(*) FILTER (WHERE NOT ST_IsValid(geom)) AS invalid,"
        " min(ST_XMin(geom)) AS xmin, max(ST_XMax(geom)) AS xmax, min(ST_YMin(geom)) AS ymin,"
        " max(ST_YMax(geom)) AS ymax, sum(ST_Area(geom)) AS area,"
        " count(*) FILTER (WHERE ST_NumGeometries(geom) > 1 AND (ST_XMin(geom) <> -180 OR ST_XMax(geom) <> 180))"
        " AS bad_split FROM h3.cells_r4",
    )
    assert (stats["n"], stats["ints"], stats["invalid"], stats["bad_split"]) == (288_122, 288_122, 0, 0)
    assert (stats["xmin"], stats["xmax"], stats["ymin"], stats["ymax"]) == (-180.0, 180.0, -90.0, 90.0)
    assert stats["area"] == pytest.approx(64800.0, rel=1e-9)
    indexes = {
        r["indexname"] for r in jobs_context.db.quick("SELECT indexname FROM pg_indexes WHERE schemaname = 'h3'")
    }
    assert {"cells_r4_geom_idx", "cells_r4_int_idx", "cells_r4_split_idx"} <= indexes

    # the same table again from another job: refused unless replace
    other = run(jobs_api, "generate_h3_level4", {"bbox": [10, 40, 12, 42]})
    assert other["status"] == "failed"
    assert "already holds an H3 grid made by another job" in other["error_details"]["message"] + str(
        other["error_details"]
    )


def test_generate_h3_grid_over_a_bbox_across_the_antimeridian(jobs_api: str, jobs_context: AppContext) -> None:
    bbox = [179.0, -18.0, -179.0, -16.0]  # west > east: across the antimeridian (Fiji)
    status = run(jobs_api, "generate_h3_grid", {"resolution": 5, "bbox": bbox, "table": "fiji_r5"})
    assert status["status"] == "completed", status
    got = {r["h3_index"] for r in jobs_context.db.quick("SELECT h3_index FROM h3.fiji_r5")}
    expected = {
        c
        for p in cells.covering_cells(cells.BBox.parse(bbox), 2)
        for c in h3.cell_to_children(p, 5)
        if cells.cell_geometry(c).intersects(shapely.box(179, -18, 180, -16))
        or cells.cell_geometry(c).intersects(shapely.box(-180, -18, -179, -16))
    }
    assert got == expected and len(got) == status["result_data"]["cells"] > 100
    bad = one(jobs_context, "SELECT count(*) FILTER (WHERE NOT ST_IsValid(geom)) AS n FROM h3.fiji_r5")
    assert bad["n"] == 0
    split = one(jobs_context, "SELECT count(*) AS n FROM h3.fiji_r5 WHERE ST_NumGeometries(geom) = 2")
    assert split["n"] > 0


def test_generate_h3_grid_within_a_boundary_table(jobs_api: str, jobs_context: AppContext) -> None:
    with jobs_context.db.transaction() as conn:
        conn.execute("CREATE TABLE geo.aoi (id int, geom geometry(Polygon, 4326))")
        conn.execute(
            "INSERT INTO geo.aoi VALUES (1, ST_GeomFromText('POLYGON((5 45, 7 45, 7 47, 5 45))', 4326)),"
            " (2, ST_GeomFromText('POLYGON((20 10, 21 10, 21 11, 20 11, 20 10))', 4326))"
        )
    status = run(jobs_api, "generate_h3_grid", {"resolution": 5, "boundary_table": "geo.aoi"})
    assert status["status"] == "completed", status
    assert status["result_data"]["table"] == "h3.grid_r5"
    got = {r["h3_index"] for r in jobs_context.db.quick("SELECT h3_index FROM h3.grid_r5")}
    areas = [shapely.Polygon([(5, 45), (7, 45), (7, 47)]), shapely.box(20, 10, 21, 11)]
    candidates = {
        c
        for a in areas
        for c in h3.h3shape_to_cells_experimental(h3.geo_to_h3shape(a.buffer(1.0)), 5, contain="overlap")
    }
    expected = {c for c in candidates if any(cells.cell_geometry(c).intersects(a) for a in areas)}
    assert got == expected and len(got) > 50


def test_generate_h3_grid_refuses_too_many_cells_at_submit_with_the_count(jobs_api: str) -> None:
    response = httpx.post(f"{jobs_api}/jobs/submit/generate_h3_grid", json={"resolution": 9}, timeout=30)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert f"{h3.get_num_cells(9):,}" in message and "H3_MAX_CELLS" in message
    big_box = httpx.post(
        f"{jobs_api}/jobs/submit/generate_h3_grid", json={"resolution": 10, "bbox": [0, 0, 20, 20]}, timeout=30
    )
    assert big_box.status_code == 400 and "cells, more than the limit" in big_box.json()["error"]["message"]
    for params, word in (
        ({"resolution": 16}, "resolution"),
        ({"resolution": 3, "bbox": [10, 50, 20]}, "bbox"),
        ({"resolution": 3, "bbox": [10, 50, 20, 40]}, "bbox"),
        ({"resolution": 3, "table": "Robert'); DROP"}, "table"),
        ({"resolution": 3, "boundary_table": "geo.missing"}, "geo.missing"),
        ({"resolution": 3, "boundary_table": "a.b.c"}, "boundary_table"),
    ):
        bad = httpx.post(f"{jobs_api}/jobs/submit/generate_h3_grid", json=params, timeout=30)
        assert bad.status_code == 400, (params, bad.text)
        assert word in bad.text, (params, bad.text)


def test_every_h3_job_with_an_area_checks_its_boundary_table_at_submit(jobs_api: str, jobs_context: AppContext) -> None:
    """A missing table, one without a geometry column and one without an SRID: HTTP 400 naming the table and
    what is wrong, for generate_h3_grid and generate_h3_level4 alike (no job is created)."""
    with jobs_context.db.transaction() as conn:
        conn.execute("CREATE TABLE geo.flat (id int)")
        conn.execute("CREATE TABLE geo.nosrid (id int, geom geometry(Polygon))")
    cases = (
        ("geo.land", "geo.land does not exist"),
        ("geo.flat", "geo.flat has no geometry column"),
        ("nosrid", "geo.nosrid has no SRID"),
    )
    for job_type, extra in (("generate_h3_grid", {"resolution": 3}), ("generate_h3_level4", {})):
        for table, message in cases:
            bad = httpx.post(f"{jobs_api}/jobs/submit/{job_type}", json={**extra, "boundary_table": table}, timeout=30)
            assert bad.status_code == 400, (job_type, table, bad.text)
            error = bad.json()["error"]
            assert message in error["message"] and error["code"] == "invalid_input", (job_type, error)
    assert jobs_context.db.fetch_one("SELECT count(*) AS n FROM geoetl.jobs") == {"n": 0}
