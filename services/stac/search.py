"""STAC item search over pgstac's ``search()``: request models (POST body and GET query), pages, tokens.

:class:`SearchRequest` is the STAC API item-search body (``collections``, ``ids``, ``bbox``, ``intersects``,
``datetime``, ``limit``, ``token``, CQL2-JSON ``filter``, ``sortby``) checked before it reaches the
database, so bad input is an error naming the field. :func:`search` returns one page;
:func:`iter_search` follows the paging tokens.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime as _dt
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from shapely.geometry import shape

from core.errors import InvalidInput
from core.settings import RasterSettings
from infrastructure.db.database import Database
from services.stac.catalog import stac_transaction
from services.stac.cql2 import FilterError, check_filter, for_pgstac

GEOMETRY_TYPES = {
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
}
CQL2_LANG = "cql2-json"


class SortBy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1, max_length=200, description="A property name, 'id', 'datetime' or 'collection'")
    direction: Literal["asc", "desc"] = "asc"


#: an RFC 3339 date-time: a date, a time and a time zone (``Z`` or an offset), the fraction optional
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
#: the longest paging token: pgstac 0.10 hex-encodes the collection and item ids (255 characters each)
TOKEN_MAX_LENGTH = 2048


def _check_time(value: str, what: str) -> _dt | None:
    if value in ("", ".."):
        return None
    try:
        parsed = _dt.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{what} {value!r} is not an RFC 3339 date-time (e.g. 2024-05-01T00:00:00Z)") from None
    if parsed.tzinfo is None:
        raise ValueError(
            f"{what} {value!r} has no time zone: give an RFC 3339 date-time with Z or an offset "
            "(e.g. 2024-05-01T00:00:00Z); a date alone or a local time is ambiguous"
        )
    if not RFC3339.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not an RFC 3339 date-time (e.g. 2024-05-01T00:00:00Z)")
    return parsed


def antimeridian_multipolygon(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    """The GeoJSON MultiPolygon of a bbox crossing 180° (west > east): west..180 and -180..east."""

    def rectangle(left: float, right: float) -> list[list[list[float]]]:
        return [[[left, south], [right, south], [right, north], [left, north], [left, south]]]

    return {"type": "MultiPolygon", "coordinates": [rectangle(west, 180.0), rectangle(-180.0, east)]}


class SearchRequest(BaseModel):
    """The item-search parameters (STAC API - Item Search, with the Filter extension in CQL2-JSON)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    collections: list[str] | None = Field(None, max_length=1000, description="Collection ids to search in")
    ids: list[str] | None = Field(None, max_length=10_000, description="Item ids")
    bbox: list[float] | None = Field(
        None, description="[west, south, east, north] (or 6 numbers with heights) in WGS84; west > east crosses 180°"
    )
    intersects: dict[str, Any] | None = Field(None, description="A GeoJSON geometry the items must intersect")
    datetime: str | None = Field(
        None,
        max_length=100,
        description="An RFC 3339 date-time with Z or an offset, or an interval 'start/end' ('..' for an open end)",
    )
    limit: int | None = Field(None, ge=1, description="Items per page (default and maximum are settings)")
    token: str | None = Field(
        None, max_length=TOKEN_MAX_LENGTH, description="Paging token from a previous page's next/prev link"
    )
    filter: dict[str, Any] | None = Field(None, description="A CQL2-JSON filter expression")
    filter_lang: Literal["cql2-json"] | None = Field(None, alias="filter-lang", description="Only cql2-json")
    sortby: list[SortBy] | None = Field(None, max_length=20)

    @field_validator("collections", "ids")
    @classmethod
    def _names(cls, values: list[str] | None) -> list[str] | None:
        if values is not None:
            for value in values:
                if not value or len(value) > 255 or any(ord(c) < 32 for c in value):
                    raise ValueError(f"{value!r} is not an id (1 to 255 printable characters)")
        return values

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, bbox: list[float] | None) -> list[float] | None:
        if bbox is None:
            return None
        if len(bbox) not in (4, 6) or not all(math.isfinite(v) for v in bbox):
            raise ValueError("bbox must be 4 (or 6) finite numbers: west, south, east, north")
        half = len(bbox) // 2
        west, south, east, north = bbox[0], bbox[1], bbox[half], bbox[half + 1]
        if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
            raise ValueError("bbox must be in WGS84 with -180 <= west, east <= 180 and -90 <= south <= north <= 90")
        return bbox

    @field_validator("intersects")
    @classmethod
    def _intersects(cls, geometry: dict[str, Any] | None) -> dict[str, Any] | None:
        if geometry is None:
            return None
        if geometry.get("type") not in GEOMETRY_TYPES:
            raise ValueError(f"intersects must be a GeoJSON geometry (type one of {', '.join(sorted(GEOMETRY_TYPES))})")
        try:
            parsed = shape(geometry)
        except Exception as exc:  # shapely raises several kinds for malformed coordinates
            raise ValueError(f"intersects is not a valid GeoJSON geometry: {exc}") from None
        if parsed.is_empty:
            raise ValueError("intersects is an empty geometry")
        return geometry

    @field_validator("datetime")
    @classmethod
    def _datetime(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split("/")
        if len(parts) > 2 or parts == ["", ""] or parts == ["..", ".."] or (len(parts) == 1 and parts[0] in ("", "..")):
            raise ValueError(
                f"datetime {value!r} must be an instant or an interval 'start/end' with one end at most open"
            )
        times = [_check_time(p, "datetime") for p in parts]
        start, end = (times[0], times[-1]) if len(times) == 2 else (None, None)
        if start is not None and end is not None and start > end:
            raise ValueError(f"datetime {value!r}: the start is after the end")
        return value

    @field_validator("filter")
    @classmethod
    def _filter(cls, expression: dict[str, Any] | None) -> dict[str, Any] | None:
        if expression is None:
            return None
        try:
            check_filter(expression)
        except FilterError as exc:
            raise ValueError(str(exc)) from None
        return expression

    @model_validator(mode="after")
    def _exclusive(self) -> SearchRequest:
        if self.bbox is not None and self.intersects is not None:
            raise ValueError("give bbox or intersects, not both")
        return self

    def pgstac_body(self, settings: RasterSettings) -> dict[str, Any]:
        """The JSON pgstac's ``search()`` takes, with the page size settled (over the maximum: InvalidInput)."""
        limit = settings.stac_search_default_limit if self.limit is None else self.limit
        if limit > settings.stac_search_max_limit:
            raise InvalidInput(
                f"limit {limit} is over the maximum of {settings.stac_search_max_limit} items per page",
                field="limit",
            )
        body: dict[str, Any] = {"limit": limit}
        for name in ("collections", "ids", "bbox", "intersects", "datetime", "token"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.bbox is not None:
            half = len(self.bbox) // 2
            west, south, east, north = self.bbox[0], self.bbox[1], self.bbox[half], self.bbox[half + 1]
            if west > east:  # pgstac would search east..west, the rest of the world: send the two halves
                del body["bbox"]
                body["intersects"] = antimeridian_multipolygon(west, south, east, north)
        if self.filter is not None:
            body["filter"] = for_pgstac(self.filter)
            body["filter-lang"] = CQL2_LANG
        if self.sortby:
            body["sortby"] = [s.model_dump() for s in self.sortby]
        return body


class SearchQuery(BaseModel):
    """``GET /api/stac/search`` query parameters: lists comma-separated, ``intersects`` and ``filter`` as JSON."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    collections: str | None = Field(None, max_length=100_000, description="Comma-separated collection ids")
    ids: str | None = Field(None, max_length=100_000, description="Comma-separated item ids")
    bbox: str | None = Field(None, max_length=1000, description="west,south,east,north")
    intersects: str | None = Field(None, max_length=200_000, description="A GeoJSON geometry as JSON text")
    datetime: str | None = Field(None, max_length=100, description="RFC 3339 with Z or an offset, or 'start/end'")
    limit: int | None = Field(None, ge=1)
    token: str | None = Field(None, max_length=TOKEN_MAX_LENGTH)
    filter: str | None = Field(None, max_length=200_000, description="A CQL2-JSON filter as JSON text")
    filter_lang: str | None = Field(None, alias="filter-lang", description="cql2-json (cql2-text is not supported)")
    sortby: str | None = Field(None, max_length=2000, description="Comma-separated fields, '-' prefix for descending")

    def to_request(self) -> SearchRequest:
        """The same search as a :class:`SearchRequest`; bad values are InvalidInput naming the parameter."""
        body: dict[str, Any] = {}
        if self.collections:
            body["collections"] = _split(self.collections)
        if self.ids:
            body["ids"] = _split(self.ids)
        if self.bbox:
            try:
                body["bbox"] = [float(v) for v in _split(self.bbox)]
            except ValueError:
                raise InvalidInput(f"bbox {self.bbox!r} must be comma-separated numbers", field="bbox") from None
        if self.filter_lang is not None and self.filter_lang != CQL2_LANG:
            raise InvalidInput(
                f"filter-lang {self.filter_lang!r} is not supported: send the filter as CQL2-JSON",
                field="filter-lang",
            )
        for name in ("intersects", "filter"):
            text = getattr(self, name)
            if text:
                try:
                    body[name] = json.loads(text)
                except ValueError:
                    raise InvalidInput(
                        f"{name} must be JSON ({'GeoJSON' if name == 'intersects' else 'CQL2-JSON'})", field=name
                    ) from None
        if self.sortby:
            body["sortby"] = [
                {"field": s.lstrip("+-"), "direction": "desc" if s.startswith("-") else "asc"}
                for s in _split(self.sortby)
            ]
        for name in ("datetime", "limit", "token"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return parse_search(body)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_search(body: Mapping[str, Any]) -> SearchRequest:
    """``body`` validated as a :class:`SearchRequest`; InvalidInput naming every bad field."""
    try:
        return SearchRequest.model_validate(dict(body))
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise InvalidInput("invalid search: " + "; ".join(problems), errors=problems) from None


@dataclass
class SearchPage:
    """One page of results: the GeoJSON features and the tokens of the neighbouring pages."""

    features: list[dict[str, Any]]
    next_token: str | None = None
    prev_token: str | None = None
    number_matched: int | None = None
    body: dict[str, Any] = field(default_factory=dict)

    def feature_collection(self) -> dict[str, Any]:
        collection: dict[str, Any] = {
            "type": "FeatureCollection",
            "features": self.features,
            "numberReturned": len(self.features),
        }
        if self.number_matched is not None:
            collection["numberMatched"] = self.number_matched
        return collection


def _token(links: list[dict[str, Any]], rel: str) -> str | None:
    for link in links:
        if link.get("rel") == rel and isinstance(link.get("href"), str):
            values = parse_qs(urlsplit(str(link["href"])).query).get("token")
            if values:
                return str(values[0])
    return None


def search(db: Database, request: SearchRequest, settings: RasterSettings) -> SearchPage:
    """One page of the search (pgstac ``search()``); a bad filter or token is InvalidInput."""
    body = request.pgstac_body(settings)
    refused = "filter refused" if request.filter is not None else "search refused"
    with stac_transaction(db, refused=refused) as conn:
        row = conn.execute("SELECT search(%s) AS result", (Jsonb(body),)).fetchone()
    result: dict[str, Any] = dict(row["result"]) if row and row["result"] else {}
    links = result.get("links") or []
    matched = result.get("numberMatched")
    if matched is None and isinstance(result.get("context"), dict):
        matched = result["context"].get("matched")
    return SearchPage(
        features=list(result.get("features") or []),
        next_token=_token(links, "next"),
        prev_token=_token(links, "prev"),
        number_matched=matched if isinstance(matched, int) else None,
        body=body,
    )


def iter_search(
    db: Database, request: SearchRequest, settings: RasterSettings, max_items: int | None = None
) -> Iterator[dict[str, Any]]:
    """Every matching item (at most ``max_items``), fetched page by page with the paging tokens."""
    current = request
    produced = 0
    while True:
        page = search(db, current, settings)
        for feature in page.features:
            if max_items is not None and produced >= max_items:
                return
            produced += 1
            yield feature
        if not page.next_token or not page.features or (max_items is not None and produced >= max_items):
            return
        current = current.model_copy(update={"token": page.next_token})
