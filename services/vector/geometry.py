"""Geometry rules of ingest_vector, vectorised with shapely: parse, linearise curves, repair or skip invalid
geometries, reproject, promote to Multi*, sort into families, and encode as WKB (M dropped, Z kept).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from core.errors import InvalidInput

FAMILIES = ("points", "lines", "polygons")  # family codes 1, 2, 3; 0 = no geometry
MULTI_TYPES = {"points": "MultiPoint", "lines": "MultiLineString", "polygons": "MultiPolygon"}
_FAMILY_OF_TYPE = np.array([1, 2, 2, 3, 1, 2, 3, 0], dtype=np.int8)  # shapely type ids 0..7
ARC_STEP_DEGREES = 4.0  # as GDAL's default for linearising arcs


def resolve_crs(text: str, field: str) -> CRS:
    """A CRS from user input (EPSG:xxxx, WKT, PROJJSON, proj string); InvalidInput naming ``field``."""
    try:
        return CRS.from_user_input(text)
    except CRSError as exc:
        raise InvalidInput(f"{field} {text[:200]!r} is not a CRS pyproj understands: {exc}", field=field) from exc


def srid_of(crs: CRS, field: str) -> int:
    """The EPSG code PostGIS stores for ``crs``; InvalidInput when it has none."""
    if crs.equals(CRS.from_epsg(4326)) or crs.equals(CRS.from_user_input("OGC:CRS84")):
        return 4326
    code = crs.to_epsg()
    if code is None:
        raise InvalidInput(f"{field} has no EPSG code; PostGIS tables need one (e.g. EPSG:3857)", field=field)
    return int(code)


def transformer_for(source: CRS, target: CRS) -> Transformer | None:
    """An always-x/y transformer, or None when no reprojection is needed."""
    if source.equals(target) or (srid_of_safe(source) == 4326 and srid_of_safe(target) == 4326):
        return None
    return Transformer.from_crs(source, target, always_xy=True)


def srid_of_safe(crs: CRS) -> int | None:
    try:
        return srid_of(crs, "crs")
    except InvalidInput:
        return None


# --- parsing, with curves linearised -------------------------------------------------------------------


class _WkbReader:
    """A small WKB reader for the geometry types shapely refuses (curves, surfaces), giving linear geometries."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _unpack(self, fmt: str, size: int) -> tuple[Any, ...]:
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def _header(self) -> tuple[str, int, int, bool]:
        order = "<" if self.data[self.pos] == 1 else ">"
        self.pos += 1
        (code,) = self._unpack(order + "I", 4)
        z = bool(code & 0x80000000)
        m = bool(code & 0x40000000)
        if code & 0x20000000:
            self.pos += 4  # EWKB SRID
        code &= 0x0FFFFFFF
        iso, base = divmod(code, 1000)
        z = z or iso in (1, 3)
        m = m or iso in (2, 3)
        return order, base, 2 + int(z) + int(m), z

    def _points(self, order: str, dims: int, z: bool) -> list[tuple[float, ...]]:
        (count,) = self._unpack(order + "I", 4)
        values = self._unpack(f"{order}{count * dims}d", 8 * count * dims)
        keep = 3 if z else 2
        return [tuple(values[i * dims : i * dims + keep]) for i in range(count)]

    def read(self) -> tuple[str, Any, bool]:
        """(kind, payload, has_z): kind is 'point', 'line' (coords), 'polygon' (rings) or 'multi' (parts)."""
        order, base, dims, z = self._header()
        if base == 1:
            values = self._unpack(f"{order}{dims}d", 8 * dims)
            return "point", tuple(values[: 3 if z else 2]), z
        if base == 2:
            return "line", self._points(order, dims, z), z
        if base == 8:
            return "line", linearise_arcs(self._points(order, dims, z)), z
        if base in (3, 17):  # polygon, triangle
            (rings,) = self._unpack(order + "I", 4)
            return "polygon", [self._points(order, dims, z) for _ in range(rings)], z
        (count,) = self._unpack(order + "I", 4)
        parts = [self.read() for _ in range(count)]
        if base == 9:  # compound curve: its parts joined end to end
            coords: list[tuple[float, ...]] = []
            for _, part, _ in parts:
                coords.extend(part if not coords else part[1:])
            return "line", coords, z
        if base == 10:  # curve polygon: rings may be curves
            return "polygon", [part for _, part, _ in parts], z
        return "multi", parts, z


def linearise_arcs(points: list[tuple[float, ...]], step_degrees: float = ARC_STEP_DEGREES) -> list[tuple[float, ...]]:
    """The vertices of a circular string (arcs through every three points) as a line string."""
    if len(points) < 3:
        return list(points)
    out: list[tuple[float, ...]] = [points[0]]
    for i in range(0, len(points) - 2, 2):
        out.extend(_arc(points[i], points[i + 1], points[i + 2], step_degrees)[1:])
    return out


def _arc(
    p0: tuple[float, ...], p1: tuple[float, ...], p2: tuple[float, ...], step_degrees: float
) -> list[tuple[float, ...]]:
    (x0, y0), (x1, y1), (x2, y2) = p0[:2], p1[:2], p2[:2]
    if (x0, y0) == (x2, y2):  # a full circle through p0 and p1
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        sweep = 2 * math.pi
    else:
        d = 2 * (x0 * (y1 - y2) + x1 * (y2 - y0) + x2 * (y0 - y1))
        if abs(d) < 1e-12 * max(1.0, abs(x0) + abs(y0) + abs(x2) + abs(y2)) ** 2:
            return [p0, p1, p2]  # collinear: straight segments
        s0, s1, s2 = x0 * x0 + y0 * y0, x1 * x1 + y1 * y1, x2 * x2 + y2 * y2
        cx = (s0 * (y1 - y2) + s1 * (y2 - y0) + s2 * (y0 - y1)) / d
        cy = (s0 * (x2 - x1) + s1 * (x0 - x2) + s2 * (x1 - x0)) / d
        a0, a1, a2 = (math.atan2(y - cy, x - cx) for x, y in ((x0, y0), (x1, y1), (x2, y2)))
        ccw = (a2 - a0) % (2 * math.pi)
        sweep = ccw if (a1 - a0) % (2 * math.pi) < ccw else ccw - 2 * math.pi
    radius = math.hypot(x0 - cx, y0 - cy)
    start = math.atan2(y0 - cy, x0 - cx)
    steps = max(2, math.ceil(abs(sweep) / math.radians(step_degrees)))
    has_z = len(p0) > 2
    result: list[tuple[float, ...]] = []
    for k in range(steps + 1):
        t = k / steps
        angle = start + sweep * t
        point: tuple[float, ...] = (cx + radius * math.cos(angle), cy + radius * math.sin(angle))
        if has_z:
            point = (*point, p0[2] + (p2[2] - p0[2]) * t)
        result.append(point)
    result[-1] = p2 if not has_z else (p2[0], p2[1], p2[2])
    return result


def _build(kind: str, payload: Any) -> shapely.Geometry:
    if kind == "point":
        return shapely.Point(payload)
    if kind == "line":
        return shapely.LineString(payload)
    if kind == "polygon":
        return shapely.Polygon(payload[0], payload[1:]) if payload else shapely.Polygon()
    parts = [_build(k, p) for k, p, _ in payload]
    kinds = {k for k, _, _ in payload}
    if kinds == {"point"}:
        return shapely.MultiPoint(parts)
    if kinds == {"line"}:
        return shapely.MultiLineString(parts)
    if kinds == {"polygon"}:
        return shapely.MultiPolygon(parts)
    return shapely.GeometryCollection(parts)


def parse_curved(data: bytes) -> shapely.Geometry:
    """A WKB geometry with curves, linearised."""
    kind, payload, _ = _WkbReader(data).read()
    return _build(kind, payload)


def parse_wkb(wkb: pa.Array) -> tuple[np.ndarray, int]:
    """Shapely geometries (None for missing) and the number of unreadable WKB values (also None)."""
    values = wkb.to_numpy(zero_copy_only=False)
    try:
        return shapely.from_wkb(values, on_invalid="raise"), 0
    except (NotImplementedError, shapely.errors.GEOSException):
        pass
    out = np.empty(len(values), dtype=object)
    unreadable = 0
    for i, value in enumerate(values):
        if value is None:
            continue
        try:
            out[i] = shapely.from_wkb(value)
        except NotImplementedError:
            try:
                out[i] = parse_curved(bytes(value))
            except (struct.error, ValueError, IndexError, shapely.errors.GEOSException):
                unreadable += 1
        except shapely.errors.GEOSException:
            unreadable += 1
    return out, unreadable


# --- the rules ------------------------------------------------------------------------------------------


@dataclass
class Processed:
    wkb: pa.Array  # Multi* geometries as WKB, null for none (or skipped)
    family: np.ndarray  # int8: 0 none, 1 points, 2 lines, 3 polygons
    has_z: np.ndarray  # bool, the same for every row of a family in one batch
    keep: np.ndarray  # bool: False for skipped rows
    repaired: int
    skipped: int
    bounds: np.ndarray  # (n, 6): xmin, ymin, xmax, ymax, then xmin and xmax with longitudes in 0..360; NaN: none


def _family_part(geom: shapely.Geometry, family: int) -> shapely.Geometry | None:
    """The parts of ``geom`` of one family, as one geometry (None when there are none)."""
    parts = [p for p in shapely.get_parts(geom) if p is not None and not p.is_empty]
    flat: list[shapely.Geometry] = []
    for part in parts:
        if shapely.get_type_id(part) == 7:
            flat.extend(shapely.get_parts(part))
        else:
            flat.append(part)
    chosen = [p for p in flat if _FAMILY_OF_TYPE[shapely.get_type_id(p)] == family]
    if not chosen:
        return None
    return shapely.union_all(chosen) if family == 3 and len(chosen) > 1 else shapely.GeometryCollection(chosen)


def _collection_family(geom: shapely.Geometry) -> int:
    """The highest-dimension family among a collection's parts (its other parts are dropped)."""
    codes = [int(_FAMILY_OF_TYPE[shapely.get_type_id(p)]) for p in shapely.get_parts(geom) if not p.is_empty]
    codes = [c for c in codes if c]
    return max(codes) if codes else 0


def _to_multi(geom: shapely.Geometry | None, family: int) -> shapely.Geometry | None:
    if geom is None or geom.is_empty:
        return None
    parts: list[shapely.Geometry] = []
    for part in shapely.get_parts(geom):
        kind = shapely.get_type_id(part)
        if kind in (4, 5, 6, 7):
            parts.extend(shapely.get_parts(part))
        else:
            parts.append(part)
    parts = [p for p in parts if _FAMILY_OF_TYPE[shapely.get_type_id(p)] == family and not p.is_empty]
    if not parts:
        return None
    if family == 1:
        return shapely.MultiPoint(parts)
    if family == 2:
        return shapely.MultiLineString(parts)
    return shapely.MultiPolygon(parts)


# --- the antimeridian ------------------------------------------------------------------------------------


def antimeridian_rows(geoms: np.ndarray) -> np.ndarray:
    """Indices of the lines and polygons (in longitude/latitude) with an edge that crosses the antimeridian: two
    consecutive vertices of a ring or line more than 180° of longitude apart (179 → -179). An edge from exactly
    180 to exactly -180 (how a ring around a pole is closed) is not a crossing."""
    bounds = shapely.bounds(geoms) if len(geoms) else np.empty((0, 4))
    wide = np.flatnonzero(bounds[:, 2] - bounds[:, 0] > 180)  # only these can have such an edge
    if not len(wide):
        return np.empty(0, dtype=np.int64)
    parts, owner = shapely.get_parts(geoms[wide], return_index=True)
    owner = wide[owner]
    kinds = shapely.get_type_id(parts)
    lines = np.flatnonzero(np.isin(kinds, (1, 2)))
    polygons = np.flatnonzero(kinds == 3)
    rings, ring_part = shapely.get_rings(parts[polygons], return_index=True)
    paths = np.concatenate([parts[lines], rings])
    path_owner = np.concatenate([owner[lines], owner[polygons][ring_part]])
    if not len(paths):
        return np.empty(0, dtype=np.int64)
    coords, index = shapely.get_coordinates(paths, return_index=True)
    x0, x1 = coords[:-1, 0], coords[1:, 0]
    jump = (index[:-1] == index[1:]) & (np.abs(x1 - x0) > 180) & ~((np.abs(x0) == 180) & (np.abs(x1) == 180))
    return np.unique(path_owner[index[:-1][jump]])


def split_at_antimeridian(geom: shapely.Geometry, family: int) -> shapely.Geometry | None:
    """A line or polygon whose edges cross the antimeridian as the short way round (179 → 181 rather than across
    the whole globe), cut at ±180 into a Multi* with its parts on either side (what RFC 7946 asks of GeoJSON)."""

    def shift(coords: np.ndarray) -> np.ndarray:
        out = coords.copy()
        out[:, 0] = np.where(out[:, 0] < 0, out[:, 0] + 360, out[:, 0])
        return out

    shifted = shapely.transform(geom, shift, include_z=None)
    west = shapely.intersection(shifted, shapely.box(-180, -1e3, 180, 1e3))
    east = shapely.transform(
        shapely.intersection(shifted, shapely.box(180, -1e3, 540, 1e3)),
        lambda c: np.column_stack([c[:, 0] - 360, c[:, 1:]]),
        include_z=None,
    )
    return _to_multi(_family_part(shapely.GeometryCollection([west, east]), family), family)


def process(
    geoms: np.ndarray,
    *,
    transformer: Transformer | None,
    invalid: str,
    unreadable: int = 0,
    geographic: bool = False,
) -> Processed:
    """Apply the rules to one batch: split at the antimeridian (``geographic``: longitude/latitude coordinates),
    repair (or skip) invalid, reproject, promote to Multi*, classify. ``geoms`` is not changed."""
    geoms, family = _classified(geoms)
    keep = np.ones(len(geoms), dtype=bool)
    skipped = unreadable
    if geographic:
        skipped += _split_antimeridian(geoms, family, keep)
    repaired, dropped = _repaired(geoms, family, keep, invalid)
    skipped += dropped
    if transformer is not None:
        _reproject(geoms, np.flatnonzero(keep & (family > 0)), transformer)
    skipped += _promoted(geoms, family, keep)
    family[~keep] = 0
    geoms[~keep] = None
    wkb, has_z, bounds = _encoded(geoms, family)
    return Processed(wkb, family, has_z, keep, repaired, skipped, bounds)


def _classified(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A copy of the batch (missing and empty geometries as None, a collection reduced to its highest-dimension
    family's parts) and each row's family code (0: no geometry)."""
    n = len(geoms)
    present = ~shapely.is_missing(geoms)
    present[present] = ~shapely.is_empty(geoms[present])
    geoms = geoms.copy()
    geoms[~present] = None
    type_ids = np.full(n, -1, dtype=np.int64)
    type_ids[present] = shapely.get_type_id(geoms[present])
    family = np.zeros(n, dtype=np.int8)
    family[present] = _FAMILY_OF_TYPE[np.clip(type_ids[present], 0, 7)]
    for i in np.flatnonzero(type_ids == 7):
        family[i] = _collection_family(geoms[i])
        geoms[i] = _family_part(geoms[i], int(family[i])) if family[i] else None
        if geoms[i] is None:
            family[i] = 0
    return geoms, family


def _split_antimeridian(geoms: np.ndarray, family: np.ndarray, keep: np.ndarray) -> int:
    """Lines and polygons with edges across the antimeridian cut there (in place); how many were dropped."""
    dropped = 0
    shaped = np.flatnonzero(family > 1)
    for i in shaped[antimeridian_rows(geoms[shaped])]:
        geoms[i] = split_at_antimeridian(geoms[i], int(family[i]))
        if geoms[i] is None:
            keep[i] = False
            dropped += 1
    return dropped


def _repaired(geoms: np.ndarray, family: np.ndarray, keep: np.ndarray, invalid: str) -> tuple[int, int]:
    """Invalid geometries made valid (``repair``, keeping their family's parts) or dropped (``skip``, or nothing
    left of the family after repair), in place: (repaired, dropped)."""
    repaired = dropped = 0
    rows = np.flatnonzero((family > 0) & keep)
    if len(rows):
        rows = rows[~shapely.is_valid(geoms[rows])]
    made = shapely.make_valid(geoms[rows]) if invalid != "skip" and len(rows) else None  # one call for all
    for k, i in enumerate(rows):
        fixed = None if made is None else _family_part(made[k], int(family[i]))
        if fixed is None or fixed.is_empty:
            keep[i] = False
            dropped += 1
        else:
            geoms[i] = fixed
            repaired += 1
    return repaired, dropped


def _reproject(geoms: np.ndarray, rows: np.ndarray, transformer: Transformer) -> None:
    if not len(rows):
        return
    moved = shapely.transform(geoms[rows], _projector(transformer), include_z=None)
    bad = ~np.isfinite(shapely.bounds(moved)).all(axis=1)
    if bad.any():
        raise InvalidInput(
            f"{int(bad.sum())} geometries cannot be reprojected to the target CRS (outside its area of use)"
        )
    geoms[rows] = moved


def _promoted(geoms: np.ndarray, family: np.ndarray, keep: np.ndarray) -> int:
    """Every kept geometry as the Multi* of its family, in place; how many were dropped (nothing left)."""
    dropped = 0
    live = np.flatnonzero(keep & (family > 0))
    current = shapely.get_type_id(geoms[live]) if len(live) else np.empty(0, dtype=np.int64)
    for code, make in ((1, shapely.multipoints), (2, shapely.multilinestrings), (3, shapely.multipolygons)):
        rows = live[np.isin(current, (0, 1, 2, 3)) & (family[live] == code)]
        if len(rows):
            geoms[rows] = make(geoms[rows], indices=np.arange(len(rows)))
    for i in live[current == 7]:
        geoms[i] = _to_multi(geoms[i], int(family[i]))
        if geoms[i] is None:
            keep[i] = False
            dropped += 1
    return dropped


def _encoded(geoms: np.ndarray, family: np.ndarray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(WKB, has Z, extents) per row; a family's rows are Z when any of them is (the others get z = 0)."""
    n = len(geoms)
    has_z = np.zeros(n, dtype=bool)
    out = np.empty(n, dtype=object)
    for code in (1, 2, 3):
        rows = np.flatnonzero(family == code)
        if len(rows):
            z = bool(shapely.has_z(geoms[rows]).any())
            has_z[rows] = z
            out[rows] = encode_wkb(geoms[rows], z).to_numpy(zero_copy_only=False)
    bounds = np.full((n, 6), np.nan)
    live = np.flatnonzero(family > 0)
    if len(live):
        bounds[live] = extents(geoms[live])
    return pa.array(out, type=pa.binary()), has_z, bounds


def process_wkb(wkb: pa.Array, *, transformer: Transformer | None, invalid: str, geographic: bool = False) -> Processed:
    """The rules applied to a batch of WKB: the byte-level fast path when it applies, else through shapely."""
    if transformer is None:
        fast = _fast_path(wkb, geographic, invalid)
        if fast is not None:
            return fast
    geoms, unreadable = parse_wkb(wkb)
    return process(geoms, transformer=transformer, invalid=invalid, unreadable=unreadable, geographic=geographic)


_MULTI_OF = np.array([0, 4, 5, 6, 4, 5, 6], dtype=np.uint32)  # WKB base type -> its Multi type
_WKB_FAMILY = np.array([0, 1, 2, 3, 1, 2, 3], dtype=np.int8)  # WKB base type -> family


def _fast_path(wkb: pa.Array, geographic: bool = False, invalid: str | None = None) -> Processed | None:
    """Promotion to Multi* by prefixing the WKB (no parsing) for a batch of little-endian 2D or Z points, lines and
    polygons, all of one dimensionality; lines and polygons are still checked (valid, not empty) with GEOS.
    The rows that are invalid or cross the antimeridian (``geographic``) go through the general rules on their
    own (``invalid``: repair or skip; None: the whole batch is left to the general path), the rest keep their WKB.
    None when the batch needs the general path (curves, collections, M, mixed dimensions, empty geometries)."""
    if isinstance(wkb, pa.ChunkedArray):
        wkb = wkb.combine_chunks()
    if not pa.types.is_binary(wkb.type):
        return None
    n = len(wkb)
    _, offsets_buf, data_buf = wkb.buffers()
    if data_buf is None:
        return None
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[wkb.offset : wkb.offset + n + 1].astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    present = np.asarray(wkb.is_valid()) & (lengths >= 5)
    rows = np.flatnonzero(present)
    if (lengths[~present] > 0).any():
        return None  # a short, unreadable value
    if len(rows) == 0:
        return None
    heads = starts[rows]
    if (data[heads] != 1).any():
        return None  # big-endian: general path
    codes = (
        data[heads + 1].astype(np.uint32)
        | (data[heads + 2].astype(np.uint32) << 8)
        | (data[heads + 3].astype(np.uint32) << 16)
        | (data[heads + 4].astype(np.uint32) << 24)
    )
    z = codes >= 1000
    base = codes % 1000
    if not (((codes >= 1) & (codes <= 6)) | ((codes >= 1001) & (codes <= 1006))).all() or z.any() != z.all():
        return None
    is_z = bool(z.all())
    family = np.zeros(n, dtype=np.int8)
    family[rows] = _WKB_FAMILY[base]
    if (base == 1).any():  # an empty point is written with NaN coordinates
        points = rows[base == 1]
        x = data[(starts[points][:, None] + 5 + np.arange(8)).ravel()].view(np.float64)
        if np.isnan(x).any():
            return None
    bounds = np.full((n, 6), np.nan)
    points = rows[base == 1]
    if len(points):  # x and y sit at fixed offsets of a point's WKB
        xy = data[(starts[points][:, None] + 5 + np.arange(16)).ravel()].view("<f8").reshape(-1, 2)
        bounds[points] = np.column_stack(
            [xy, xy, np.where(xy[:, 0] < 0, xy[:, 0] + 360, xy[:, 0])[:, None].repeat(2, 1)]
        )
    shaped = rows[base != 1]
    special = np.empty(0, dtype=np.int64)  # positions in ``shaped`` of the rows that need the general rules
    if len(shaped):
        values = wkb if len(shaped) == n else wkb.take(pa.array(shaped))
        geoms = shapely.from_wkb(values.to_numpy(zero_copy_only=False), on_invalid="ignore")
        if shapely.is_missing(geoms).any() or shapely.is_empty(geoms).any():
            return None  # unreadable or empty rows: the general path
        checked = np.flatnonzero(base[base != 1] != 4)  # points (multi or not) are valid by construction
        if len(checked):
            special = checked[~shapely.is_valid(geoms[checked])]  # invalid rows: repaired or skipped
        if geographic:
            special = np.union1d(special, antimeridian_rows(geoms))  # rows to split at the antimeridian
        if len(special) and invalid is None:
            return None
        plain = np.ones(len(shaped), dtype=bool)
        plain[special] = False
        bounds[shaped[plain]] = extents(geoms[plain])
    base_all = _base_of(codes, rows, n)
    padded = np.flatnonzero(np.isin(base_all, (1, 2, 3)) & present)
    prefix = np.zeros((len(padded), 9), dtype=np.uint8)
    prefix[:, 0] = 1
    multi = (_MULTI_OF[base_all[padded]] + (1000 if is_z else 0)).astype("<u4")
    prefix[:, 1:5] = multi.view(np.uint8).reshape(-1, 4)
    prefix[:, 5] = 1  # one part
    prefix_lengths = np.zeros(n, dtype=np.int32)
    prefix_lengths[padded] = 9
    prefix_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(prefix_lengths, out=prefix_offsets[1:])
    prefixes = pa.BinaryArray.from_buffers(
        pa.binary(), n, [None, pa.py_buffer(prefix_offsets.tobytes()), pa.py_buffer(prefix.tobytes())]
    )
    # the Multi header, then the single geometry as its one part (nulls stay null)
    result = pc.binary_join_element_wise(prefixes, wkb, pa.scalar(b"", pa.binary()))
    has_z = present & is_z
    keep = np.ones(n, dtype=bool)
    if not len(special):
        return Processed(result, family, has_z, keep, 0, 0, bounds)
    assert invalid is not None
    done = process(geoms[special], transformer=None, invalid=invalid, geographic=geographic)
    if (done.has_z[done.keep] != is_z).any():
        return None  # a repair changed the dimensionality: the general path decides the family's Z
    where = shaped[special]
    mask = np.zeros(n, dtype=bool)
    mask[where] = True
    result = pc.replace_with_mask(result, pa.array(mask), done.wkb)  # in row order, nulls for dropped rows
    family[where], has_z[where], keep[where], bounds[where] = done.family, done.has_z, done.keep, done.bounds
    return Processed(result, family, has_z, keep, done.repaired, done.skipped, bounds)


def extents(geoms: np.ndarray) -> np.ndarray:
    """Per geometry: its bounds, and its x range with longitudes moved to 0..360 (meaningful in degrees only):
    the vertices of geometries that straddle x = 0 are shifted one by one."""
    out = np.empty((len(geoms), 6))
    out[:, :4] = shapely.bounds(geoms)
    west, east = out[:, 0], out[:, 2]
    out[:, 4] = np.where(west < 0, west + 360, west)
    out[:, 5] = np.where(east < 0, east + 360, east)
    straddle = np.flatnonzero((west < 0) & (east >= 0))
    if len(straddle):
        coords, index = shapely.get_coordinates(geoms[straddle], return_index=True)
        shifted = np.where(coords[:, 0] < 0, coords[:, 0] + 360, coords[:, 0])
        low = np.full(len(straddle), np.inf)
        high = np.full(len(straddle), -np.inf)
        np.minimum.at(low, index, shifted)
        np.maximum.at(high, index, shifted)
        out[straddle, 4], out[straddle, 5] = low, high
    return out


def _base_of(codes: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    base = np.zeros(n, dtype=np.uint32)
    base[rows] = codes % 1000
    return base


def _projector(transformer: Transformer) -> Callable[[np.ndarray], np.ndarray]:
    def project(coords: np.ndarray) -> np.ndarray:
        if coords.shape[1] == 3:
            x, y, z = transformer.transform(coords[:, 0], coords[:, 1], coords[:, 2])
            return np.column_stack([x, y, z])
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return project


def encode_wkb(geoms: np.ndarray, z: bool) -> pa.Array:
    """ISO/extended WKB of each geometry (None stays null), in 3 dimensions for a Z table (2D rows get z = 0)."""
    out = np.empty(len(geoms), dtype=object)
    present = ~shapely.is_missing(geoms)
    if present.any():
        values = geoms[present]
        if z:
            flat = ~shapely.has_z(values)
            if flat.any():
                values = values.copy()
                values[flat] = shapely.force_3d(values[flat])
        out[present] = shapely.to_wkb(values, output_dimension=3 if z else 2)
    return pa.array(out, type=pa.binary())


_HEX = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), dtype=np.uint16)


def hex_strings(binary: pa.Array) -> pa.Array:
    """A binary array as lower-case hex strings (nulls kept), without a Python loop."""
    if isinstance(binary, pa.ChunkedArray):
        binary = binary.combine_chunks()
    if pa.types.is_large_binary(binary.type):
        binary = binary.cast(pa.binary())
    n = len(binary)
    validity, offsets_buf, data_buf = binary.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[binary.offset : binary.offset + n + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(data_buf, dtype=np.uint8)[start:end] if data_buf is not None else np.empty(0, np.uint8)
    hexed = _HEX[data]  # two ASCII bytes per input byte
    new_offsets = ((offsets - start) * 2).astype(np.int32)
    if validity is not None and binary.offset:
        validity = pa.array(binary.is_valid()).buffers()[1]
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(new_offsets.tobytes()), pa.py_buffer(hexed.tobytes()), validity, binary.null_count
    )
