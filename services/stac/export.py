"""A whole STAC search collected in one go (the ``stac_search`` job): small results inline, large ones as GeoJSON.

The features are streamed page by page into a temporary GeoJSON file; when there are more than the inline
threshold the file is uploaded to a deterministic blob (a retried task overwrites it) and the result holds
its address and the count, otherwise the result holds the features themselves.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from core.settings import RasterSettings
from infrastructure.db.database import Database
from infrastructure.storage.base import BlobStore
from services.stac.search import SearchRequest, iter_search

GEOJSON_MEDIA_TYPE = "application/geo+json"


def export_search(
    db: Database,
    storage: BlobStore,
    request: SearchRequest,
    settings: RasterSettings,
    *,
    container: str,
    blob_name: str,
    max_items: int,
    inline_max: int,
) -> dict[str, Any]:
    """Run the search to the end (at most ``max_items`` items): ``{"count", "truncated", "features" | "blob"}``."""
    fd, temp = tempfile.mkstemp(prefix="stac-search-", suffix=".geojson")
    try:
        count = 0
        inline: list[dict[str, Any]] = []
        collections: set[str] = set()
        truncated = False
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write('{"type":"FeatureCollection","features":[')
            for feature in iter_search(db, request, settings, max_items=max_items + 1):
                if count == max_items:  # an item beyond the limit exists
                    truncated = True
                    break
                if count:
                    out.write(",")
                out.write(json.dumps(feature, separators=(",", ":")))
                if count < inline_max + 1:
                    inline.append(feature)
                if feature.get("collection"):
                    collections.add(str(feature["collection"]))
                count += 1
            out.write(f'],"numberReturned":{count}}}')
        result: dict[str, Any] = {"count": count, "truncated": truncated, "collections": sorted(collections)}
        if count <= inline_max:
            result["features"] = inline
            return result
        props = storage.upload_file(container, blob_name, Path(temp), content_type=GEOJSON_MEDIA_TYPE)
        result["blob"] = {
            "container": container,
            "name": blob_name,
            "size": props.size,
            "url": storage.url(container, blob_name),
        }
        return result
    finally:
        Path(temp).unlink(missing_ok=True)
