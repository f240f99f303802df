"""Container endpoints: ``GET /api/containers/{container}/blobs`` lists blobs a page at a time."""

from __future__ import annotations

import azure.functions as func
from pydantic import BaseModel, Field

from infrastructure.context import get_app_context
from services.container.listing import blob_page
from triggers.http.api import endpoint, parse_query

bp = func.Blueprint()  # type: ignore[no-untyped-call]


class BlobListQuery(BaseModel):
    prefix: str = Field("", max_length=1024, description="Only blobs whose names start with this")
    limit: int = Field(100, ge=1, le=5000, description="Blobs per page")
    cursor: str | None = Field(None, min_length=1, max_length=8192, description="next_cursor of the previous page")


class BlobView(BaseModel):
    name: str
    size_bytes: int
    content_type: str | None
    last_modified: str | None = Field(description="ISO 8601, UTC")
    etag: str | None


class BlobList(BaseModel):
    container: str
    prefix: str
    blobs: list[BlobView]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page")


@endpoint(
    bp,
    route="containers/{container}/blobs",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("containers",),
    summary="Blobs of a container in name order, a page at a time (prefix filter, cursor paging)",
    response_model=BlobList,
    query_model=BlobListQuery,
    error_statuses=(400, 404, 503),
)
def list_container_blobs(req: func.HttpRequest) -> BlobList:
    """A missing container is a 404; a bad cursor, prefix or limit a 400."""
    query = parse_query(req, BlobListQuery)
    container = req.route_params["container"]
    page = blob_page(get_app_context().storage, container, query.prefix, query.limit, query.cursor)
    return BlobList(
        container=container,
        prefix=query.prefix,
        blobs=[BlobView(**b) for b in page.blobs],
        next_cursor=page.next_cursor,
    )
