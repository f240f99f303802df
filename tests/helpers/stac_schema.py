"""Validate STAC items and collections against JSON schemas offline (no network exists here).

The core schemas (STAC 1.1.0 item, collection and their parts, GeoJSON Feature/Geometry) are the files
pystac ships in ``pystac/validation/jsonschemas``; they are loaded into a ``referencing`` registry under
their ``$id`` and under the URL their siblings use to refer to them, so no ``$ref`` leaves the machine.

The pystac-ext-* wheels ship Python code only, no JSON schemas. For the extensions our items use
(projection v2.0.0, raster v1.1.0, file v2.1.0) this module holds schemas written here from the
extensions' field tables: every field's type, ranges and enumerations, and the rule that an item using
an extension's fields lists its schema URL in ``stac_extensions``. An item listing an extension this
module has no schema for fails validation (it could not be checked offline).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pystac
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
FILE = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
ITEM = "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"
COLLECTION = "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json"

_NUMBER_OR_SPECIAL = {"oneOf": [{"type": "number"}, {"type": "string", "enum": ["nan", "inf", "-inf"]}]}
_DATA_TYPES = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "cint16", "cint32", "cfloat32", "cfloat64", "other",
]  # fmt: skip


def _extension(url: str, prefix: str, fields: dict[str, Any], *, in_properties: bool = True) -> dict[str, Any]:
    """An extension schema: the fields' rules in assets (and item properties), the URL listed in
    ``stac_extensions``, and at least one of the fields used somewhere."""
    field_rules = {"type": "object", "properties": fields}
    places: list[dict[str, Any]] = [{"properties": {"assets": {"type": "object", "additionalProperties": field_rules}}}]
    has_field = {"anyOf": [{"required": [name]} for name in fields]}
    used_somewhere: list[dict[str, Any]] = [
        {"properties": {"assets": {"not": {"additionalProperties": {"not": has_field}}}}}
    ]  # some asset has one of the fields
    if in_properties:
        places.append({"properties": {"properties": field_rules}})
        used_somewhere.append({"properties": {"properties": has_field}})
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": url,
        "type": "object",
        "required": ["stac_extensions"],
        "properties": {"stac_extensions": {"type": "array", "contains": {"const": url}}},
        "allOf": [*places, {"anyOf": used_somewhere}],
    }


_BBOX = {
    "type": "array",
    "items": {"type": "number"},
    "oneOf": [{"minItems": 4, "maxItems": 4}, {"minItems": 6, "maxItems": 6}],
}

PROJECTION_SCHEMA = _extension(
    PROJECTION,
    "proj",
    {
        "proj:code": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+$"},
        "proj:wkt2": {"type": ["string", "null"], "minLength": 1},
        "proj:projjson": {"type": ["object", "null"]},
        "proj:geometry": {"$ref": "https://geojson.org/schema/Geometry.json"},
        "proj:bbox": _BBOX,
        "proj:centroid": {
            "type": "object",
            "required": ["lat", "lon"],
            "properties": {
                "lat": {"type": "number", "minimum": -90, "maximum": 90},
                "lon": {"type": "number", "minimum": -180, "maximum": 180},
            },
        },
        "proj:shape": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "integer", "minimum": 0}},
        "proj:transform": {
            "type": "array",
            "items": {"type": "number"},
            "oneOf": [{"minItems": 6, "maxItems": 6}, {"minItems": 9, "maxItems": 9}],
        },
    },
)

_STATISTICS = {
    "type": "object",
    "minProperties": 1,
    "properties": {
        "mean": {"type": "number"},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "stddev": {"type": "number"},
        "valid_percent": {"type": "number", "minimum": 0, "maximum": 100},
    },
}
_BAND = {
    "type": "object",
    "minProperties": 1,
    "properties": {
        "nodata": _NUMBER_OR_SPECIAL,
        "sampling": {"type": "string", "enum": ["area", "point"]},
        "data_type": {"type": "string", "enum": _DATA_TYPES},
        "bits_per_sample": {"type": "integer", "minimum": 1},
        "spatial_resolution": {"type": "number", "exclusiveMinimum": 0},
        "statistics": _STATISTICS,
        "unit": {"type": "string"},
        "scale": {"type": "number"},
        "offset": {"type": "number"},
        "histogram": {
            "type": "object",
            "required": ["count", "min", "max", "buckets"],
            "properties": {
                "count": {"type": "integer", "minimum": 1},
                "min": {"type": "number"},
                "max": {"type": "number"},
                "buckets": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            },
        },
    },
}
RASTER_SCHEMA = _extension(
    RASTER, "raster", {"raster:bands": {"type": "array", "minItems": 1, "items": _BAND}}, in_properties=False
)

FILE_SCHEMA = _extension(
    FILE,
    "file",
    {
        "file:size": {"type": "integer", "minimum": 0},
        "file:checksum": {"type": "string", "pattern": "^[a-f0-9]+$", "minLength": 6},
        "file:header_size": {"type": "integer", "minimum": 0},
        "file:byte_order": {"type": "string", "enum": ["big-endian", "little-endian"]},
        "file:local_path": {"type": "string", "pattern": "^[^\\\\/].*$"},
        "file:values": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["values", "summary"]}},
    },
)

EXTENSIONS = {PROJECTION: PROJECTION_SCHEMA, RASTER: RASTER_SCHEMA, FILE: FILE_SCHEMA}


@cache
def registry() -> Registry:  # type: ignore[type-arg]
    """Every schema this module knows, under every URL it is referred to by."""
    base = Path(pystac.__file__).parent / "validation" / "jsonschemas"
    resources: list[tuple[str, Resource]] = []  # type: ignore[type-arg]
    for path in sorted(base.rglob("*.json")):
        document = json.loads(path.read_text())
        resource = DRAFT7.create_resource(document)
        relative = path.relative_to(base).as_posix()
        if relative.startswith("geojson/"):
            resources.append((f"https://geojson.org/schema/{path.name}", resource))
        else:  # stac-spec/v1.1.0/<name>.json: item-spec or collection-spec / catalog-spec
            version = path.parent.name
            spec = {"collection.json": "collection-spec", "catalog.json": "catalog-spec"}.get(path.name, "item-spec")
            resources.append((f"https://schemas.stacspec.org/{version}/{spec}/json-schema/{path.name}", resource))
        if "$id" in document:
            resources.append((document["$id"].rstrip("#"), resource))
    for url, schema in EXTENSIONS.items():
        resources.append((url, DRAFT7.create_resource(schema)))
    return Registry().with_resources(resources)  # type: ignore[no-any-return]


def _errors(instance: Mapping[str, Any], url: str) -> list[str]:
    schema = registry().contents(url)
    validator = jsonschema.Draft7Validator(schema, registry=registry(), format_checker=jsonschema.FormatChecker())
    return [f"{url}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def item_errors(item: Mapping[str, Any]) -> list[str]:
    """Every way ``item`` breaks the STAC 1.1.0 item schema or the schemas of the extensions it lists."""
    errors = _errors(item, ITEM)
    for url in item.get("stac_extensions") or []:
        if url not in EXTENSIONS:
            errors.append(f"{url}: no offline schema for this extension")
        else:
            errors.extend(_errors(item, url))
    used = {key.split(":", 1)[0] for key in item.get("properties", {}) if ":" in key}
    for asset in (item.get("assets") or {}).values():
        used.update(key.split(":", 1)[0] for key in asset if ":" in key)
    listed = {
        prefix
        for prefix, url in (("proj", PROJECTION), ("raster", RASTER), ("file", FILE))
        if url in (item.get("stac_extensions") or [])
    }
    errors.extend(
        f"fields {prefix}:* used without the extension listed"
        for prefix in sorted((used & {"proj", "raster", "file"}) - listed)
    )
    return errors


def validate_item(item: Mapping[str, Any]) -> None:
    """AssertionError listing every problem when ``item`` is not valid."""
    errors = item_errors(item)
    assert not errors, "STAC item invalid:\n" + "\n".join(errors)


def validate_collection(collection: Mapping[str, Any]) -> None:
    """AssertionError listing every problem when ``collection`` is not a valid STAC 1.1.0 collection."""
    errors = _errors(collection, COLLECTION)
    assert not errors, "STAC collection invalid:\n" + "\n".join(errors)
