"""Geometry rules of ingest_vector (services/vector/geometry.py): no database, shapely on generated values."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon

from core.errors import InvalidInput
from core.settings import VectorSettings
from services.vector.geometry import (
    _fast_path,
    hex_strings,
    linearise_arcs,
    parse_curved,
    process_wkb,
    resolve_crs,
    srid_of,
    transformer_for,
)
from services.vector.ingest import choose_chunk_size


def wkb_array(geoms: list[shapely.Geometry | None], flavor: str = "iso") -> pa.Array:
    values = [None if g is None else shapely.to_wkb(g, flavor=flavor) for g in geoms]
    return pa.array(values, pa.binary())


def decoded(result: pa.Array) -> list[Any]:
    return list(shapely.from_wkb(result.to_numpy(zero_copy_only=False)))


def square(x: float = 0, y: float = 0) -> Polygon:
    return Polygon([(x, y), (x + 1, y), (x + 1, y + 1), (x, y + 1)])


def test_fast_path_promotes_by_prefix_and_matches_the_general_path() -> None:
    geoms = [Point(1, 2), None, LineString([(0, 0), (1, 1)]), square(), shapely.MultiPoint([(1, 1), (2, 2)])]
    fast = _fast_path(wkb_array(geoms))
    assert fast is not None
    assert list(fast.family) == [1, 0, 2, 3, 1]
    assert [g.geom_type if g else None for g in decoded(fast.wkb)] == [
        "MultiPoint",
        None,
        "MultiLineString",
        "MultiPolygon",
        "MultiPoint",
    ]
    general = process_wkb(wkb_array(geoms), transformer=resolve_dummy(), invalid="repair")
    for a, b in zip(decoded(fast.wkb), decoded(general.wkb), strict=True):
        assert (a is None and b is None) or a.equals(b)


def resolve_dummy() -> Any:
    """A transformer that changes nothing, to force the general path."""
    return transformer_for(resolve_crs("EPSG:4326", "x"), resolve_crs("EPSG:4326", "y")) or _Identity()


class _Identity:
    def transform(self, x: np.ndarray, y: np.ndarray, z: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        return (x, y) if z is None else (x, y, z)


def test_fast_path_declines_what_needs_the_general_path() -> None:
    bowtie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
    assert _fast_path(wkb_array([bowtie])) is None  # invalid: repaired by the general path
    assert _fast_path(wkb_array([Point(1, 2), Point(1, 2, 3)])) is None  # mixed dimensions
    assert _fast_path(wkb_array([shapely.GeometryCollection([Point(1, 1)])])) is None
    big_endian = pa.array([shapely.to_wkb(Point(1, 2), byte_order=0)], pa.binary())
    assert _fast_path(big_endian) is None
    sliced = _fast_path(wkb_array([Point(0, 0), Point(5, 6), square(3, 3)]).slice(1))
    assert sliced is not None and decoded(sliced.wkb)[0].equals(shapely.MultiPoint([(5, 6)]))


@pytest.mark.parametrize("invalid", ["repair", "skip"])
@pytest.mark.parametrize("z", [False, True])
def test_fast_path_sends_only_its_invalid_and_antimeridian_rows_through_the_general_rules(
    invalid: str, z: bool
) -> None:
    bowtie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
    flat = Polygon([(0, 0), (1, 1), (2, 2)])  # nothing of the family left after repair: dropped
    crossing = Polygon([(179, 0), (-179, 0), (-179, 1), (179, 1)])  # cut at the antimeridian
    geoms = [square(), bowtie, None, square(5, 5), flat, crossing, square(9, 9)]
    if z:
        geoms = [None if g is None else shapely.force_3d(g, 7) for g in geoms]
    fast = _fast_path(wkb_array(geoms), geographic=True, invalid=invalid)
    general = process_wkb(wkb_array(geoms), transformer=resolve_dummy(), invalid=invalid, geographic=True)
    assert fast is not None
    assert (fast.repaired, fast.skipped) == (general.repaired, general.skipped)
    assert (fast.repaired, fast.skipped) == ((1, 1) if invalid == "repair" else (0, 2))
    assert list(fast.family) == list(general.family) and list(fast.keep) == list(general.keep)
    assert list(fast.has_z) == list(general.has_z)
    np.testing.assert_allclose(fast.bounds, general.bounds)
    for a, b in zip(decoded(fast.wkb), decoded(general.wkb), strict=True):
        assert (a is None and b is None) or (a.geom_type == b.geom_type and a.equals(b) and a.has_z == b.has_z == z)
    assert decoded(fast.wkb)[5].geom_type == "MultiPolygon" and len(decoded(fast.wkb)[5].geoms) == 2


def test_invalid_polygons_repaired_or_skipped() -> None:
    bowtie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
    flat = Polygon([(0, 0), (1, 1), (2, 2)])
    repaired = process_wkb(wkb_array([bowtie, square(), flat]), transformer=None, invalid="repair")
    assert (repaired.repaired, repaired.skipped) == (1, 1)
    fixed = decoded(repaired.wkb)
    assert fixed[0].geom_type == "MultiPolygon" and fixed[0].is_valid and fixed[0].area == pytest.approx(2.0)
    assert fixed[2] is None and list(repaired.keep) == [True, True, False]

    skipped = process_wkb(wkb_array([bowtie, square()]), transformer=None, invalid="skip")
    assert (skipped.repaired, skipped.skipped) == (0, 1) and list(skipped.family) == [0, 3]


def test_z_kept_m_dropped_and_a_family_has_one_dimensionality() -> None:
    m_line = shapely.from_wkt("LINESTRING M (0 0 5, 1 1 6)")
    zm_point = shapely.from_wkt("POINT ZM (1 2 3 4)")
    result = process_wkb(wkb_array([m_line, zm_point, Point(7, 8)]), transformer=None, invalid="repair")
    line, point, flat_point = decoded(result.wkb)
    assert not shapely.has_z(line) and not shapely.has_m(line)
    assert shapely.has_z(point) and not shapely.has_m(point)
    assert point.geoms[0].z == 3
    assert shapely.has_z(flat_point) and flat_point.geoms[0].z == 0  # the point family is Z: 2D rows get z = 0
    assert list(result.has_z) == [False, True, True]


def test_collections_keep_their_highest_dimension_family() -> None:
    mixed = shapely.GeometryCollection([Point(9, 9), square(), square(5, 5)])
    result = process_wkb(wkb_array([mixed]), transformer=None, invalid="repair")
    assert list(result.family) == [3]
    assert decoded(result.wkb)[0].equals(MultiPolygon([square(), square(5, 5)]))


def test_curves_are_linearised() -> None:
    arc = struct.pack("<BII", 1, 8, 3) + struct.pack("<6d", 0, 0, 1, 1, 2, 0)
    line = parse_curved(arc)
    assert line.geom_type == "LineString" and len(line.coords) > 10
    radius = np.hypot(np.array(line.coords)[:, 0] - 1, np.array(line.coords)[:, 1])
    assert np.allclose(radius, 1.0)
    assert line.coords[0] == (0, 0) and line.coords[-1] == (2, 0)
    assert max(y for _, y in line.coords) == pytest.approx(1.0, abs=1e-3)  # through the middle point

    compound = struct.pack("<BII", 1, 9, 2) + arc + shapely.to_wkb(LineString([(2, 0), (3, 0)]), flavor="iso")
    joined = parse_curved(compound)
    assert joined.coords[-1] == (3, 0) and joined.coords[0] == (0, 0)

    ring = struct.pack("<BII", 1, 8, 3) + struct.pack("<6d", 0, 0, 2, 0, 0, 0)  # a full circle
    polygon = parse_curved(struct.pack("<BII", 1, 10, 1) + ring)
    assert polygon.geom_type == "Polygon" and polygon.area == pytest.approx(np.pi, rel=0.01)

    result = process_wkb(pa.array([arc], pa.binary()), transformer=None, invalid="repair")
    assert decoded(result.wkb)[0].geom_type == "MultiLineString"


def test_collinear_arc_is_straight() -> None:
    assert linearise_arcs([(0, 0), (1, 0), (2, 0)]) == [(0, 0), (1, 0), (2, 0)]


def test_reprojection_and_crs_rules() -> None:
    to_mercator = transformer_for(resolve_crs("EPSG:4326", "s"), resolve_crs("EPSG:3857", "t"))
    result = process_wkb(wkb_array([Point(1, 0)]), transformer=to_mercator, invalid="repair")
    assert decoded(result.wkb)[0].geoms[0].x == pytest.approx(111319.49, abs=0.01)
    assert transformer_for(resolve_crs("OGC:CRS84", "s"), resolve_crs("EPSG:4326", "t")) is None
    assert srid_of(resolve_crs("EPSG:3857", "t"), "target_crs") == 3857
    with pytest.raises(InvalidInput, match="target_crs"):
        resolve_crs("not a crs", "target_crs")
    with pytest.raises(InvalidInput, match="no EPSG code"):
        srid_of(resolve_crs("+proj=merc +lon_0=13.37 +datum=WGS84", "t"), "target_crs")


def test_hex_strings_of_binary_with_nulls_and_offsets() -> None:
    array = pa.array([b"\x00\xff", None, b"", b"\x10\x20\x30"], pa.binary())
    assert hex_strings(array).to_pylist() == ["00ff", None, "", "102030"]
    assert hex_strings(array.slice(1)).to_pylist() == [None, "", "102030"]


def test_chunk_size_is_chosen_within_bounds() -> None:
    settings = VectorSettings(vector_chunk_rows_min=1000, vector_chunk_rows_max=100_000, vector_chunk_target_count=8)
    assert choose_chunk_size(500, settings) == 1000
    assert choose_chunk_size(80_000, settings) == 10_000
    assert choose_chunk_size(10_000_000, settings) == 100_000
    assert choose_chunk_size(-1, settings) == 100_000


def test_extents_of_both_paths_and_across_the_antimeridian() -> None:
    geoms = [Point(-179.5, 1), square(179, 2), MultiPolygon([square(179, 0), square(-180, 0)])]
    fast = _fast_path(wkb_array(geoms))
    general = process_wkb(wkb_array(geoms), transformer=resolve_dummy(), invalid="repair")
    assert fast is not None
    for result in (fast, general):
        assert result.bounds[0].tolist() == [-179.5, 1, -179.5, 1, 180.5, 180.5]
        assert result.bounds[1].tolist() == [179, 2, 180, 3, 179, 180]
        assert result.bounds[2].tolist() == [-180, 0, 180, 1, 179, 181]  # straddles: vertex by vertex


def test_edges_across_the_antimeridian_are_cut_there_in_geographic_coordinates() -> None:
    """A ring 179.5 → -179.5 is the 1°x1° square the short way round (not a 359° strip); a line across keeps its Z
    (interpolated at the cut); parts already split at ±180 and rings closed along ±180 (around a pole) are kept."""
    crossing = shapely.from_wkt("POLYGON((179.5 -20, -179.5 -20, -179.5 -19, 179.5 -19, 179.5 -20))")
    route = shapely.from_wkt("LINESTRING Z(179 -18 5, -179 -18.5 7)")
    split = shapely.from_wkt(
        "MULTIPOLYGON(((179 -17, 180 -17, 180 -16, 179 -16, 179 -17)),"
        "((-180 -17, -179 -17, -179 -16, -180 -16, -180 -17)))"
    )
    polar = shapely.from_wkt("POLYGON((-180 -90, 180 -90, 180 -80, -180 -80, -180 -90))")
    done = process_wkb(wkb_array([crossing, route, split, polar]), transformer=None, invalid="repair", geographic=True)
    square, line, kept, pole = (shapely.from_wkb(w) for w in done.wkb.to_pylist())
    assert square.geom_type == "MultiPolygon" and len(square.geoms) == 2 and square.area == pytest.approx(1.0)
    assert square.bounds == (-180, -20, 180, -19)
    assert line.geom_type == "MultiLineString" and len(line.geoms) == 2 and line.length == pytest.approx(2.0, abs=0.1)
    assert shapely.get_coordinates(line, include_z=True)[1].tolist() == pytest.approx([180, -18.25, 6])
    assert shapely.equals(kept, split) and shapely.equals(pole, polar)
    # in a projected CRS nothing is cut; the fast path (no transformer) hands such a batch to the general path
    flat = process_wkb(wkb_array([crossing]), transformer=None, invalid="repair", geographic=False)
    assert shapely.from_wkb(flat.wkb[0].as_py()).area == pytest.approx(359.0)
