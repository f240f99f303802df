"""STAC items for rasters: footprint in WGS84 (split at the antimeridian), projection, bands, assets.

:func:`build_raster_item` opens any raster rasterio can read and returns a STAC 1.1 Item dict with the
projection (v2.0.0), raster (v1.1.0) and file (v2.1.0) extensions as needed. :func:`file_asset` describes
a finished local file (size and SHA-256 multihash) for an item's assets.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import rasterio
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from shapely.geometry import MultiPolygon, Polygon, box, mapping
from shapely.geometry.polygon import orient

from core.errors import InvalidInput, StorageUnavailable
from infrastructure.storage.base import GdalPath
from services.raster.inspect import is_network_error, is_remote

STAC_VERSION = "1.1.0"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
GEOTIFF_MEDIA_TYPE = "image/tiff; application=geotiff"
PROJECTION_EXTENSION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_EXTENSION = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
FILE_EXTENSION = "https://stac-extensions.github.io/file/v2.1.0/schema.json"

#: STAC ids we accept: they appear in URLs (/collections/{id}/items/{item_id}) and storage paths
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~:-]{0,254}")
#: points per footprint edge when reprojecting the raster's bounds to WGS84
EDGE_POINTS = 21
#: footprint points closer than this to the line through their neighbours are dropped (about 1 cm)
SIMPLIFY_DEGREES = 1e-7
#: statistics are computed on a decimated read whose longer side is at most this many pixels
STATS_MAX_SIDE = 1024

_DATA_TYPES = {
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "float16": "float16",
    "float32": "float32",
    "float64": "float64",
    "complex_int16": "cint16",
    "complex64": "cfloat32",
    "complex128": "cfloat64",
}


def validate_stac_id(value: str, what: str = "item id") -> str:
    """``value`` when it is a usable STAC id (letters, digits and ``._~:-``, at most 255), else InvalidInput."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"invalid {what} {value!r}: use 1 to 255 letters, digits, '.', '_', '~', ':' or '-', "
            "starting with a letter or digit",
            field=what.replace(" ", "_"),
        )
    return value


def default_item_id(blob_name: str) -> str:
    """The item id of a raster blob when none is given (process_raster and ``POST /api/stac/extract``): the
    path without its extension, separators and odd characters as '-', at most 128 characters.

    Only ``<id>.tif`` maps to ``<id>`` as it is; any other name (folders, spaces, another extension or case) gets
    8 hex digits of its SHA-256 appended, so that ``a/b.tif`` and ``a-b.tif``, or ``scene.tif`` and
    ``scene.jp2``, do not become the same item (and the same output paths).
    """
    path = PurePosixPath(blob_name)
    stem = str(path.with_suffix("")) if path.suffix else blob_name
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")
    text = re.sub(r"-{2,}", "-", text)
    text = (text or "raster")[:119].rstrip("-._") or "raster"
    if path.suffix == ".tif" and text == stem:  # not .TIF: scene.tif and scene.TIF are two blobs
        return text
    return f"{text}-{hashlib.sha256(blob_name.encode()).hexdigest()[:8]}"


def now_iso() -> str:
    """The current UTC time as an RFC 3339 string with a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sha256_multihash(path: Path) -> str:
    """The file's SHA-256 as a multihash in hex (``1220`` + the hex digest), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for chunk in iter(lambda: source.read(4 * 1024 * 1024), b""):
            digest.update(chunk)
    return "1220" + digest.hexdigest()


def file_asset(
    path: Path,
    *,
    href: str,
    roles: Sequence[str],
    media_type: str = COG_MEDIA_TYPE,
    title: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An asset for the finished file ``path`` published at ``href``, with ``file:size`` and ``file:checksum``."""
    path = Path(path)
    asset: dict[str, Any] = {"href": href, "type": media_type, "roles": list(roles)}
    if title is not None:
        asset["title"] = title
    asset["file:size"] = path.stat().st_size
    asset["file:checksum"] = sha256_multihash(path)
    if extra:
        asset.update(extra)
    return asset


# -- opening -------------------------------------------------------------------------------------


def _describe(source: GdalPath | str | Path) -> str:
    return source.path if isinstance(source, GdalPath) else str(source)


@contextmanager
def open_raster(source: GdalPath | str | Path) -> Iterator[rasterio.io.DatasetReader]:
    """``source`` opened with rasterio (under the GdalPath's config); unreadable → InvalidInput."""
    path = source.path if isinstance(source, GdalPath) else str(source)
    config = dict(source.config) if isinstance(source, GdalPath) else {}
    with rasterio.Env(**config), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # reported as a clear error below instead
        try:
            dataset = rasterio.open(path)
        except RasterioIOError as exc:
            if (
                isinstance(source, GdalPath) and is_remote(source) and is_network_error(exc)
            ):  # storage down or throttled: worth another attempt
                raise StorageUnavailable(
                    f"{_describe(source)} could not be read from storage: {_first_line(exc)}", source=_describe(source)
                ) from None
            raise InvalidInput(
                f"{_describe(source)} is not a readable raster: {_first_line(exc)}", source=_describe(source)
            ) from None
        with dataset:
            yield dataset


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- footprint -----------------------------------------------------------------------------------


def _ring(bounds: tuple[float, float, float, float], points: int) -> tuple[list[float], list[float]]:
    """The bounds' outline, counter-clockwise, ``points`` per edge, closed."""
    west, south, east, north = bounds
    steps = np.linspace(0.0, 1.0, points, endpoint=False)
    xs = np.concatenate(
        [west + (east - west) * steps, np.full(points, east), east - (east - west) * steps, np.full(points, west)]
    )
    ys = np.concatenate(
        [
            np.full(points, south),
            south + (north - south) * steps,
            np.full(points, north),
            north - (north - south) * steps,
        ]
    )
    return [*xs.tolist(), float(xs[0])], [*ys.tolist(), float(ys[0])]


def _unwrap(lons: Sequence[float]) -> list[float]:
    """Longitudes made continuous: each within 180° of the one before (a crossing goes past ±180)."""
    out = [float(lons[0])]
    for lon in lons[1:]:
        value = float(lon)
        while value - out[-1] > 180.0:
            value -= 360.0
        while value - out[-1] < -180.0:
            value += 360.0
        out.append(value)
    return out


def _normalize_lon(lon: float) -> float:
    return ((lon + 180.0) % 360.0) - 180.0


def _rounded(geometry: dict[str, Any], digits: int = 7) -> dict[str, Any]:
    def walk(value: Any) -> Any:
        if isinstance(value, list | tuple):
            if value and isinstance(value[0], int | float):
                return [round(float(v), digits) for v in value]
            return [walk(v) for v in value]
        return value

    return {"type": geometry["type"], "coordinates": walk(geometry["coordinates"])}


def footprint_wgs84(
    bounds: tuple[float, float, float, float], crs: Any, points: int = EDGE_POINTS
) -> tuple[dict[str, Any], list[float]]:
    """The GeoJSON geometry and bbox in WGS84 of ``bounds`` in ``crs`` (anything pyproj accepts).

    The outline is reprojected densely. When it crosses the antimeridian the geometry is a MultiPolygon
    split at ±180 and the bbox's west is greater than its east (the STAC/GeoJSON rule). An outline round a
    pole becomes the cap of latitudes up to that pole; a pole on the outline is a point of it.
    """
    source = ProjCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    lons, lats = _outline_lonlat(bounds, source, points)
    unwrapped = _close_at_pole(_unwrap(lons), lats)
    if abs(unwrapped[-1] - unwrapped[0]) > 1e-6:  # the outline goes round a pole
        return _polar_cap(lats)
    polygon = Polygon(list(zip(unwrapped, lats, strict=True))).simplify(SIMPLIFY_DEGREES)
    if not polygon.is_valid:
        polygon = polygon.buffer(0)
    west, south, east, north = polygon.bounds
    if west >= -180.0 and east <= 180.0:
        return _rounded(mapping(orient(polygon))), [west, south, east, north]
    if east - west >= 360.0:  # wider than the world: the whole band of latitudes
        whole = box(-180.0, south, 180.0, north)
        return _rounded(mapping(orient(whole))), [-180.0, south, 180.0, north]
    return _split_at_antimeridian(polygon)


def _outline_lonlat(
    bounds: tuple[float, float, float, float], source: ProjCRS, points: int
) -> tuple[list[float], list[float]]:
    """The bounds' outline in longitude and latitude (a pole on it included); InvalidInput when off the globe."""
    xs, ys = _ring(bounds, points)
    if source.equals(ProjCRS.from_epsg(4326), ignore_axis_order=True):
        return xs, [max(-90.0, min(90.0, v)) for v in ys]
    to_source = Transformer.from_crs("EPSG:4326", source, always_xy=True)
    for pole in (90.0, -90.0):
        px, py = to_source.transform(0.0, pole, errcheck=False)
        xs, ys = _with_point_on_outline(xs, ys, float(px), float(py), bounds)
    lons_t, lats_t = Transformer.from_crs(source, "EPSG:4326", always_xy=True).transform(xs, ys, errcheck=False)
    lons, lats = [float(v) for v in lons_t], [float(v) for v in lats_t]
    if not all(math.isfinite(v) for v in (*lons, *lats)) or any(abs(v) > 90.0 + 1e-9 for v in lats):
        raise InvalidInput(
            f"the raster's bounds {list(bounds)} cannot be placed on the globe in its CRS "
            f"({source.to_string()}): they are outside the area the CRS covers",
        )
    return _open_poles(lons, [max(-90.0, min(90.0, v)) for v in lats])


def _with_point_on_outline(
    xs: list[float], ys: list[float], px: float, py: float, bounds: tuple[float, float, float, float]
) -> tuple[list[float], list[float]]:
    """The closed ring with the point (px, py) inserted where it lies on one of its edges (unchanged when the
    point is not on the outline, or is one of its points already)."""
    west, south, east, north = bounds
    tolerance = 1e-9 * max(east - west, north - south)
    if not (math.isfinite(px) and math.isfinite(py)):
        return xs, ys
    on_x_edge = abs(px - west) <= tolerance or abs(px - east) <= tolerance
    on_y_edge = abs(py - south) <= tolerance or abs(py - north) <= tolerance
    inside = west - tolerance <= px <= east + tolerance and south - tolerance <= py <= north + tolerance
    if not (inside and (on_x_edge or on_y_edge)):
        return xs, ys
    for i in range(len(xs) - 1):
        if math.hypot(xs[i] - px, ys[i] - py) <= tolerance:
            return xs, ys
        x0, y0, x1, y1 = xs[i], ys[i], xs[i + 1], ys[i + 1]
        if (
            min(x0, x1) - tolerance <= px <= max(x0, x1) + tolerance
            and min(y0, y1) - tolerance <= py <= max(y0, y1) + tolerance
        ):
            return [*xs[: i + 1], px, *xs[i + 1 :]], [*ys[: i + 1], py, *ys[i + 1 :]]
    return xs, ys


def _open_poles(lons: list[float], lats: list[float]) -> tuple[list[float], list[float]]:
    """A pole on the closed outline has no longitude: it becomes an edge along the pole's latitude from its
    neighbour before to its neighbour after, so the footprint reaches the pole over the right longitudes."""
    out_lons: list[float] = []
    out_lats: list[float] = []
    count = len(lons) - 1  # the last point closes the ring
    for i in range(count):
        if abs(lats[i]) < 90.0 - 1e-9:
            out_lons.append(lons[i])
            out_lats.append(lats[i])
            continue
        before, after = lons[(i - 1) % count], lons[(i + 1) % count]
        out_lons += [before, after]
        out_lats += [lats[i], lats[i]]
    return [*out_lons, out_lons[0]], [*out_lats, out_lats[0]]


def _close_at_pole(unwrapped: list[float], lats: Sequence[float]) -> list[float]:
    """Unwrapped longitudes whose edge along a pole goes the way that closes the ring.

    An edge along the pole (from :func:`_open_poles`) spans 180° either way; :func:`_unwrap` cannot tell
    which. When the ring does not close, the edge goes the other way: the points after it move by 360°.
    """
    if abs(unwrapped[-1] - unwrapped[0]) <= 1e-6:
        return unwrapped
    for k in range(1, len(unwrapped)):
        step = unwrapped[k] - unwrapped[k - 1]
        if abs(lats[k]) >= 90.0 - 1e-9 and abs(lats[k - 1]) >= 90.0 - 1e-9 and abs(abs(step) - 180.0) < 1e-6:
            shifted = [*unwrapped[:k], *(v - math.copysign(360.0, step) for v in unwrapped[k:])]
            if abs(shifted[-1] - shifted[0]) <= 1e-6:
                return shifted
    return unwrapped


def _polar_cap(lats: Sequence[float]) -> tuple[dict[str, Any], list[float]]:
    """The band of all longitudes from the outline's farthest latitude to the pole it goes round."""
    south, north = min(lats), max(lats)
    if north > 0 and abs(north) >= abs(south):
        north = 90.0
    else:
        south = -90.0
    polar = box(-180.0, south, 180.0, north)
    return _rounded(mapping(orient(polar))), [-180.0, south, 180.0, north]


def _split_at_antimeridian(polygon: Polygon) -> tuple[dict[str, Any], list[float]]:
    """A polygon with longitudes past ±180 cut into its parts inside [-180, 180]; the bbox's west > east."""
    west, south, east, north = polygon.bounds
    world = box(-180.0, -90.0, 180.0, 90.0)
    parts: list[Polygon] = []
    for shift in (-360.0, 0.0, 360.0):
        moved = Polygon([(x + shift, y) for x, y in polygon.exterior.coords])
        piece = moved.intersection(world)
        pieces = getattr(piece, "geoms", [piece])
        parts.extend(orient(p) for p in pieces if isinstance(p, Polygon) and not p.is_empty and p.area > 0)
    geometry = MultiPolygon(parts) if len(parts) > 1 else parts[0]
    return _rounded(mapping(geometry)), [_normalize_lon(west), south, _normalize_lon(east), north]


# -- bands ---------------------------------------------------------------------------------------


def _json_number(value: float | int | None) -> float | int | str | None:
    """A nodata value as JSON: NaN and infinities as the raster extension spells them."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    return value


def band_info(dataset: rasterio.io.DatasetReader, statistics: bool = True) -> list[dict[str, Any]]:
    """``raster:bands`` for every band: data type, nodata, resolution, scale/offset, unit, statistics.

    Statistics are exact for rasters up to :data:`STATS_MAX_SIDE` pixels a side and come from a decimated
    read (GDAL picks overviews when present) otherwise; ``valid_percent`` is the share of pixels that are not
    masked by nodata, alpha or the dataset mask (100 when the raster has none).
    """
    stats: list[dict[str, float] | None] = [None] * dataset.count
    if statistics:
        stats = _statistics(dataset)
    bands: list[dict[str, Any]] = []
    resolution = abs(dataset.res[0]) if dataset.res[0] == dataset.res[1] else None
    for index in range(dataset.count):
        band: dict[str, Any] = {"data_type": _DATA_TYPES.get(dataset.dtypes[index], "other")}
        nodata = dataset.nodatavals[index]
        if nodata is not None:
            band["nodata"] = _json_number(nodata)
        if resolution:
            band["spatial_resolution"] = resolution
        scale, offset = dataset.scales[index], dataset.offsets[index]
        if scale not in (None, 1.0):
            band["scale"] = scale
        if offset not in (None, 0.0):
            band["offset"] = offset
        unit = dataset.units[index] if dataset.units else None
        if unit:
            band["unit"] = unit
        if stats[index]:
            band["statistics"] = stats[index]
        bands.append(band)
    return bands


def _statistics(dataset: rasterio.io.DatasetReader) -> list[dict[str, float] | None]:
    height, width = dataset.height, dataset.width
    factor = max(1.0, max(height, width) / STATS_MAX_SIDE)
    shape = (dataset.count, max(1, round(height / factor)), max(1, round(width / factor)))
    try:
        data = dataset.read(out_shape=shape, masked=True)
    except RasterioIOError as exc:
        raise InvalidInput(
            f"{dataset.name} cannot be read (truncated or corrupt?): {_first_line(exc)}", source=dataset.name
        ) from None
    result: list[dict[str, float] | None] = []
    for band in data:
        values = np.ma.masked_invalid(band) if band.dtype.kind in "fc" else band
        valid = values.compressed()
        if band.dtype.kind == "c" or valid.size == 0:
            result.append(None)
            continue
        as_float = valid.astype("float64")
        result.append(
            {
                "minimum": float(as_float.min()),
                "maximum": float(as_float.max()),
                "mean": float(as_float.mean()),
                "stddev": float(as_float.std()),
                "valid_percent": round(100.0 * valid.size / band.size, 4),
            }
        )
    return result


# -- the item ------------------------------------------------------------------------------------


def projection_properties(dataset: rasterio.io.DatasetReader) -> dict[str, Any]:
    """``proj:code`` (or ``proj:wkt2`` when the CRS has no authority code), shape, transform and bbox."""
    crs = dataset.crs
    props: dict[str, Any] = {}
    authority = crs.to_authority() if crs is not None else None
    if authority is not None:
        props["proj:code"] = f"{authority[0]}:{authority[1]}"
    else:
        props["proj:code"] = None
        props["proj:wkt2"] = ProjCRS.from_user_input(crs.to_wkt()).to_wkt()
    props["proj:shape"] = [dataset.height, dataset.width]
    props["proj:transform"] = [float(v) for v in list(dataset.transform)[:6]]
    props["proj:bbox"] = [float(v) for v in dataset.bounds]
    return props


def _rfc3339(value: datetime) -> str:
    """``value`` in UTC as RFC 3339 (a naive value is taken as UTC), the fraction only when there is one."""
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def _parse_tag_time(value: str) -> datetime | None:
    """A TIFF (``2024:05:01 10:00:00``) or ISO 8601 date-time from a metadata tag; None when unreadable."""
    text = value.strip()
    for parse in (lambda t: datetime.strptime(t, "%Y:%m:%d %H:%M:%S"), datetime.fromisoformat):
        try:
            return parse(text.replace("Z", "+00:00"))
        except ValueError:
            continue
    return None


def source_datetime(dataset: rasterio.io.DatasetReader) -> str | None:
    """When the raster says it was acquired or made: GDAL's ``IMAGERY`` ``ACQUISITIONDATETIME``, else
    ``TIFFTAG_DATETIME`` (both read as UTC when they carry no zone); None when it says neither."""
    candidates = [dataset.tags(ns="IMAGERY").get("ACQUISITIONDATETIME"), dataset.tags().get("TIFFTAG_DATETIME")]
    for value in candidates:
        parsed = _parse_tag_time(value) if value else None
        if parsed is not None:
            return _rfc3339(parsed)
    return None


def _fallback_time(source: GdalPath | str | Path, given: datetime | str | None) -> str | None:
    """The caller's fallback (e.g. the blob's last-modified time), else a local file's modification time."""
    if isinstance(given, datetime):
        return _rfc3339(given)
    if isinstance(given, str):
        parsed = _parse_tag_time(given)
        if parsed is None:
            raise InvalidInput(f"fallback_datetime {given!r} is not an RFC 3339 date-time")
        return _rfc3339(parsed)
    if not isinstance(source, GdalPath):
        try:
            return _rfc3339(datetime.fromtimestamp(os.stat(source).st_mtime, UTC))
        except OSError:  # a GDAL path such as /vsicurl/...: no local file to ask
            return None
    return None


def _media_type(path: str, driver: str) -> str:
    if driver == "GTiff" or path.lower().endswith((".tif", ".tiff")):
        return GEOTIFF_MEDIA_TYPE
    known = {"PNG": "image/png", "JPEG": "image/jpeg", "JP2OpenJPEG": "image/jp2", "netCDF": "application/netcdf"}
    return known.get(driver, "application/octet-stream")


def _is_raster_asset(asset: Mapping[str, Any]) -> bool:
    media = str(asset.get("type", ""))
    roles = asset.get("roles") or []
    return media.startswith(("image/tiff", "image/jp2", "application/x-hdf", "application/netcdf")) or (
        "data" in roles and not media
    )


def build_raster_item(
    source: GdalPath | str | Path,
    *,
    item_id: str,
    collection_id: str,
    assets: Mapping[str, Mapping[str, Any]] | None = None,
    links: Sequence[Mapping[str, Any]] = (),
    properties: Mapping[str, Any] | None = None,
    statistics: bool = True,
    fallback_datetime: datetime | str | None = None,
) -> dict[str, Any]:
    """A STAC 1.1 Item for the raster at ``source`` (see the module docstring).

    ``assets`` are finished asset dicts (e.g. from :func:`file_asset`); raster assets without
    ``raster:bands`` get the source's. None: one ``data`` asset pointing at the source itself.
    A raster without a CRS, or one rasterio cannot read, is InvalidInput.

    ``datetime`` is, in this order: ``properties["datetime"]`` (or a start/end pair), the raster's own
    acquisition or TIFF date-time (:func:`source_datetime`), ``fallback_datetime`` (callers pass the blob's
    last-modified time), a local file's modification time, and only then the current time. So building the
    item of the same unchanged raster again gives the same ``datetime``. ``created`` and ``updated`` are the
    build time; :func:`services.stac.catalog.upsert_item` keeps the stored ``created`` of an item it replaces.
    """
    validate_stac_id(item_id)
    validate_stac_id(collection_id, "collection id")
    with open_raster(source) as dataset:
        if dataset.crs is None:
            raise InvalidInput(
                f"{_describe(source)} has no CRS: a STAC item needs the raster's position on the globe",
                source=_describe(source),
            )
        geometry, bbox = footprint_wgs84(tuple(dataset.bounds), dataset.crs)
        projection = projection_properties(dataset)
        bands = band_info(dataset, statistics)
        when = source_datetime(dataset)
        driver = dataset.driver
    stamp = now_iso()
    if when is None and not (properties and ("datetime" in properties or "start_datetime" in properties)):
        when = _fallback_time(source, fallback_datetime)
    props: dict[str, Any] = {"datetime": when or stamp, **projection, "created": stamp, "updated": stamp}
    if properties:
        props.update(properties)
        if "start_datetime" in properties and "end_datetime" in properties and "datetime" not in properties:
            props["datetime"] = None
    if assets is None:
        href = _describe(source)
        item_assets: dict[str, dict[str, Any]] = {
            "data": {"href": href, "type": _media_type(href, driver), "roles": ["data"]}
        }
    else:
        item_assets = {key: dict(value) for key, value in assets.items()}
    for asset in item_assets.values():
        if "raster:bands" not in asset and _is_raster_asset(asset):
            asset["raster:bands"] = [dict(b) for b in bands]
    item_links = [dict(link) for link in links]
    if not any(link.get("rel") == "collection" for link in item_links):
        item_links.append({"rel": "collection", "href": f"../../{collection_id}", "type": "application/json"})
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": stac_extensions_for(props, item_assets),
        "id": item_id,
        "collection": collection_id,
        "geometry": geometry,
        "bbox": [round(v, 7) for v in bbox],
        "properties": props,
        "links": item_links,
        "assets": item_assets,
    }


def stac_extensions_for(properties: Mapping[str, Any], assets: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The schema URLs of the extensions whose fields ``properties`` and ``assets`` use."""
    fields = set(properties)
    for asset in assets.values():
        fields.update(asset)
    used = []
    if any(f.startswith("proj:") for f in fields):
        used.append(PROJECTION_EXTENSION)
    if any(f.startswith("raster:") for f in fields):
        used.append(RASTER_EXTENSION)
    if any(f.startswith("file:") for f in fields):
        used.append(FILE_EXTENSION)
    return used
