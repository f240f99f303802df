"""STAC endpoints: pgstac status and default collections, item extraction, search, collections and items.

Thin adapters over :mod:`services.stac`; links in responses are absolute, made from the request's URL.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlencode

import azure.functions as func
from pydantic import BaseModel, Field

from core.errors import NotFound
from infrastructure.context import get_app_context
from services.stac import catalog
from services.stac.extract import ExtractRequest, ExtractResult, extract_item
from services.stac.search import SearchQuery, SearchRequest, search
from triggers.http.api import endpoint, parse_body, parse_query

bp = func.Blueprint()  # type: ignore[no-untyped-call]

GEOJSON = "application/geo+json"


class CollectionCount(BaseModel):
    id: str
    items: int


class StacSetup(BaseModel):
    installed: bool = Field(description="Whether pgstac is installed in the database")
    pgstac_version: str | None = Field(description="pgstac's version")
    collections: list[CollectionCount] = Field(description="Every collection with its number of items")
    total_items: int
    default_collections: list[str] = Field(default_factory=list)
    missing_default_collections: list[str] = Field(default_factory=list, description="Made by POST /api/stac/init")


class StacInitResult(BaseModel):
    created: list[str] = Field(description="Default collections created by this call")
    existing: list[str] = Field(description="Default collections that were there already")


class ItemCollection(BaseModel):
    """A page of search results (a GeoJSON FeatureCollection of STAC items)."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[dict[str, Any]]
    numberReturned: int
    numberMatched: int | None = None
    links: list[dict[str, Any]] = Field(description="self, and next/prev with the paging token when there are more")


class CollectionList(BaseModel):
    collections: list[dict[str, Any]] = Field(description="STAC Collection documents")
    links: list[dict[str, Any]]


class StacDocument(BaseModel):
    """A STAC Collection or Item document (see the STAC specification)."""

    model_config = {"extra": "allow"}

    type: str
    id: str
    stac_version: str


def _stac_base(req: func.HttpRequest) -> str:
    """``http(s)://host/api/stac`` of this request."""
    return str(req.url).split("?", 1)[0].split("/stac/", 1)[0] + "/stac"


def _self(req: func.HttpRequest) -> dict[str, Any]:
    """The request's own URL, without a ``code`` (function key) query parameter."""
    base = str(req.url).split("?", 1)[0]
    query = {k: v for k, v in req.params.items() if k != "code"}
    return {"rel": "self", "href": f"{base}?{urlencode(query)}" if query else base, "type": "application/json"}


def _with_links(req: func.HttpRequest, document: dict[str, Any], kind: str) -> StacDocument:
    base = _stac_base(req)
    links = [link for link in document.get("links") or [] if link.get("rel") not in {"self", "root", "parent"}]
    if kind == "item":
        collection = f"{base}/collections/{document.get('collection')}"
        links = [link for link in links if link.get("rel") != "collection"]
        links += [
            {"rel": "collection", "href": collection, "type": "application/json"},
            {"rel": "parent", "href": collection, "type": "application/json"},
        ]
        links.append({"rel": "self", "href": f"{collection}/items/{document['id']}", "type": GEOJSON})
    else:
        links.append({"rel": "self", "href": f"{base}/collections/{document['id']}", "type": "application/json"})
        links.append({"rel": "items", "href": f"{base}/search?collections={document['id']}", "type": GEOJSON})
    return StacDocument.model_validate({**document, "links": links})


def _page(req: func.HttpRequest, request: SearchRequest, method: str) -> ItemCollection:
    ctx = get_app_context()
    page = search(ctx.db, request, ctx.settings.raster)
    url = f"{_stac_base(req)}/search"
    links: list[dict[str, Any]] = [_self(req)]
    for rel, token in (("next", page.next_token), ("prev", page.prev_token)):
        if not token:
            continue
        if method == "POST":
            body = {**request.model_dump(by_alias=True, exclude_none=True), "token": token}
            links.append({"rel": rel, "href": url, "type": GEOJSON, "method": "POST", "body": body})
        else:
            query = {k: v for k, v in req.params.items() if k not in {"token", "code"}}
            links.append({"rel": rel, "href": f"{url}?{urlencode({**query, 'token': token})}", "type": GEOJSON})
    return ItemCollection(
        features=[_with_links(req, feature, "item").model_dump() for feature in page.features],
        numberReturned=len(page.features),
        numberMatched=page.number_matched,
        links=links,
    )


@endpoint(
    bp,
    route="stac/setup",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("stac",),
    summary="Is pgstac installed, its version, and every collection with its item count",
    response_model=StacSetup,
    error_statuses=(503,),
)
def stac_setup(req: func.HttpRequest) -> StacSetup:
    return StacSetup.model_validate(catalog.pgstac_status(get_app_context().db))


@endpoint(
    bp,
    route="stac/init",
    methods=("POST",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("stac",),
    summary="Create the default collections (cogs, vectors, extracted); idempotent",
    response_model=StacInitResult,
    error_statuses=(503,),
)
def stac_init(req: func.HttpRequest) -> StacInitResult:
    made = catalog.ensure_default_collections(get_app_context().db)
    return StacInitResult(
        created=[cid for cid, created in made.items() if created],
        existing=[cid for cid, created in made.items() if not created],
    )


@endpoint(
    bp,
    route="stac/extract",
    methods=("POST",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("stac",),
    summary="Build the STAC item of a raster in storage; insert it when insert is true",
    response_model=ExtractResult,
    request_model=ExtractRequest,
    error_statuses=(400, 404, 503),
)
def stac_extract(req: func.HttpRequest) -> ExtractResult:
    """A blob that is missing is a 404; one that is not a readable raster, or has no CRS, a 400."""
    ctx = get_app_context()
    return extract_item(ctx.storage, ctx.db, parse_body(req, ExtractRequest))


@endpoint(
    bp,
    route="stac/search",
    methods=("POST",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("stac",),
    summary="Search items: collections, ids, bbox, intersects, datetime, CQL2-JSON filter, sortby, paging",
    response_model=ItemCollection,
    request_model=SearchRequest,
    error_statuses=(400, 503),
    content_type=GEOJSON,
)
def stac_search_post(req: func.HttpRequest) -> func.HttpResponse:
    """The next page is the ``next`` link's body (the same search with its ``token``)."""
    return _geojson(_page(req, parse_body(req, SearchRequest), "POST"))


@endpoint(
    bp,
    route="stac/search",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("stac",),
    summary="Search items with query parameters (lists comma-separated, intersects and filter as JSON)",
    response_model=ItemCollection,
    query_model=SearchQuery,
    error_statuses=(400, 503),
    content_type=GEOJSON,
)
def stac_search_get(req: func.HttpRequest) -> func.HttpResponse:
    """The next page is the ``next`` link (the same query with its ``token``)."""
    query = parse_query(_without_key(req), SearchQuery)
    return _geojson(_page(req, query.to_request(), "GET"))


def _without_key(req: func.HttpRequest) -> func.HttpRequest:
    if "code" not in req.params:
        return req
    params = {k: v for k, v in req.params.items() if k != "code"}
    return func.HttpRequest(req.method, req.url, headers=dict(req.headers), params=params, body=req.get_body())


def _geojson(page: ItemCollection) -> func.HttpResponse:
    return func.HttpResponse(page.model_dump_json(exclude_none=True), status_code=200, mimetype=GEOJSON)


@endpoint(
    bp,
    route="stac/collections",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("stac",),
    summary="Every STAC collection",
    response_model=CollectionList,
    error_statuses=(503,),
)
def stac_collections(req: func.HttpRequest) -> CollectionList:
    documents = catalog.list_collections(get_app_context().db)
    return CollectionList(
        collections=[_with_links(req, d, "collection").model_dump() for d in documents],
        links=[_self(req)],
    )


@endpoint(
    bp,
    route="stac/collections/{collection_id}",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("stac",),
    summary="One STAC collection (its extent covers its items)",
    response_model=StacDocument,
    error_statuses=(400, 404, 503),
)
def stac_collection(req: func.HttpRequest) -> StacDocument:
    collection_id = req.route_params["collection_id"]
    document = catalog.get_collection(get_app_context().db, collection_id)
    if document is None:
        raise NotFound(f"no STAC collection {collection_id!r}", collection_id=collection_id)
    return _with_links(req, document, "collection")


@endpoint(
    bp,
    route="stac/collections/{collection_id}/items/{item_id}",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("stac",),
    summary="One STAC item",
    response_model=StacDocument,
    error_statuses=(400, 404, 503),
    content_type=GEOJSON,
)
def stac_item(req: func.HttpRequest) -> func.HttpResponse:
    collection_id, item_id = req.route_params["collection_id"], req.route_params["item_id"]
    document = catalog.get_item(get_app_context().db, collection_id, item_id)
    if document is None:
        raise NotFound(
            f"no item {item_id!r} in STAC collection {collection_id!r}", collection_id=collection_id, item_id=item_id
        )
    body = _with_links(req, document, "item").model_dump_json()
    return func.HttpResponse(body, status_code=200, mimetype=GEOJSON)
