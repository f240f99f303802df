"""Cheap per-blob metadata: format, CRS, size and bounds of rasters (rasterio) and vectors (pyogrio), read from
file headers through GDAL (local paths or ``/vsiaz/``), never by downloading whole files.

A blob that cannot be read is recorded with its error (an inventory describes what is there, broken
files included); it never fails the task.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyogrio
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from infrastructure.storage.base import BlobStore

RASTER_EXTENSIONS = frozenset({"tif", "tiff", "gtiff", "geotiff", "vrt", "jp2", "img", "nc", "asc", "hgt", "dt2"})
VECTOR_EXTENSIONS = frozenset({"gpkg", "geojson", "shp", "fgb", "kml", "kmz", "gml", "gpx", "geojsonl", "topojson"})
_PYOGRIO_CONFIG = threading.Lock()  # pyogrio's GDAL config options are process-wide


def kind_of(extension: str) -> str:
    if extension in RASTER_EXTENSIONS:
        return "raster"
    if extension in VECTOR_EXTENSIONS:
        return "vector"
    return "other"


@dataclass
class BlobMetadata:
    kind: str
    format: str | None = None
    crs: str | None = None
    width: int | None = None
    height: int | None = None
    band_count: int | None = None
    dtype: str | None = None
    feature_count: int | None = None
    geometry_type: str | None = None
    bounds: list[float] | None = None
    metadata_error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "format": self.format,
            "crs": self.crs,
            "width": self.width,
            "height": self.height,
            "band_count": self.band_count,
            "dtype": self.dtype,
            "feature_count": self.feature_count,
            "geometry_type": self.geometry_type,
            "bounds": self.bounds,
            "metadata_error": self.metadata_error,
            "details": self.details or None,
        }


def _bounds(values: Any) -> list[float] | None:
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == 4 and all(math.isfinite(v) for v in numbers) else None


def _crs_text(crs: Any) -> str | None:
    if not crs:
        return None
    text = crs.to_string() if hasattr(crs, "to_string") else str(crs)
    return text or None


@contextmanager
def _recorded_warnings(details: dict[str, Any], record: bool = True) -> Iterator[None]:
    """GDAL's complaints about a file are part of its description, not warnings of ours."""
    if not record:
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield
    if caught:
        details["warnings"] = sorted({str(w.message)[:300] for w in caught})[:5]


def raster_metadata(path: str, config: Mapping[str, str], record: bool = True) -> BlobMetadata:
    meta = BlobMetadata("raster")
    with _recorded_warnings(meta.details, record), rasterio.Env(**config), rasterio.open(path) as src:
        meta.format = src.driver
        meta.crs = _crs_text(src.crs)
        meta.width, meta.height, meta.band_count = src.width, src.height, src.count
        meta.dtype = src.dtypes[0] if src.dtypes else None
        if src.crs or not src.transform.is_identity:
            meta.bounds = _bounds(src.bounds)
        meta.details.update(
            {
                "resolution": [abs(v) for v in src.res],
                "nodata": src.nodata if src.nodata is None or math.isfinite(src.nodata) else str(src.nodata),
                "block_shapes": [list(s) for s in src.block_shapes[:1]],
                "overviews": len(src.overviews(1)) if src.count else 0,
                "compression": src.compression.value if src.compression else None,
            }
        )
    return meta


def vector_metadata(path: str, config: Mapping[str, str], record: bool = True) -> BlobMetadata:
    meta = BlobMetadata("vector")
    with _recorded_warnings(meta.details, record):
        if config:
            with _PYOGRIO_CONFIG:
                pyogrio.set_gdal_config_options(dict(config))
                try:
                    info, layers = _read_vector(path)
                finally:
                    pyogrio.set_gdal_config_options(dict.fromkeys(config))
        else:
            info, layers = _read_vector(path)
    meta.format = info.get("driver")
    meta.crs = _crs_text(info.get("crs"))
    features = info.get("features")
    meta.feature_count = int(features) if features is not None and int(features) >= 0 else None
    meta.geometry_type = info.get("geometry_type")
    meta.bounds = _bounds(info.get("total_bounds")) if info.get("total_bounds") is not None else None
    meta.details.update({"layers": layers, "fields": [str(f) for f in info.get("fields", [])][:100]})
    return meta


def _read_vector(path: str) -> tuple[dict[str, Any], list[str]]:
    layers = [str(row[0]) for row in pyogrio.list_layers(path)]
    info = pyogrio.read_info(path, layer=layers[0] if layers else None, force_feature_count=True)
    return dict(info), layers


def blob_metadata(
    storage: BlobStore, container: str, name: str, extension: str, *, record: bool = True
) -> BlobMetadata:
    kind = kind_of(extension)
    if kind == "other":
        return BlobMetadata(kind)
    try:
        where = storage.gdal_path(container, name)
        path = where.path
        if extension == "kmz" and not path.startswith("/vsizip/"):
            path = f"/vsizip/{path}"
        reader = raster_metadata if kind == "raster" else vector_metadata
        return reader(path, where.config, record)
    except Exception as exc:
        return BlobMetadata(kind, metadata_error=f"{type(exc).__name__}: {str(exc)[:500]}")


def page_metadata(
    storage: BlobStore, container: str, names: list[str], extensions: list[str], threads: int = 4
) -> list[BlobMetadata]:
    """Metadata of each blob (in order); headers of remote blobs are read a few at a time.

    Warnings GDAL raises about a file are recorded in its ``details`` when read one at a time; the
    warnings filter is process state, so with threads they are only silenced, around the whole pool.
    """
    pairs = list(zip(names, extensions, strict=True))
    if storage.backend == "local" or threads <= 1:
        return [blob_metadata(storage, container, n, e) for n, e in pairs]
    with warnings.catch_warnings(), ThreadPoolExecutor(threads, thread_name_prefix="inventory-meta") as pool:
        warnings.simplefilter("ignore")
        return list(pool.map(lambda pair: blob_metadata(storage, container, *pair, record=False), pairs))
