"""H3 cells as rows: index (text and 64-bit integer), resolution, parent, and an EPSG:4326 MultiPolygon.

Pure functions (no database). A cell's boundary from :func:`h3.cell_to_boundary` is a ring of
(lat, lng) vertices. Most cells become a one-part MultiPolygon as they are. A cell whose ring
crosses the antimeridian is unwrapped to continuous longitudes, cut at ±180 and the pieces shifted
back into [-180, 180] (a MultiPolygon of two parts, never a polygon wrapping the globe). A cell that
contains a pole winds once around it: its unwrapped ring is closed along the pole's latitude (±90)
and cut the same way, which gives one valid polygon spanning -180..180 up to the pole.

Geometries are written as hex EWKB (SRID 4326), the text form PostGIS reads in ``COPY``.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import h3
import shapely
from shapely.affinity import translate
from shapely.geometry import MultiPolygon, Polygon, box

from core.errors import InvalidInput

SRID = 4326
MAX_RESOLUTION = 15
_EWKB_MULTIPOLYGON = 6 | 0x20000000  # type 6 with the SRID flag
_WINDOWS = tuple((box(-180.0 + 360.0 * k, -90.0, 180.0 + 360.0 * k, 90.0), -360.0 * k) for k in (-1, 0, 1))

Ring = list[tuple[float, float]]  # (x = longitude, y = latitude), closed


@dataclass(frozen=True)
class CellRow:
    """One row of an H3 table."""

    h3_index: str
    h3_int: int
    resolution: int
    parent_index: str | None
    split_cell: str
    geom_hex: str  # hex EWKB MultiPolygon, SRID 4326


def check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 0 <= resolution <= MAX_RESOLUTION:
        raise InvalidInput(f"invalid H3 resolution {resolution!r}: must be an integer from 0 to {MAX_RESOLUTION}")
    return resolution


def res0_cells() -> list[str]:
    """The 122 resolution-0 cells in index order."""
    return sorted(h3.get_res0_cells())


def cell_count(resolution: int) -> int:
    """How many cells the whole globe has at ``resolution`` (122 at 0, 842 at 1, 288,122 at 4)."""
    return int(h3.get_num_cells(check_resolution(resolution)))


def _unwrap(boundary: Sequence[tuple[float, float]]) -> tuple[list[float], float]:
    """Continuous longitudes along the ring, and the total winding (0, or ±360 around a pole)."""
    lons = [boundary[0][1]]
    winding = 0.0
    for i in range(1, len(boundary) + 1):
        step = boundary[i % len(boundary)][1] - boundary[i - 1][1]
        if step > 180.0:
            step -= 360.0
        elif step < -180.0:
            step += 360.0
        winding += step
        if i < len(boundary):
            lons.append(lons[-1] + step)
    return lons, winding


def _open_pole_vertices(boundary: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """A vertex exactly on a pole has no meaningful longitude: in lon/lat it is the stretch of the pole's line
    between its neighbours' longitudes, so it becomes two vertices there."""
    if all(abs(lat) < 90.0 for lat, _ in boundary):
        return list(boundary)
    n = len(boundary)
    opened: list[tuple[float, float]] = []
    for i, (lat, lng) in enumerate(boundary):
        if abs(lat) < 90.0:
            opened.append((lat, lng))
        else:
            opened += [(lat, boundary[i - 1][1]), (lat, boundary[(i + 1) % n][1])]
    return opened


def cell_polygons(cell: str) -> list[Ring]:
    """The cell's outline as one or more closed rings within [-180, 180] x [-90, 90]."""
    boundary = _open_pole_vertices(h3.cell_to_boundary(cell))
    lons = [lng for _, lng in boundary]
    if max(lons) - min(lons) <= 180.0:  # the common case: no antimeridian, no pole
        ring = [(lng, lat) for lat, lng in boundary]
        ring.append(ring[0])
        return [ring]
    unwrapped, winding = _unwrap(boundary)
    if abs(winding) > 180.0:  # the ring goes once around a pole
        return [_pole_ring(cell, boundary, winding)]
    ring = [(x, lat) for x, (lat, _) in zip(unwrapped, boundary, strict=True)]
    ring.append(ring[0])
    polygon = Polygon(ring)
    pieces: list[Polygon] = []
    for window, shift in _WINDOWS:
        part = polygon.intersection(window)
        if not part.is_empty:
            pieces.extend(_polygons(translate(part, xoff=shift)))
    return [_ring(p) for p in pieces]


def _pole_ring(cell: str, boundary: Sequence[tuple[float, float]], winding: float) -> Ring:
    """The ring of a cell around a pole: its vertices from just after the antimeridian to just before it, then
    along ±180 to the pole and back on the other side."""
    n = len(boundary)
    jump = next(i for i in range(n) if abs(boundary[(i + 1) % n][1] - boundary[i][1]) > 180.0)
    ordered = [boundary[(jump + 1 + k) % n] for k in range(n)]  # starts after the crossing edge, ends before it
    (lat_last, lon_last), (lat_first, lon_first) = ordered[-1], ordered[0]
    side = 180.0 if winding > 0 else -180.0
    target = lon_first + 2 * side  # the first vertex, unwrapped past the antimeridian
    t = (side - lon_last) / (target - lon_last)
    lat_cross = lat_last + t * (lat_first - lat_last)
    pole = 90.0 if h3.cell_to_latlng(cell)[0] > 0 else -90.0
    ring = [(lng, lat) for lat, lng in ordered]
    ring += [(side, lat_cross), (side, pole), (-side, pole), (-side, lat_cross), ring[0]]
    return ring


def _polygons(geom: shapely.Geometry) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [] if geom.is_empty or geom.area == 0 else [geom]
    return [p for g in getattr(geom, "geoms", ()) for p in _polygons(g)]


def _ring(polygon: Polygon) -> Ring:
    # Cells are simply connected and the windows are rectangles: no holes can appear.
    return [(float(x), float(y)) for x, y in polygon.exterior.coords]


def multipolygon_ewkb(rings: Sequence[Ring]) -> bytes:
    """A MultiPolygon of single-ring polygons as little-endian EWKB with SRID 4326."""
    parts = [struct.pack("<BIII", 1, _EWKB_MULTIPOLYGON, SRID, len(rings))]
    for ring in rings:
        flat = [c for point in ring for c in point]
        parts.append(struct.pack(f"<BIII{len(flat)}d", 1, 3, 1, len(ring), *flat))
    return b"".join(parts)


def cell_geometry(cell: str) -> MultiPolygon:
    """The cell's MultiPolygon as a shapely geometry (for checks and tests)."""
    return MultiPolygon([Polygon(r) for r in cell_polygons(cell)])


def cell_row(cell: str, split_cell: str, rings: Sequence[Ring] | None = None) -> CellRow:
    resolution = h3.get_resolution(cell)
    return CellRow(
        h3_index=cell,
        h3_int=h3.str_to_int(cell),
        resolution=resolution,
        parent_index=h3.cell_to_parent(cell, resolution - 1) if resolution > 0 else None,
        split_cell=split_cell,
        geom_hex=multipolygon_ewkb(cell_polygons(cell) if rings is None else rings).hex(),
    )


def descendants(parent: str, resolutions: Iterable[int]) -> Iterator[str]:
    """The parent's cells at each of ``resolutions`` (the parent itself at its own resolution), in index order."""
    own = h3.get_resolution(parent)
    for resolution in resolutions:
        if resolution == own:
            yield parent
        elif resolution > own:
            yield from sorted(h3.cell_to_children(parent, resolution))


def rows_for(parent: str, resolutions: Iterable[int], area: BBox | None = None) -> Iterator[CellRow]:
    """Rows for the cells under ``parent`` at ``resolutions``, tagged with ``parent`` as their split cell; with
    ``area`` only the cells whose polygons intersect it (in planar lon/lat, as PostGIS ``ST_Intersects``)."""
    for cell in descendants(parent, resolutions):
        rings = cell_polygons(cell)
        if area is None or area.intersects(rings):
            yield cell_row(cell, parent, rings)


def copy_text(rows: Iterable[CellRow]) -> Iterator[bytes]:
    """``COPY ... FROM STDIN`` text-format lines (no value needs escaping: hex, digits and H3 strings)."""
    for row in rows:
        parent = row.parent_index if row.parent_index is not None else "\\N"
        yield (f"{row.h3_index}\t{row.h3_int}\t{row.resolution}\t{parent}\t{row.split_cell}\t{row.geom_hex}\n").encode(
            "ascii"
        )


# -- areas: which cells, and how many --------------------------------------------------------------------


@dataclass(frozen=True)
class BBox:
    """A longitude/latitude box; ``west > east`` crosses the antimeridian."""

    west: float
    south: float
    east: float
    north: float

    @classmethod
    def parse(cls, values: Sequence[float], field: str = "bbox") -> BBox:
        if len(values) != 4:
            raise InvalidInput(f"{field} must be [west, south, east, north]", field=field)
        west, south, east, north = (float(v) for v in values)
        if not all(math.isfinite(v) for v in (west, south, east, north)):
            raise InvalidInput(f"{field} values must be finite numbers", field=field)
        if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south < north <= 90):
            raise InvalidInput(
                f"{field} {list(values)} is not a longitude/latitude box: need -180 <= west, east <= 180 and "
                "-90 <= south < north <= 90 (west > east crosses the antimeridian)",
                field=field,
            )
        if west == east:
            raise InvalidInput(f"{field} has no width (west == east)", field=field)
        return cls(west, south, east, north)

    def parts(self) -> list[tuple[float, float, float, float]]:
        """The box as one or two boxes that do not cross the antimeridian."""
        if self.west < self.east:
            return [(self.west, self.south, self.east, self.north)]
        return [(self.west, self.south, 180.0, self.north), (-180.0, self.south, self.east, self.north)]

    def intersects(self, rings: Sequence[Ring]) -> bool:
        """Whether a cell's polygons meet the box in planar lon/lat (touching counts, as in ``ST_Intersects``)."""
        for w, s, e, n in self.parts():
            for ring in rings:
                xs = [x for x, _ in ring]
                ys = [y for _, y in ring]
                if max(xs) < w or min(xs) > e or max(ys) < s or min(ys) > n:
                    continue  # the bounds are apart
                if min(xs) >= w and max(xs) <= e and min(ys) >= s and max(ys) <= n:
                    return True  # the bounds are inside the box
                if shapely.intersects(Polygon(ring), box(w, s, e, n)):
                    return True
        return False

    def shapes(self) -> list[h3.LatLngPoly]:
        """The box as H3 polygons: pieces at most 90° wide with a vertex at least every degree along each edge.

        H3 reads an edge spanning more than 180° of longitude as the short way round (a box from -170 to 170
        would become the 20° strip across the antimeridian), and its edges are not lines of latitude; short,
        narrow pieces keep the polygons what the box means in lon/lat (the margin in :func:`covering_cells`
        absorbs what is left)."""
        shapes: list[h3.LatLngPoly] = []
        for w, s, e, n in (_shrink(p) for p in self.parts()):
            pieces = max(1, math.ceil((e - w) / MAX_PIECE_WIDTH - 1e-9))
            edges = [w + (e - w) * k / pieces for k in range(pieces)] + [e]
            for left, right in itertools.pairwise(edges):
                shapes.append(h3.LatLngPoly(_box_ring(left, s, right, n)))
        return shapes


MAX_PIECE_WIDTH = 90.0  # degrees of longitude in one H3 polygon
VERTEX_SPACING = 1.0  # degrees between vertices along a box edge


def _steps(start: float, stop: float) -> list[float]:
    """``start`` and the points about every VERTEX_SPACING degrees towards ``stop`` (``stop`` excluded)."""
    count = max(1, math.ceil(abs(stop - start) / VERTEX_SPACING))
    return [start + (stop - start) * k / count for k in range(count)]


def _box_ring(w: float, s: float, e: float, n: float) -> list[tuple[float, float]]:
    """The open ring of a box as (lat, lng), counter-clockwise, with intermediate vertices along every edge."""
    ring = [(s, x) for x in _steps(w, e)]  # south edge, west to east
    ring += [(y, e) for y in _steps(s, n)]  # east edge, south to north
    ring += [(n, x) for x in _steps(e, w)]  # north edge, east to west
    ring += [(y, w) for y in _steps(n, s)]  # west edge, north to south
    return ring


def _shrink(part: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """H3 treats an edge exactly on ±180 / ±90 ambiguously: keep the shape a hair inside."""
    w, s, e, n = part
    eps = 1e-9
    return max(w, -180 + eps), max(s, -90 + eps), min(e, 180 - eps), min(n, 90 - eps)


def covering_cells(area: BBox, resolution: int) -> list[str]:
    """Cells at ``resolution`` whose (spherical) outline overlaps the box, plus their neighbours (a margin that
    makes sure every child of them that overlaps the box in planar lon/lat is among their descendants)."""
    found: set[str] = set()
    for shape in area.shapes():
        found.update(h3.h3shape_to_cells_experimental(shape, resolution, contain="overlap"))
    if resolution == 0 and len(found) > 60:
        return res0_cells()
    margin: set[str] = set()
    for cell in found:
        margin.update(h3.grid_disk(cell, 1))
    return sorted(found | margin)


def estimate_cells_in_area(area_m2: float, resolution: int) -> int:
    """About how many cells at ``resolution`` cover an area (area over the average cell area, plus 1)."""
    return int(area_m2 / h3.average_hexagon_area(check_resolution(resolution), unit="m^2")) + 1


def count_cells_in_bbox(area: BBox, resolution: int, limit: int) -> int:
    """Cells at ``resolution`` overlapping the box: exact near ``limit`` (where it decides), else the area estimate
    (far below or far above it, so a huge request is refused without listing its cells)."""
    estimate = estimate_cells_in_area(bbox_area_m2(area), resolution)
    if estimate > 2 * limit or estimate < limit // 4:
        return estimate
    found: set[str] = set()
    for shape in area.shapes():
        found.update(h3.h3shape_to_cells_experimental(shape, resolution, contain="overlap"))
    return len(found)


def bbox_area_m2(area: BBox) -> float:
    """The box's area on the authalic sphere (as H3 computes areas)."""
    radius = 6371007.180918475
    total = 0.0
    for w, s, e, n in area.parts():
        total += radius**2 * math.radians(e - w) * (math.sin(math.radians(n)) - math.sin(math.radians(s)))
    return total


def split_resolution(resolution: int, cells_per_task: int) -> int:
    """The coarser resolution whose cells become the tasks: about ``cells_per_task`` descendants each."""
    depth = max(0, int(math.log(max(cells_per_task, 1), 7)))
    return max(0, resolution - depth)


def split_cells(split_res: int, area: BBox | None) -> list[str]:
    """The cells at ``split_res`` whose descendants may meet ``area`` (all of them without an area)."""
    if area is not None:
        return covering_cells(area, split_res)
    if split_res == 0:
        return res0_cells()
    return sorted(c for p in res0_cells() for c in h3.cell_to_children(p, split_res))


def group_split_cells(cells: Sequence[str], resolutions: Sequence[int], cells_per_task: int) -> list[list[str]]:
    """Consecutive groups of split cells, each about ``cells_per_task`` descendants (at least one cell a group)."""
    if not cells:
        return []
    own = h3.get_resolution(cells[0])
    per_cell = sum(7 ** (r - own) for r in resolutions if r >= own)
    size = max(1, cells_per_task // max(per_cell, 1))
    return [list(cells[i : i + size]) for i in range(0, len(cells), size)]
