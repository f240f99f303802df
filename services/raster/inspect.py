"""Validation facts about a source raster, and the choices they imply for each COG tier.

:func:`inspect_raster` opens a raster (a local path or a ``GdalPath`` under ``/vsiaz/``) and returns a
:class:`RasterFacts`: size, data type, bands, nodata, colour interpretation, CRS (or the ``input_crs`` given
for a file without one), bounds checked for plausibility, the raster type (detected, and checked against a
declared one), whether it already is a valid COG, a size estimate, and which tiers can be made. Anything
that makes the file unusable raises ``InvalidInput`` with a message a user can act on.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import rasterio
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from pyproj.exceptions import CRSError as ProjCRSError
from rasterio.enums import ColorInterp
from rasterio.errors import CRSError, NotGeoreferencedWarning, RasterioIOError
from rasterio.io import DatasetReader
from rasterio.warp import calculate_default_transform
from rio_cogeo.cogeo import cog_validate

from core.errors import GeoetlError, InvalidInput, NotFound, StorageUnavailable
from infrastructure.storage.base import GdalPath

RasterType = Literal["rgb", "rgba", "dem", "categorical", "multispectral"]
Tier = Literal["visualization", "analysis", "archive"]
TIERS: tuple[Tier, ...] = ("visualization", "analysis", "archive")
#: GDAL options for reading blobs through /vsiaz/ (no directory listing on open, cached reads); local files keep
#: GDAL's defaults (sidecar files such as .tfw or .ovr next to them are found)
REMOTE_READ_CONFIG = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "VSI_CACHE": "TRUE", "GDAL_HTTP_MAX_RETRY": "3"}


#: a callable that asks the storage service itself about the source (e.g. ``storage.properties``): raises when
#: the service cannot be reached, returns when it can. Used to tell a bad file from a storage outage.
Probe = Callable[[], object]
#: what GDAL says when the network or the storage service failed: curl errors and HTTP statuses (404 aside)
_NETWORK_TEXT = re.compile(
    r"CURL error|HTTP response code: (?!404\b)\d{3}|timed out|timeout|connection (refused|reset)|"
    r"could not resolve|SSL|Could not connect",
    re.IGNORECASE,
)
_NOT_FOUND_TEXT = re.compile(r"HTTP response code: 404\b")
#: GDAL got fewer bytes than a block needs: the end of a truncated file, or a connection that broke mid-read
_SHORT_READ_TEXT = re.compile(r"got \d+ bytes, expected \d+|short read", re.IGNORECASE)
#: what GDAL says when the bytes of a file are not what its format promises (a corrupt or truncated file)
_READ_FAILURE_TEXT = re.compile(
    r"IReadBlock|Read failed|TIFFRead|TIFFFill|Decod|corrupt|truncat|short read|not a TIFF|Cannot read",
    re.IGNORECASE,
)


#: GDAL's network file systems (also inside /vsizip/ and friends)
_REMOTE_PREFIXES = ("/vsiaz/", "/vsiadls/", "/vsicurl/", "/vsis3/", "/vsigs/", "/vsioss/", "/vsiswift/")


def is_remote(source: GdalPath | str) -> bool:
    """Whether GDAL reads ``source`` over the network (its failures may be the network's)."""
    path = source.path if isinstance(source, GdalPath) else str(source)
    return any(prefix in path for prefix in _REMOTE_PREFIXES)


def error_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the errors it was raised from (rasterio chains GDAL's error stack as causes)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _chain_text(exc: BaseException) -> str:
    return "\n".join(f"{type(e).__name__}: {e}" for e in error_chain(exc))


def describe_gdal_error(exc: BaseException) -> str:
    """The useful part of a GDAL error: the first and the innermost message (rasterio's outer message is
    often only 'Read failed. See previous exception for details.')."""
    messages = [_first_line(e) for e in error_chain(exc)]
    useful = [m for m in messages if "See previous exception" not in m] or messages
    text = useful[0] if len(useful) == 1 or useful[-1] in useful[0] else f"{useful[0]} ({useful[-1]})"
    return text[:400]


def is_network_error(exc: BaseException) -> bool:
    """Whether GDAL failed because the network or the storage service did (worth another attempt)."""
    chain = error_chain(exc)
    if any(type(e).__name__ == "CPLE_HttpResponseError" for e in chain):
        return not _NOT_FOUND_TEXT.search(_chain_text(exc))
    return bool(_NETWORK_TEXT.search(_chain_text(exc)))


def is_read_failure(exc: BaseException) -> bool:
    """Whether GDAL failed reading the bytes of a file (corrupt, truncated, or a network failure mid-read)."""
    return bool(_READ_FAILURE_TEXT.search(_chain_text(exc))) or is_network_error(exc)


def source_error(
    exc: BaseException,
    source: GdalPath | str,
    problem: str,
    *,
    probe: Probe | None = None,
    short_read_is_outage: bool = False,
    **details: object,
) -> GeoetlError:
    """The error to raise when GDAL could not open or read the source.

    A local file that GDAL cannot read is bad input. For a blob read through ``/vsiaz/`` it may as well be the
    network or the storage service (unreachable, 5xx, throttled, credentials expired): those are
    ``StorageUnavailable`` (retried). When GDAL's message does not say, ``probe`` asks the storage service
    itself: if it answers, the service is fine and the file is bad; if not, the attempt is retried.
    ``short_read_is_outage``: a block that came back short is a broken connection, not a truncated file (true
    once validation has read the file's first and last blocks).
    """
    gdal_message = describe_gdal_error(exc)
    if is_remote(source):
        short_read = short_read_is_outage and bool(_SHORT_READ_TEXT.search(_chain_text(exc)))
        if is_network_error(exc) or short_read:
            return StorageUnavailable(f"the source could not be read from storage: {gdal_message}", **details)
        if probe is not None:
            try:
                probe()
            except NotFound as missing:
                return InvalidInput(
                    f"the source blob does not exist (any more): {missing.message}", reason="missing_blob"
                )
            except GeoetlError as failed:
                if not failed.retryable:
                    return failed
                return StorageUnavailable(
                    f"the source could not be read from storage ({failed.message}): {gdal_message}", **details
                )
            except Exception as failed:  # an SDK error the backend did not translate: treat as an outage
                return StorageUnavailable(
                    f"the source could not be read from storage ({type(failed).__name__}): {gdal_message}", **details
                )
    return InvalidInput(f"{problem}: {gdal_message}", reason="unreadable", **details)


def read_config(source: GdalPath | str) -> dict[str, str]:
    """The GDAL options for opening ``source``: its own (credentials) plus the remote-read ones for /vsi paths."""
    path, config = (source.path, dict(source.config)) if isinstance(source, GdalPath) else (str(source), {})
    return {**REMOTE_READ_CONFIG, **config} if path.startswith("/vsi") else config


# Warnings our raster code expects (worker threads share the process's filters, so they are set once here,
# never with catch_warnings, which is not thread-safe): rasterio 1.4 multiplies Affine objects with `*` inside
# WarpedVRT (affine 3 asks for `@`), and a file without georeferencing is reported by us as a clear error.
warnings.filterwarnings(
    "ignore", message="Use `@` matmul instead of `\\*`", category=PendingDeprecationWarning, append=True
)
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, append=True)


@dataclass(frozen=True)
class TierPlan:
    """How one tier will be written, or why it cannot be."""

    tier: Tier
    possible: bool
    reason: str | None = None  # why not, when not possible
    compression: str | None = None  # JPEG, DEFLATE, LZW
    predictor: int | None = None
    quality: int | None = None
    photometric: str | None = None
    mask: bool = False  # alpha / nodata written as an internal mask
    bands: list[int] = field(default_factory=list)  # source band indexes written
    overview_resampling: str = "nearest"
    forward_tags: bool = False  # band and namespace tags copied


@dataclass(frozen=True)
class RasterFacts:
    """What the validate stage learned about a source raster."""

    driver: str
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    colorinterp: list[str]
    crs: str  # the CRS used (the file's, or input_crs)
    crs_from_file: bool
    transform: list[float]
    bounds: list[float]
    bounds_wgs84: list[float]
    raster_type: RasterType
    detected_type: RasterType
    has_colormap: bool
    is_64bit: bool
    is_cog: bool
    uncompressed_bytes: int
    estimated_memory_bytes: int
    warnings: list[str]
    tiers: dict[str, TierPlan]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def open_source(source: GdalPath | str, probe: Probe | None = None) -> Iterator[DatasetReader]:
    """Open a raster under the GDAL options its path needs; unreadable files raise ``InvalidInput``, storage
    failures (of a /vsi path) ``StorageUnavailable`` (see :func:`source_error`)."""
    path = source.path if isinstance(source, GdalPath) else str(source)
    with rasterio.Env(**read_config(source)):
        try:
            dataset = rasterio.open(path)
        except RasterioIOError as exc:
            raise source_error(
                exc,
                source,
                "the file cannot be opened as a raster (not a format GDAL reads, or truncated/corrupt)",
                probe=probe,
            ) from exc
        with dataset:
            yield dataset


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    # GDAL messages repeat the (possibly long, possibly secret-free but noisy) path; keep them short
    return line[:300]


def parse_crs(value: str, what: str = "input_crs") -> rasterio.crs.CRS:
    """A CRS from user input (EPSG:xxxx, WKT, PROJ string); InvalidInput when unknown."""
    try:
        crs = rasterio.crs.CRS.from_user_input(value)
    except (CRSError, ValueError) as exc:
        raise InvalidInput(f"{what} {value!r} is not a CRS PROJ knows: {_first_line(exc)}") from exc
    return crs


def crs_label(crs: rasterio.crs.CRS) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _read_check(dataset: DatasetReader, source: GdalPath | str, probe: Probe | None) -> None:
    """Read the first and the last pixel of every band: a truncated file fails here, not in the COG stage.

    (Only two blocks are read, whatever the raster's size; the last one usually lies at the end of the file.
    A corrupt block in the middle is found by the COG stage, which reports it as bad input too.)
    """
    try:
        for column, row in ((0, 0), (dataset.width - 1, dataset.height - 1)):
            dataset.read(window=rasterio.windows.Window(column, row, 1, 1))
    except RasterioIOError as exc:
        raise source_error(exc, source, "the raster cannot be read (truncated or corrupt?)", probe=probe) from exc


def _plausible_bounds(
    crs: rasterio.crs.CRS, bounds: tuple[float, float, float, float], label: str
) -> tuple[list[float], list[str]]:
    """The WGS84 bounds of ``bounds`` in ``crs``; InvalidInput when they cannot be where the CRS says."""
    west, south, east, north = bounds
    notes: list[str] = []
    if not all(math.isfinite(v) for v in bounds) or west >= east or south >= north:
        raise InvalidInput(f"the raster's bounds {list(bounds)} are not a valid extent", reason="bounds")
    proj = ProjCRS.from_wkt(crs.to_wkt())
    if proj.is_geographic:
        tolerance = 1e-6
        if south < -90 - tolerance or north > 90 + tolerance or west < -180 - tolerance or east > 360 + tolerance:
            raise InvalidInput(
                f"the raster's bounds {[west, south, east, north]} are not plausible for {label} "
                "(longitude must be within -180..360 and latitude within -90..90 degrees); "
                "is the CRS (or input_crs) right?",
                reason="bounds",
            )
    try:
        to_wgs84 = Transformer.from_crs(proj, ProjCRS.from_epsg(4326), always_xy=True)
        lonlat = to_wgs84.transform_bounds(west, south, east, north, densify_pts=21)
    except Exception as exc:  # pyproj raises ProjError and friends for coordinates outside the projection
        raise InvalidInput(
            f"the raster's bounds cannot be transformed from {label} to WGS84: {_first_line(exc)}; "
            "is the CRS (or input_crs) right?",
            reason="bounds",
        ) from exc
    if not all(math.isfinite(v) for v in lonlat) or lonlat[1] < -90.0001 or lonlat[3] > 90.0001:
        raise InvalidInput(
            f"the raster's bounds {[west, south, east, north]} are outside the valid area of {label}; "
            "is the CRS (or input_crs) right?",
            reason="bounds",
        )
    area = proj.area_of_use
    if area is not None and not proj.is_geographic:
        w, s, e, n = lonlat
        crosses = area.west > area.east
        inside_lon = crosses or (w >= area.west - 10 and e <= area.east + 10)
        if not inside_lon or s < area.south - 10 or n > area.north + 10:
            notes.append(f"the raster lies well outside the area of use of {label} ({area.name})")
    return [float(v) for v in lonlat], notes


def _colorinterp(dataset: DatasetReader) -> list[str]:
    return [ci.name for ci in dataset.colorinterp]


def _has_colormap(dataset: DatasetReader) -> bool:
    if dataset.count != 1 or dataset.colorinterp[0] is not ColorInterp.palette:
        return False
    try:
        return bool(dataset.colormap(1))
    except ValueError:
        return False


def detect_type(dataset: DatasetReader) -> RasterType:
    """The raster type the file looks like (used with ``raster_type=auto``)."""
    kind = np.dtype(dataset.dtypes[0]).kind
    interp = dataset.colorinterp
    if dataset.count == 1 and kind in "iu" and interp[0] is ColorInterp.palette:
        return "categorical"
    if dataset.count == 4 and kind in "iu" and interp[3] is ColorInterp.alpha:
        return "rgba"
    if dataset.count == 3 and kind == "u" and (dataset.dtypes[0] == "uint8" or interp[0] is ColorInterp.red):
        return "rgb"
    if dataset.count == 1 and kind in "iuf" and dataset.dtypes[0] != "uint8":
        return "dem"
    return "multispectral"


def check_declared(dataset: DatasetReader, declared: RasterType) -> None:
    """InvalidInput when the file cannot be the declared raster type."""
    kind = np.dtype(dataset.dtypes[0]).kind
    count = dataset.count
    problem = None
    if declared == "rgb" and count != 3:
        problem = f"needs 3 bands; the file has {count}"
    elif declared == "rgb" and kind not in "iu":
        problem = f"needs integer bands; the file's are {dataset.dtypes[0]}"
    elif declared == "rgba" and count != 4:
        problem = f"needs 4 bands (the 4th alpha); the file has {count}"
    elif declared == "rgba" and dataset.colorinterp[3] is not ColorInterp.alpha:
        problem = f"needs band 4 to be alpha; its colour interpretation is {dataset.colorinterp[3].name}"
    elif declared == "rgba" and kind not in "iu":
        problem = f"needs integer bands; the file's are {dataset.dtypes[0]}"
    elif (declared == "dem" and count != 1) or (declared == "categorical" and count != 1):
        problem = f"needs 1 band; the file has {count}"
    elif declared == "categorical" and kind not in "iu":
        problem = f"needs integer classes; the file's band is {dataset.dtypes[0]}"
    if problem is not None:
        raise InvalidInput(f"raster_type {declared!r} {problem}", reason="raster_type", detected=detect_type(dataset))


def overview_resampling(raster_type: str) -> str:
    """Overview resampling that fits the data: classes keep their values, continuous data is averaged."""
    return "mode" if raster_type == "categorical" else "average"


def warp_resampling(raster_type: str) -> str:
    return "nearest" if raster_type == "categorical" else "bilinear"


def predictor_for(dtype: str) -> int:
    """TIFF predictor: 2 (horizontal differencing) for integers, 3 (floating point) for floats."""
    return 3 if np.dtype(dtype).kind == "f" else 2


def plan_tiers(
    dataset: DatasetReader, raster_type: RasterType, nodata: float | None, jpeg_quality: int = 85
) -> dict[str, TierPlan]:
    """The settings of each tier for this raster (and why the visualization tier is impossible, if it is)."""
    dtype = dataset.dtypes[0]
    count = dataset.count
    all_bands = list(range(1, count + 1))
    resampling = overview_resampling(raster_type)
    predictor = predictor_for(dtype)
    alpha = count == 4 and dataset.colorinterp[3] is ColorInterp.alpha

    reason = None
    if dtype != "uint8":
        reason = f"JPEG holds 8-bit data only; this raster is {dtype} (use the analysis tier)"
    elif raster_type == "categorical":
        reason = "JPEG is lossy and would change class values of a categorical raster (use the analysis tier)"
    elif count == 4 and not alpha:
        reason = "JPEG holds 1 or 3 bands; band 4 of this raster is not an alpha band"
    elif count not in (1, 3, 4):
        reason = f"JPEG holds 1 or 3 bands (or 3 + alpha); this raster has {count}"
    if reason is None:
        bands = [1, 2, 3] if count >= 3 else [1]
        visualization = TierPlan(
            tier="visualization",
            possible=True,
            compression="JPEG",
            quality=jpeg_quality,
            photometric="YCbCr" if len(bands) == 3 else "MINISBLACK",
            mask=alpha or nodata is not None,
            bands=bands,
            overview_resampling=resampling,
        )
    else:
        visualization = TierPlan(tier="visualization", possible=False, reason=reason)
    analysis = TierPlan(
        tier="analysis",
        possible=True,
        compression="DEFLATE",
        predictor=predictor,
        bands=all_bands,
        overview_resampling=resampling,
        forward_tags=True,
    )
    archive = TierPlan(
        tier="archive",
        possible=True,
        compression="LZW",
        predictor=predictor,
        bands=all_bands,
        overview_resampling=resampling,
        forward_tags=True,
    )
    return {"visualization": visualization, "analysis": analysis, "archive": archive}


def inspect_raster(
    source: GdalPath | str,
    *,
    input_crs: str | None = None,
    raster_type: RasterType | Literal["auto"] = "auto",
    nodata: float | None = None,
    max_pixels: int | None = None,
    max_bytes: int | None = None,
    target_crs: str | None = None,
    probe: Probe | None = None,
) -> RasterFacts:
    """Open and check a raster; InvalidInput (permanent) for anything that makes it unusable.

    ``max_bytes`` limits the uncompressed size (what one COG task can convert within the function timeout);
    ``target_crs``, when given, must be a CRS the raster can be projected into. ``probe`` tells storage
    outages from bad files for blobs (see :func:`source_error`).
    """
    with open_source(source, probe) as dataset:
        facts = _inspect(dataset, source, input_crs, raster_type, nodata, max_pixels, max_bytes, probe)
        if target_crs is not None:
            check_target_crs(dataset, parse_crs(facts.crs), target_crs)
        return facts


def check_target_crs(dataset: DatasetReader, src_crs: rasterio.crs.CRS, target_crs: str) -> None:
    """InvalidInput unless ``target_crs`` is a 2D CRS this raster can be reprojected into."""
    dst_crs = parse_crs(target_crs, "target_crs")
    require_2d(dst_crs, target_crs)
    try:
        transform, width, height = calculate_default_transform(
            src_crs, dst_crs, dataset.width, dataset.height, *dataset.bounds
        )
    except Exception as exc:  # CPLE_AppDefinedError and friends from GDAL's warper
        raise InvalidInput(
            f"the raster cannot be reprojected to target_crs {target_crs!r}: {describe_gdal_error(exc)}",
            reason="target_crs",
        ) from exc
    if transform is None or not width or not height:
        raise InvalidInput(f"the raster cannot be reprojected to target_crs {target_crs!r}", reason="target_crs")


def require_2d(crs: rasterio.crs.CRS, value: str, what: str = "target_crs") -> None:
    """InvalidInput unless ``crs`` is a projected or geographic 2D CRS (not geocentric, vertical or 3D)."""
    proj = ProjCRS.from_wkt(crs.to_wkt())
    if not (proj.is_projected or proj.is_geographic) or proj.is_geocentric or proj.is_vertical:
        raise InvalidInput(
            f"{what} {value!r} ({proj.name}) is not a map projection or a geographic CRS: "
            "rasters can only be reprojected into a 2D projected or geographic CRS",
            reason="target_crs",
        )
    if len(proj.axis_info) != 2:
        raise InvalidInput(
            f"{what} {value!r} ({proj.name}) has {len(proj.axis_info)} axes; use its 2D form",
            reason="target_crs",
        )


def _inspect(
    dataset: DatasetReader,
    source: GdalPath | str,
    input_crs: str | None,
    raster_type: RasterType | Literal["auto"],
    nodata: float | None,
    max_pixels: int | None,
    max_bytes: int | None,
    probe: Probe | None,
) -> RasterFacts:
    if dataset.count < 1:
        raise InvalidInput("the file has no raster bands (is it a vector or a container of subdatasets?)")
    if len(set(dataset.dtypes)) != 1:
        raise InvalidInput(f"the bands have different data types {sorted(set(dataset.dtypes))}; one type is needed")
    dtype = dataset.dtypes[0]
    if np.dtype(dtype).kind == "c":
        raise InvalidInput(f"complex data ({dtype}) cannot be made into COGs for display or analysis")
    pixels = dataset.width * dataset.height
    if max_pixels is not None and pixels > max_pixels:
        raise InvalidInput(
            f"the raster has {pixels:,} pixels ({dataset.width} x {dataset.height}); the limit is {max_pixels:,}",
            reason="too_large",
        )
    uncompressed = pixels * dataset.count * np.dtype(dtype).itemsize
    if max_bytes is not None and uncompressed > max_bytes:
        raise InvalidInput(
            f"the raster is {uncompressed / 2**30:.1f} GiB uncompressed ({dataset.width} x {dataset.height} x "
            f"{dataset.count} bands of {dtype}); at most {max_bytes / 2**30:.1f} GiB (RASTER_MAX_SOURCE_BYTES) "
            "is accepted because one COG task must write a tier within the function's time limit; "
            "split the raster into tiles and submit each",
            reason="too_large",
        )
    _read_check(dataset, source, probe)

    if dataset.crs is not None and input_crs is not None:
        # the file's CRS wins; input_crs only fills a gap
        crs, from_file = dataset.crs, True
    elif dataset.crs is not None:
        crs, from_file = dataset.crs, True
    elif input_crs is not None:
        crs, from_file = parse_crs(input_crs), False
    else:
        raise InvalidInput(
            'the file has no CRS; pass input_crs (e.g. "EPSG:32633") to say which one its coordinates are in',
            reason="no_crs",
        )
    if dataset.transform.is_identity and not dataset.gcps[0]:
        raise InvalidInput(
            "the file has no georeferencing (no geotransform): its pixel grid cannot be placed on the map",
            reason="no_transform",
        )
    label = crs_label(crs)
    notes: list[str] = []
    if dataset.crs is not None and input_crs is not None:
        notes.append(f"input_crs {input_crs!r} ignored: the file has its own CRS {label}")
    bounds_wgs84, bound_notes = _plausible_bounds(crs, tuple(dataset.bounds), label)
    notes.extend(bound_notes)

    detected = detect_type(dataset)
    if raster_type == "auto":
        chosen: RasterType = detected
    else:
        check_declared(dataset, raster_type)
        chosen = raster_type
    is_64bit = np.dtype(dtype).itemsize == 8
    if is_64bit:
        notes.append(f"64-bit data ({dtype}): COGs keep it, but 32 bits usually suffice and halve the size")
    effective_nodata = nodata if nodata is not None else dataset.nodata
    if nodata is not None:
        _check_nodata_fits(nodata, dtype)

    return RasterFacts(
        driver=dataset.driver,
        width=dataset.width,
        height=dataset.height,
        count=dataset.count,
        dtype=dtype,
        nodata=_finite_or_none(effective_nodata),
        colorinterp=_colorinterp(dataset),
        crs=label,
        crs_from_file=from_file,
        transform=list(dataset.transform)[:6],
        bounds=list(dataset.bounds),
        bounds_wgs84=bounds_wgs84,
        raster_type=chosen,
        detected_type=detected,
        has_colormap=_has_colormap(dataset),
        is_64bit=is_64bit,
        is_cog=_is_cog(dataset, source),
        uncompressed_bytes=uncompressed,
        # cog_translate holds the whole raster in memory below its in-memory threshold, plus overviews (1/3)
        estimated_memory_bytes=int(uncompressed * 4 / 3),
        warnings=notes,
        tiers=plan_tiers(dataset, chosen, effective_nodata),
    )


def _finite_or_none(value: float | None) -> float | None:
    # NaN nodata is legal in GDAL but not JSON; recorded as None with the dataset keeping it
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _check_nodata_fits(nodata: float, dtype: str) -> None:
    info: Any = np.finfo(dtype) if np.dtype(dtype).kind == "f" else np.iinfo(dtype)
    if np.dtype(dtype).kind in "iu" and (not float(nodata).is_integer() or not info.min <= nodata <= info.max):
        raise InvalidInput(f"nodata {nodata} does not fit the raster's data type {dtype}", reason="nodata")
    if np.dtype(dtype).kind == "f" and not float(info.min) <= nodata <= float(info.max):
        raise InvalidInput(
            f"nodata {nodata} does not fit the raster's data type {dtype} "
            f"(its values lie within {float(info.min):g}..{float(info.max):g})",
            reason="nodata",
        )


def _is_cog(dataset: DatasetReader, source: GdalPath | str) -> bool:
    if dataset.driver != "GTiff":
        return False
    path = source.path if isinstance(source, GdalPath) else str(source)
    try:
        valid, _errors, _warnings = cog_validate(path, quiet=True, config=read_config(source))
    except (RasterioIOError, ProjCRSError):
        return False
    return bool(valid)
