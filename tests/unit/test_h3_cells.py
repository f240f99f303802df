"""H3 cells as rows: antimeridian and pole handling, EWKB, areas and planning (no database)."""

from __future__ import annotations

import h3
import pytest
import shapely
from shapely.geometry import MultiPolygon

from core.errors import InvalidInput
from services.h3 import cells


@pytest.mark.parametrize("resolution", [0, 1, 2])
def test_every_cell_is_a_valid_multipolygon_within_the_globe_and_they_tile_it(resolution: int) -> None:
    area = 0.0
    for parent in cells.res0_cells():
        for cell in cells.descendants(parent, [resolution]):
            geom = cells.cell_geometry(cell)
            assert geom.is_valid, cell
            west, south, east, north = geom.bounds
            assert west >= -180 and east <= 180 and south >= -90 and north <= 90, cell
            area += geom.area
    # in planar lon/lat the cells cover 360 x 180 degrees exactly once (no overlap, no gap)
    assert area == pytest.approx(64800.0, rel=1e-12)


def test_a_cell_across_the_antimeridian_is_split_into_two_parts_at_plus_minus_180() -> None:
    cell = h3.latlng_to_cell(-16.5, 179.95, 3)
    lons = [lng for _, lng in h3.cell_to_boundary(cell)]
    assert max(lons) > 179 and min(lons) < -179  # H3's ring jumps across the antimeridian
    geom = cells.cell_geometry(cell)
    assert len(geom.geoms) == 2 and geom.is_valid
    east, west = sorted(geom.geoms, key=lambda p: -p.bounds[0])
    assert east.bounds[2] == 180.0 and west.bounds[0] == -180.0
    assert east.bounds[0] > 170 and west.bounds[2] < -170  # two small pieces, not a band around the globe
    assert geom.covers(shapely.Point(179.95, -16.5))


@pytest.mark.parametrize("lat", [90.0, -90.0])
def test_pole_cells_reach_the_pole_across_all_longitudes(lat: float) -> None:
    for resolution in (0, 1, 3):
        cell = h3.latlng_to_cell(lat, 0.0, resolution)
        geom = cells.cell_geometry(cell)
        assert geom.is_valid and len(geom.geoms) == 1
        west, south, east, north = geom.bounds
        assert (west, east) == (-180.0, 180.0)
        assert (north if lat > 0 else south) == lat
        for lon in (-179.9, -90, 0, 90, 179.9):
            assert geom.covers(shapely.Point(lon, lat * 0.99999)), (resolution, lon)


def test_rows_have_text_and_integer_index_parent_and_ewkb() -> None:
    parent = cells.res0_cells()[5]
    rows = list(cells.rows_for(parent, [0, 1]))
    assert len(rows) == 1 + len(h3.cell_to_children(parent, 1))
    top, child = rows[0], rows[1]
    assert (top.resolution, top.parent_index, top.split_cell) == (0, None, parent)
    assert (child.resolution, child.parent_index, child.split_cell) == (1, parent, parent)
    assert child.h3_int == int(child.h3_index, 16) and 0 < child.h3_int < 2**63
    geom = shapely.from_wkb(bytes.fromhex(child.geom_hex))
    assert isinstance(geom, MultiPolygon) and shapely.get_srid(geom) == 4326
    assert geom.equals(cells.cell_geometry(child.h3_index))
    line = next(cells.copy_text(rows[:1])).decode()
    assert line.split("\t")[:5] == [parent, str(top.h3_int), "0", "\\N", parent]


def test_counts_per_resolution() -> None:
    assert [cells.cell_count(r) for r in (0, 1, 4)] == [122, 842, 288_122]
    with pytest.raises(InvalidInput, match="resolution"):
        cells.cell_count(16)


def test_bbox_parsing_and_antimeridian_parts() -> None:
    box = cells.BBox.parse([170, -20, -170, -10])
    assert box.parts() == [(170, -20, 180.0, -10), (-180.0, -20, -170, -10)]
    assert cells.bbox_area_m2(box) == pytest.approx(cells.bbox_area_m2(cells.BBox.parse([-10, -20, 10, -10])), rel=1e-9)
    for bad in ([1, 2, 3], [0, 10, 5, 5], [0, 0, 0, 5], [0, 0, 200, 5], [0, -91, 5, 5], [0, 0, float("nan"), 1]):
        with pytest.raises(InvalidInput, match="bbox"):
            cells.BBox.parse(bad)


def test_bbox_counts_and_covering_cells_include_every_overlapping_child() -> None:
    box = cells.BBox.parse([5.0, 45.0, 7.0, 47.0])
    exact = cells.count_cells_in_bbox(box, 5, limit=300)  # near the limit: counted exactly
    assert exact == len(h3.h3shape_to_cells_experimental(box.shapes()[0], 5, contain="overlap"))
    assert 0.8 < exact / cells.estimate_cells_in_area(cells.bbox_area_m2(box), 5) < 1.5
    parents = cells.covering_cells(box, 2)
    children = {c for p in parents for c in h3.cell_to_children(p, 5)}
    planar = shapely.box(5, 45, 7, 47)
    overlapping = {c for c in children if cells.cell_geometry(c).intersects(planar)}
    # every res-5 cell whose outline meets the box is under one of the planned parents
    ring = {c for c in h3.grid_disk(h3.latlng_to_cell(46, 6, 5), 40) if cells.cell_geometry(c).intersects(planar)}
    assert ring <= overlapping
    huge = cells.count_cells_in_bbox(cells.BBox.parse([-180, -90, 180, 90]), 10, limit=1000)
    assert huge > 4000


def test_split_resolution_and_groups() -> None:
    assert cells.split_resolution(4, 20_000) == 0
    assert cells.split_resolution(8, 20_000) == 3  # 7**5 = 16,807 cells a split cell
    assert cells.split_resolution(8, 100) == 6
    groups = cells.group_split_cells(cells.res0_cells(), [0, 1, 2], 1000)
    assert sum(len(g) for g in groups) == 122 and all(len(g) <= 17 for g in groups)
    assert cells.group_split_cells([], [1], 10) == []
    assert len(cells.split_cells(1, None)) == 842


@pytest.mark.parametrize("resolution", range(16))
def test_cells_near_the_poles_and_the_antimeridian_are_valid_at_every_resolution(resolution: int) -> None:
    centres = [h3.latlng_to_cell(lat, lon, resolution) for lat, lon in ((90, 0), (-90, 0), (10, 180), (-40, -180))]
    for cell in {c for centre in centres for c in h3.grid_disk(centre, 2)}:
        geom = cells.cell_geometry(cell)
        assert geom.is_valid, (cell, shapely.is_valid_reason(geom))
        west, south, east, north = geom.bounds
        assert west >= -180 and east <= 180 and south >= -90 and north <= 90, cell
        lat, lng = h3.cell_to_latlng(cell)
        assert geom.distance(shapely.Point(lng, lat)) < 1e-9, cell  # the cell's centre is in its polygon


def test_a_vertex_exactly_on_the_pole_becomes_a_stretch_of_the_pole_line() -> None:
    cell = "8ff29380e0d0cc4"  # a resolution-15 cell with a vertex on the south pole
    assert any(lat == -90.0 for lat, _ in h3.cell_to_boundary(cell))
    geom = cells.cell_geometry(cell)
    assert geom.is_valid and geom.bounds[1] == -90.0


def _cells_of_points_inside(box: cells.BBox, resolution: int, lon_step: float, lats: list[float]) -> set[str]:
    """The cells at ``resolution`` of a grid of points inside ``box`` (each such cell overlaps the box)."""
    found: set[str] = set()
    for w, _, e, _ in box.parts():
        steps = int((e - w) / lon_step)
        for i in range(steps + 1):
            lon = min(w + i * lon_step, e - 1e-6)
            found.update(h3.latlng_to_cell(lat, lon, resolution) for lat in lats)
    return found


def test_a_box_wider_than_180_degrees_covers_its_whole_width() -> None:
    box = cells.BBox.parse([-170, -10, 170, 10])  # 340° wide, not the 20° strip across the antimeridian
    assert all(len(s.outer) >= 4 for s in box.shapes()) and len(box.shapes()) == 4
    parents = set(cells.covering_cells(box, 1))
    inside = _cells_of_points_inside(box, 3, 0.5, [-9.99, -5.0, 0.0, 5.0, 9.99])
    assert {h3.cell_to_parent(c, 1) for c in inside} <= parents
    assert h3.latlng_to_cell(0.0, 0.0, 1) in parents
    # the exact count (near the limit) agrees with the area and includes every cell a point inside falls in
    estimate = cells.estimate_cells_in_area(cells.bbox_area_m2(box), 3)
    exact = cells.count_cells_in_bbox(box, 3, limit=estimate)
    assert 0.9 < exact / estimate < 1.2
    found = {c for s in box.shapes() for c in h3.h3shape_to_cells_experimental(s, 3, contain="overlap")}
    assert inside <= found and len(found) == exact


@pytest.mark.parametrize(
    "bbox", [[-175.0, 75.0, 175.0, 89.0], [-180.0, 80.0, 180.0, 90.0], [-100.0, 60.0, 100.0, 62.0]]
)
def test_high_latitude_boxes_are_covered_along_their_parallels(bbox: list[float]) -> None:
    box = cells.BBox.parse(bbox)
    _, south, _, north = bbox
    lats = [south + 1e-6, south + 0.01, (south + north) / 2, north - 0.01, north - 1e-6]
    inside = _cells_of_points_inside(box, 4, 0.25, lats)
    parents = set(cells.covering_cells(box, 2))
    assert {h3.cell_to_parent(c, 2) for c in inside} <= parents
    estimate = cells.estimate_cells_in_area(cells.bbox_area_m2(box), 4)
    found = {c for s in box.shapes() for c in h3.h3shape_to_cells_experimental(s, 4, contain="overlap")}
    assert inside <= found
    assert 0.9 < len(found) / estimate < 1.5
