"""Cloud-optimized GeoTIFFs per tier, written with rio-cogeo in its GTiff mode.

* visualization: JPEG at quality 85 (``JPEG_QUALITY``: GTiff's option; ``QUALITY`` is the COG driver's and
  would be silently ignored here), YCbCr for 3 bands, alpha or nodata as an internal mask;
* analysis: DEFLATE with predictor 2 (integers) or 3 (floats), every band;
* archive: LZW with the same predictor, every band, band and namespace tags forwarded.

Overviews use the resampling the tier plan chose (average for continuous data, mode for classes). The
source may be reprojected to ``target_crs`` (or given ``input_crs``) through a ``WarpedVRT``. Every file
is checked with ``cog_validate`` before it is returned.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rio_cogeo.cogeo import cog_translate, cog_validate

from core.errors import GeoetlError, InvalidInput
from infrastructure.storage.base import GdalPath
from services.raster.inspect import (
    Probe,
    TierPlan,
    error_chain,
    is_read_failure,
    open_source,
    parse_crs,
    source_error,
    warp_resampling,
)

#: below this many uncompressed bytes rio-cogeo builds the intermediate file in memory (default of
#: RASTER_IN_MEMORY_MAX_MB: several tasks share a worker's memory)
IN_MEMORY_MAX_BYTES = 64 * 1024 * 1024
#: GDAL's words for a failure writing the output (not the source's fault)
_WRITE_FAILURE = ("No space left", "disk space", "Free disk space", "Permission denied")
MIN_BLOCKSIZE = 256


class CogInvalid(GeoetlError):
    """A written file did not pass COG validation."""

    code = "cog_invalid"


@dataclass(frozen=True)
class CogOutput:
    """A written, validated COG and what it is."""

    path: Path
    size: int
    tier: str
    compression: str
    predictor: int | None
    quality: int | None
    crs: str
    width: int
    height: int
    count: int
    dtype: str
    overviews: list[int]
    blocksize: int


def blocksize_for(width: int, height: int, configured: int) -> int:
    """The configured tile size, halved (not below 256) until the raster spans at least two tiles."""
    size = configured
    while size > MIN_BLOCKSIZE and max(width, height) < 2 * size:
        size //= 2
    return size


def creation_options(plan: TierPlan, blocksize: int, threads: str) -> dict[str, Any]:
    """GTiff creation options of a tier (rio-cogeo passes them to GDAL's CreateCopy)."""
    if plan.compression is None:
        raise InvalidInput(f"the {plan.tier} tier cannot be made: {plan.reason}")
    options: dict[str, Any] = {
        "driver": "GTiff",
        "interleave": "pixel",
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "compress": plan.compression,
        "num_threads": threads,
        "bigtiff": "IF_SAFER",
    }
    if plan.compression == "JPEG":
        options["jpeg_quality"] = plan.quality  # GTiff spelling; QUALITY is ignored by the GTiff driver
        if plan.photometric:
            options["photometric"] = plan.photometric
    if plan.predictor is not None:
        options["predictor"] = plan.predictor
    return options


@contextlib.contextmanager
def _source_dataset(
    dataset: DatasetReader, raster_type: str, input_crs: str | None, target_crs: str | None, nodata: float | None
) -> Iterator[DatasetReader | WarpedVRT]:
    """The dataset to translate: the file itself, or a WarpedVRT that adds input_crs and/or reprojects."""
    if target_crs is None and (dataset.crs is not None or input_crs is None):
        yield dataset
        return
    src_crs = dataset.crs if dataset.crs is not None else parse_crs(input_crs or "")
    vrt_options: dict[str, Any] = {"resampling": Resampling[warp_resampling(raster_type)]}
    if dataset.crs is None:
        vrt_options["src_crs"] = src_crs
        vrt_options["src_transform"] = dataset.transform
    src_nodata = nodata if nodata is not None else dataset.nodata
    if src_nodata is not None:
        vrt_options.update(src_nodata=src_nodata, nodata=src_nodata)
    if target_crs is None:
        # only the CRS is added: keep the grid exactly
        vrt_options.update(crs=src_crs, transform=dataset.transform, width=dataset.width, height=dataset.height)
    else:
        dst_crs = parse_crs(target_crs, "target_crs")
        vrt_options["crs"] = dst_crs
        vrt_options.update(_antimeridian_grid(dataset, src_crs, dst_crs))
        if src_nodata is None and not _has_alpha(dataset):
            vrt_options["add_alpha"] = True  # the area outside the source is transparent, not black
    with WarpedVRT(dataset, **vrt_options) as vrt:
        yield vrt


def _antimeridian_grid(dataset: DatasetReader, src_crs: CRS, dst_crs: CRS) -> dict[str, Any]:
    """For a geographic target and a source across the antimeridian: a grid running past 180° east.

    GDAL's default grid would span -180..180 (the whole globe, mostly empty, at a coarse resolution);
    longitudes above 180 keep the raster in one piece (e.g. 178..182), and PROJ maps them back.
    """
    if not dst_crs.is_geographic:
        return {}
    west, south, east, north = transform_bounds(src_crs, dst_crs, *dataset.bounds, densify_pts=21)
    if west <= east:
        return {}
    east += 360.0
    res = math.sqrt((east - west) * (north - south) / (dataset.width * dataset.height))
    width, height = max(1, math.ceil((east - west) / res)), max(1, math.ceil((north - south) / res))
    return {"transform": Affine(res, 0.0, west, 0.0, -res, north), "width": width, "height": height}


def _has_alpha(dataset: DatasetReader) -> bool:
    return any(ci.name == "alpha" for ci in dataset.colorinterp)


def make_cog(
    source: GdalPath | str,
    destination: Path,
    plan: TierPlan,
    *,
    raster_type: str,
    input_crs: str | None = None,
    target_crs: str | None = None,
    nodata: float | None = None,
    blocksize: int = 512,
    threads: str = "ALL_CPUS",
    in_memory_max_bytes: int = IN_MEMORY_MAX_BYTES,
    probe: Probe | None = None,
) -> CogOutput:
    """Write one tier of ``source`` to ``destination`` (a local path) and validate it.

    A source that cannot be read (a corrupt block anywhere in it) is ``InvalidInput``; a blob that cannot be
    read because storage failed is ``StorageUnavailable`` (see ``services.raster.inspect.source_error``).
    """
    if not plan.possible:
        raise InvalidInput(f"the {plan.tier} tier cannot be made: {plan.reason}")
    with open_source(source, probe) as dataset:
        tile = blocksize_for(dataset.width, dataset.height, blocksize)
        options = creation_options(plan, tile, threads)
        with _source_dataset(dataset, raster_type, input_crs, target_crs, nodata) as src:
            indexes: list[int] | None = plan.bands or None
            add_mask = plan.mask
            if src is not dataset and src.count > dataset.count:
                # the warp added an alpha band for the area outside the source: it becomes an internal mask
                add_mask = True
            elif plan.compression == "JPEG" and _has_alpha(src):
                add_mask = True
                indexes = None  # rio-cogeo drops the alpha band itself when it becomes the mask
            uncompressed = src.width * src.height * src.count * np.dtype(src.dtypes[0]).itemsize
            lossless = plan.compression != "JPEG"
            bands = _band_metadata(dataset, plan.bands or list(range(1, dataset.count + 1))) if lossless else []
            try:
                cog_translate(
                    src,
                    str(destination),
                    options,
                    indexes=indexes,
                    nodata=nodata,
                    add_mask=add_mask,
                    overview_resampling=plan.overview_resampling,  # type: ignore[arg-type]
                    resampling=warp_resampling(raster_type),  # type: ignore[arg-type]
                    in_memory=uncompressed <= in_memory_max_bytes,
                    config={"GDAL_NUM_THREADS": threads},
                    forward_band_tags=plan.forward_tags,
                    # the source's own tags: a WarpedVRT has none; GeoTIFF keeps only the default namespace
                    additional_cog_metadata=_dataset_metadata(dataset, namespaces=plan.tier == "archive"),
                    quiet=True,
                )
            except GeoetlError:
                raise
            except Exception as exc:
                if _is_source_failure(exc, destination):
                    # (validation read the first and last blocks: a block that comes back short now is the
                    # connection's fault, a block that does not decode is the file's)
                    raise source_error(
                        exc,
                        source,
                        f"the source is corrupt (reading it for the {plan.tier} tier failed)",
                        probe=probe,
                        short_read_is_outage=True,
                    ) from exc
                raise
    if bands:
        _restore_band_metadata(destination, bands, options)
    return describe_cog(destination, plan, tile)


#: metadata namespaces that describe the file's encoding or structure, not the data: never carried over
_STRUCTURAL_NAMESPACES = {"IMAGE_STRUCTURE", "DERIVED_SUBDATASETS", "SUBDATASETS", "RPC", "GEOLOCATION", "IMD"}


def _dataset_metadata(dataset: DatasetReader, namespaces: bool) -> dict[str, str]:
    """The source's default-namespace tags, plus (``namespaces``) the tags of its other namespaces as
    ``<NAMESPACE>.<key>`` (GDAL reads a colon as a separator): GDAL's GeoTIFF copy keeps only the default namespace."""
    tags = {key: value for key, value in dataset.tags().items() if key != "OVERVIEW_RESAMPLING"}
    if namespaces:
        for ns in dataset.tag_namespaces():
            if ns in _STRUCTURAL_NAMESPACES or ns.startswith("xml:") or not ns:
                continue
            tags.update({f"{ns}.{key}": value for key, value in dataset.tags(ns=ns).items()})
    return tags


def _band_metadata(dataset: DatasetReader, indexes: list[int]) -> list[dict[str, Any]]:
    """Per written band: description, tags, unit, scale and offset of the source band."""
    return [
        {
            "description": dataset.descriptions[b - 1],
            "tags": dataset.tags(b),
            "unit": dataset.units[b - 1] or None,
            "scale": dataset.scales[b - 1],
            "offset": dataset.offsets[b - 1],
        }
        for b in indexes
    ]


def _restore_band_metadata(path: Path, expected: list[dict[str, Any]], options: dict[str, Any]) -> None:
    """Put back band metadata the conversion lost (rio-cogeo never writes units; a WarpedVRT carries no
    descriptions or band tags). Updating a COG in place breaks its layout, so the file is updated as a copy
    and written again with its overviews (COPY_SRC_OVERVIEWS): lossless tiers only, and only when needed."""
    with rasterio.open(path) as written:
        actual = _band_metadata(written, list(range(1, len(expected) + 1)))
    if all(
        a["description"] == e["description"]
        and a["unit"] == e["unit"]
        and (a["scale"], a["offset"]) == (e["scale"], e["offset"])
        and e["tags"].items() <= a["tags"].items()
        for a, e in zip(actual, expected, strict=True)
    ):
        return
    staging = path.with_name(f"{path.stem}.metadata{path.suffix}")
    path.replace(staging)
    try:
        with rasterio.open(staging, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dataset:
            for index, band in enumerate(expected, start=1):
                if band["description"]:
                    dataset.set_band_description(index, band["description"])
                if band["tags"]:
                    dataset.update_tags(index, **band["tags"])
            dataset.units = tuple(band["unit"] or "" for band in expected)
            dataset.scales = tuple(band["scale"] for band in expected)
            dataset.offsets = tuple(band["offset"] for band in expected)
        copy_options = {k: v for k, v in options.items() if k != "driver"}
        rasterio.shutil.copy(staging, path, driver="GTiff", copy_src_overviews=True, **copy_options)
    finally:
        staging.unlink(missing_ok=True)


def _is_source_failure(exc: BaseException, destination: Path) -> bool:
    """Whether a conversion failed reading the source (not writing the output, not a bug of ours)."""
    text = " ".join(str(e) for e in error_chain(exc))
    if any(word in text for word in _WRITE_FAILURE) or (destination.name in text and "IReadBlock" not in text):
        return False
    return is_read_failure(exc)


def validate_cog(path: Path) -> None:
    """CogInvalid (permanent) unless ``path`` passes rio-cogeo's validation."""
    valid, errors, _warnings = cog_validate(str(path), quiet=True)
    if not valid:
        raise CogInvalid(f"the written file is not a valid COG: {'; '.join(errors)}", errors=errors)


def describe_cog(path: Path, plan: TierPlan, blocksize: int) -> CogOutput:
    """Validate ``path`` and read back what it holds."""
    validate_cog(path)
    with rasterio.open(path) as written:
        structure = written.tags(ns="IMAGE_STRUCTURE")
        predictor = structure.get("PREDICTOR")
        quality = structure.get("JPEG_QUALITY")
        crs = written.crs
        return CogOutput(
            path=path,
            size=path.stat().st_size,
            tier=plan.tier,
            compression=plan.compression or "",
            predictor=int(predictor) if predictor else None,
            quality=int(quality) if quality else None,
            crs=f"EPSG:{crs.to_epsg()}" if crs is not None and crs.to_epsg() else (crs.to_wkt() if crs else ""),
            width=written.width,
            height=written.height,
            count=written.count,
            dtype=written.dtypes[0],
            overviews=written.overviews(1),
            blocksize=blocksize,
        )


#: the prefix of the temp folders the COG tasks write into (see services/raster/publish.py)
TEMP_PREFIX = "raster-"


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def sweep_stale_temp_dirs(base: Path, max_age_seconds: float, now: float | None = None) -> int:
    """Remove ``raster-*`` folders under ``base`` untouched for ``max_age_seconds``: left by workers that were
    killed (out of memory, function timeout) before their ``finally`` ran. Returns how many were removed."""
    if not base.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - max_age_seconds
    removed = 0
    for folder in base.glob(f"{TEMP_PREFIX}*"):
        try:
            if folder.is_dir() and not folder.is_symlink() and folder.stat().st_mtime < cutoff:
                remove_tree(folder)
                removed += 1
        except OSError:  # another worker removed it meanwhile
            continue
    return removed
