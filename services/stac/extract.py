"""STAC items for rasters as they are in storage (``POST /api/stac/extract``), optionally inserted."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from infrastructure.db.database import Database
from infrastructure.storage.base import BlobStore
from services.stac.catalog import upsert_item
from services.stac.items import GEOTIFF_MEDIA_TYPE, build_raster_item, validate_stac_id

_NOT_ID = re.compile(r"[^A-Za-z0-9._~:-]+")
_MEDIA_TYPES = {
    ".tif": GEOTIFF_MEDIA_TYPE,
    ".tiff": GEOTIFF_MEDIA_TYPE,
    ".jp2": "image/jp2",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".nc": "application/netcdf",
    ".vrt": "application/xml",
}


class ExtractRequest(BaseModel):
    """Which blob to describe, in which collection, and whether to insert the item."""

    model_config = ConfigDict(extra="forbid")

    container: str = Field("bronze", min_length=1, max_length=63, description="Storage container of the raster")
    blob_name: str = Field(min_length=1, max_length=1024, description="The raster's blob name")
    collection_id: str = Field("extracted", min_length=1, max_length=255, description="Collection of the item")
    item_id: str | None = Field(None, min_length=1, max_length=255, description="Default: from the blob name")
    insert: bool = Field(False, description="Upsert the item into PgSTAC (the collection is created if missing)")


class ExtractResult(BaseModel):
    item: dict[str, Any] = Field(description="The STAC item (STAC 1.1 with projection and raster extensions)")
    inserted: bool = Field(description="Whether the item was upserted into PgSTAC")


def item_id_for(blob_name: str) -> str:
    """A STAC id from a blob name: the path without its extension, other characters as ``-``."""
    path = PurePosixPath(blob_name)
    stem = str(path.with_suffix("")) if path.suffix else blob_name
    candidate = _NOT_ID.sub("-", stem).strip("-._~:")[:255]
    return candidate or "item"


def extract_item(storage: BlobStore, db: Database, request: ExtractRequest) -> ExtractResult:
    """The item for ``request.blob_name`` (a missing blob is BlobNotFound, a non-raster InvalidInput).

    The item's ``datetime`` is the raster's own date-time tag, else the blob's last-modified time: extracting
    the same blob again gives the same item (``created`` is kept by the upsert)."""
    validate_stac_id(request.collection_id, "collection id")
    item_id = validate_stac_id(request.item_id or item_id_for(request.blob_name))
    source = storage.gdal_path(request.container, request.blob_name)  # validates the names first
    blob = storage.properties(request.container, request.blob_name)  # a missing blob: BlobNotFound
    suffix = PurePosixPath(request.blob_name).suffix.lower()
    asset = {
        "href": storage.url(request.container, request.blob_name),
        "type": _MEDIA_TYPES.get(suffix, GEOTIFF_MEDIA_TYPE if not suffix else "application/octet-stream"),
        "roles": ["data"],
        "file:size": blob.size,
    }
    item = build_raster_item(
        source,
        item_id=item_id,
        collection_id=request.collection_id,
        assets={"data": asset},
        fallback_datetime=blob.last_modified,  # a raster without a date of its own: when it was written
    )
    if request.insert:
        upsert_item(db, item)
    return ExtractResult(item=item, inserted=request.insert)
