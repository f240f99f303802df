"""STAC items for rasters as they are in storage (``POST /api/stac/extract``), optionally inserted."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from infrastructure.db.database import Database
from infrastructure.storage.base import BlobStore
from services.stac.catalog import upsert_item
from services.stac.items import GEOTIFF_MEDIA_TYPE, build_raster_item, default_item_id, validate_stac_id

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

    container_name: str = Field(
        "bronze",
        min_length=1,
        max_length=63,
        validation_alias=AliasChoices("container_name", "container"),
        description="Storage container of the raster (also accepted as 'container')",
    )
    blob_name: str = Field(min_length=1, max_length=1024, description="The raster's blob name")
    collection_id: str = Field("extracted", min_length=1, max_length=255, description="Collection of the item")
    item_id: str | None = Field(
        None, min_length=1, max_length=255, description="Default: from the blob name, as process_raster makes it"
    )
    insert: bool = Field(False, description="Upsert the item into PgSTAC (the collection is created if missing)")


class ExtractResult(BaseModel):
    item: dict[str, Any] = Field(description="The STAC item (STAC 1.1 with projection and raster extensions)")
    inserted: bool = Field(description="Whether the item was upserted into PgSTAC")


def extract_item(storage: BlobStore, db: Database, request: ExtractRequest) -> ExtractResult:
    """The item for ``request.blob_name`` (a missing blob is BlobNotFound, a non-raster InvalidInput).

    The item's ``datetime`` is the raster's own date-time tag, else the blob's last-modified time: extracting
    the same blob again gives the same item (``created`` is kept by the upsert)."""
    validate_stac_id(request.collection_id, "collection id")
    item_id = validate_stac_id(request.item_id or default_item_id(request.blob_name))
    source = storage.gdal_path(request.container_name, request.blob_name)  # validates the names first
    blob = storage.properties(request.container_name, request.blob_name)  # a missing blob: BlobNotFound
    suffix = PurePosixPath(request.blob_name).suffix.lower()
    asset = {
        "href": storage.url(request.container_name, request.blob_name),
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
