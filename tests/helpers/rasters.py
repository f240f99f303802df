"""Generators of small test rasters (GeoTIFF files written with rasterio).

Every function writes one file at ``path`` and returns the path. Data is deterministic (a seeded
generator) and smooth enough for lossy compression to behave like on real imagery. Sizes are small by
default so tests stay fast. The kinds match the ``process_raster`` raster types:

* ``rgb_uint8``        3 bands uint8, colour interpretation red/green/blue
* ``rgba_uint8``       4 bands uint8 with an alpha band (transparent border)
* ``dem_float32``      1 band float32 elevation with a nodata value and a nodata hole
* ``multiband_int16``  4 bands int16 (e.g. reflectance), nodata -9999
* ``categorical_uint8`` 1 band uint8 classes with a colour table (land cover), nodata 0
* ``no_crs``           1 band uint8 without a CRS (pixel grid only)
* ``antimeridian``     3 bands uint8 crossing 180° longitude near Fiji, in EPSG:3832 (PDC Mercator), whose
                       x axis is continuous over the antimeridian (its WGS84 footprint crosses 180°)
* ``not_a_raster`` / ``truncated`` / ``truncated_cog`` / ``corrupt_middle_tile`` for bad input
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

DEFAULT_SIZE = 256

#: a UTM zone 33N origin (metres) for the projected test rasters, 10 m pixels
UTM33N = CRS.from_epsg(32633)
UTM_ORIGIN = (500_000.0, 5_200_000.0)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype("float64")
    return x / max(size - 1, 1), y / max(size - 1, 1)


def _smooth(size: int, seed: int, scale: float = 1.0) -> np.ndarray:
    """A smooth field in 0..1 made of a few sines plus a little noise."""
    rng = np.random.default_rng(seed)
    x, y = _grid(size)
    field = np.zeros((size, size))
    for _ in range(4):
        fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
        field += np.sin(2 * np.pi * (fx * x + fy * y) + ph)
    field = (field - field.min()) / (np.ptp(field) or 1.0)
    field += rng.normal(0, 0.01 * scale, field.shape)
    clipped: np.ndarray = np.clip(field, 0.0, 1.0)
    return clipped


def _profile(size: int, count: int, dtype: str, crs: CRS | None, transform: Affine, **extra: Any) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": count,
        "dtype": dtype,
        "transform": transform,
        "tiled": True,
        "blockxsize": min(256, size - size % 16 or 16),
        "blockysize": min(256, size - size % 16 or 16),
    }
    if size < 16 or size % 16:
        profile.pop("tiled")
        profile.pop("blockxsize")
        profile.pop("blockysize")
    if crs is not None:
        profile["crs"] = crs
    profile.update(extra)
    return profile


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    """Like ``rasterio.transform.from_origin`` without its ``Affine * Affine`` (a PendingDeprecationWarning)."""
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


def utm_transform(size: int, pixel: float = 10.0) -> Affine:
    del size
    return from_origin(UTM_ORIGIN[0], UTM_ORIGIN[1], pixel, pixel)


def rgb_uint8(path: Path, size: int = DEFAULT_SIZE, *, crs: CRS | None = UTM33N, seed: int = 1) -> Path:
    data = np.stack([(_smooth(size, seed + i) * 255).astype("uint8") for i in range(3)])
    profile = _profile(size, 3, "uint8", crs, utm_transform(size), photometric="RGB")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        dst.update_tags(source="tests.helpers.rasters", kind="rgb")
    return path


def rgba_uint8(path: Path, size: int = DEFAULT_SIZE, *, seed: int = 2) -> Path:
    rgb = np.stack([(_smooth(size, seed + i) * 255).astype("uint8") for i in range(3)])
    alpha = np.full((size, size), 255, dtype="uint8")
    border = max(size // 8, 1)
    alpha[:border, :] = 0
    alpha[:, :border] = 0
    data = np.concatenate([rgb, alpha[None]])
    data[:3, alpha == 0] = 0
    profile = _profile(size, 4, "uint8", UTM33N, utm_transform(size), photometric="RGB", alpha="YES")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    return path


DEM_NODATA = -9999.0


def dem_float32(path: Path, size: int = DEFAULT_SIZE, *, nodata: float | None = DEM_NODATA, seed: int = 3) -> Path:
    elev = (_smooth(size, seed, scale=0.2) * 2500.0 + 200.0).astype("float32")
    if nodata is not None:
        hole = max(size // 10, 1)
        c = size // 2
        elev[c - hole : c + hole, c - hole : c + hole] = nodata
    extra: dict[str, Any] = {} if nodata is None else {"nodata": nodata}
    profile = _profile(size, 1, "float32", UTM33N, utm_transform(size, 30.0), **extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(elev, 1)
        dst.set_band_description(1, "elevation")
        dst.update_tags(1, units="metre")
    return path


def multiband_int16(path: Path, size: int = DEFAULT_SIZE, *, bands: int = 4, seed: int = 4) -> Path:
    data = np.stack([(_smooth(size, seed + i) * 10_000).astype("int16") for i in range(bands)])
    data[:, :2, :2] = -9999
    profile = _profile(size, bands, "int16", UTM33N, utm_transform(size, 20.0), nodata=-9999)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i in range(bands):
            dst.set_band_description(i + 1, f"band{i + 1}")
        dst.update_tags(sensor="synthetic", processing_level="L2A")
    return path


CATEGORY_COLORS = {
    0: (0, 0, 0, 0),
    1: (0, 100, 0, 255),
    2: (255, 255, 0, 255),
    3: (0, 0, 255, 255),
    4: (128, 128, 128, 255),
    5: (255, 0, 0, 255),
}


def categorical_uint8(path: Path, size: int = DEFAULT_SIZE, *, seed: int = 5) -> Path:
    classes = (np.floor(_smooth(size, seed) * 4.999) + 1).astype("uint8")
    classes[:4, :4] = 0
    profile = _profile(size, 1, "uint8", UTM33N, utm_transform(size), nodata=0, photometric="PALETTE")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(classes, 1)
        dst.write_colormap(1, CATEGORY_COLORS)
        dst.update_tags(1, classes="1=forest,2=crop,3=water,4=urban,5=bare")
    return path


def no_crs(path: Path, size: int = DEFAULT_SIZE, *, seed: int = 6) -> Path:
    """A georeferenced-looking grid (a geotransform in UTM 33N metres) but no CRS in the file."""
    data = (_smooth(size, seed) * 255).astype("uint8")
    profile = _profile(size, 1, "uint8", None, utm_transform(size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data, 1)
    return path


#: EPSG:3832 (WGS 84 / PDC Mercator): central meridian 150°E, so x is continuous across 180°
PDC_MERCATOR = CRS.from_epsg(3832)


def antimeridian(path: Path, size: int = DEFAULT_SIZE, *, seed: int = 7) -> Path:
    """3-band uint8 covering about 178°E..178°W near Fiji (16..20°S), in EPSG:3832."""
    from pyproj import Transformer

    to_pdc = Transformer.from_crs("EPSG:4326", "EPSG:3832", always_xy=True)
    west, north = to_pdc.transform(178.0, -16.0)
    east, _ = to_pdc.transform(-178.0, -16.0)
    _, south = to_pdc.transform(178.0, -20.0)
    assert east > west, "EPSG:3832 x must be continuous over the antimeridian"
    res_x = (east - west) / size
    res_y = (north - south) / size
    data = np.stack([(_smooth(size, seed + i) * 255).astype("uint8") for i in range(3)])
    transform = Affine(res_x, 0.0, west, 0.0, -res_y, north)
    profile = _profile(size, 3, "uint8", PDC_MERCATOR, transform, photometric="RGB")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    return path


def wgs84_rgb(
    path: Path, size: int = DEFAULT_SIZE, *, bounds: tuple[float, float, float, float] = (10.0, 45.0, 11.0, 46.0)
) -> Path:
    """3-band uint8 in EPSG:4326 over ``bounds`` (west, south, east, north)."""
    west, south, east, north = bounds
    transform = from_origin(west, north, (east - west) / size, (north - south) / size)
    data = np.stack([(_smooth(size, 11 + i) * 255).astype("uint8") for i in range(3)])
    profile = _profile(size, 3, "uint8", CRS.from_epsg(4326), transform, photometric="RGB")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def not_a_raster(path: Path) -> Path:
    path.write_text("this is a text file, not a raster\n" * 20)
    return path


def truncated(path: Path, size: int = DEFAULT_SIZE) -> Path:
    """A real GeoTIFF cut to a third of its bytes (header intact, tiles missing)."""
    full = path.with_name(path.stem + "_full.tif")
    multiband_int16(full, size)
    raw = full.read_bytes()
    full.unlink()
    path.write_bytes(raw[: len(raw) // 3])
    return path


def truncated_cog(path: Path, size: int = DEFAULT_SIZE) -> Path:
    """A COG (header and directory first) cut to two thirds: it opens, but its last tiles are gone."""
    from rasterio.shutil import copy

    full = path.with_name(path.stem + "_full.tif")
    cog = path.with_name(path.stem + "_cog.tif")
    multiband_int16(full, size)
    copy(full, cog, driver="COG", compress="DEFLATE")
    raw = cog.read_bytes()
    full.unlink()
    cog.unlink()
    path.write_bytes(raw[: len(raw) * 2 // 3])
    return path


def corrupt_middle_tile(path: Path, size: int = 1024) -> Path:
    """A DEFLATE GeoTIFF whose first and last tiles are intact but a tile in the middle does not decode."""
    full = path.with_name(path.stem + "_full.tif")
    multiband_int16(full, size)
    with rasterio.open(full) as src:
        profile, data = src.profile, src.read()
    full.unlink()
    profile.update(compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 4000] = b"\xff" * 4000
    path.write_bytes(bytes(raw))
    return path


GENERATORS = {
    "rgb": rgb_uint8,
    "rgba": rgba_uint8,
    "dem": dem_float32,
    "multispectral": multiband_int16,
    "categorical": categorical_uint8,
    "no_crs": no_crs,
    "antimeridian": antimeridian,
}


def make(kind: str, folder: Path, size: int = DEFAULT_SIZE) -> Path:
    """One raster of ``kind`` (a key of :data:`GENERATORS`) as ``folder/<kind>.tif``."""
    folder.mkdir(parents=True, exist_ok=True)
    return GENERATORS[kind](folder / f"{kind}.tif", size)  # type: ignore[operator]
