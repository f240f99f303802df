"""The OpenAPI 3.1 document, built from the endpoint registry and its pydantic models."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import azure.functions as func
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from core import __version__
from triggers.http.api import REGISTRY, EndpointSpec
from triggers.http.errors import ErrorResponse

_REF = "#/components/schemas/{model}"
_ERROR_TEXT = {
    400: "Invalid input",
    401: "Missing or invalid key",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    503: "A dependency is unavailable",
}


def _models(specs: list[EndpointSpec]) -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {"ErrorResponse": ErrorResponse}
    for spec in specs:
        for model in (spec.response_model, spec.request_model):
            if model is not None:
                seen[model.__name__] = model
    return list(seen.values())


def _query_parameters(spec: EndpointSpec) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in re.findall(r"\{\*?([A-Za-z_][A-Za-z0-9_]*)[^}]*\}", spec.route):
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    if spec.query_model is not None:
        schema = spec.query_model.model_json_schema()
        for name, prop in schema.get("properties", {}).items():
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in schema.get("required", []),
                    "description": prop.get("description", ""),
                    "schema": prop,
                }
            )
    return params


def _operation(spec: EndpointSpec, method: str, refs: dict[str, Any]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": spec.summary}
    if spec.response_model is not None:
        ok["content"] = {spec.content_type: {"schema": refs[spec.response_model.__name__]}}
    elif spec.content_type != "application/json":
        ok["content"] = {spec.content_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(spec.status_code): ok}
    anonymous = spec.auth_level == func.AuthLevel.ANONYMOUS
    error_statuses = set(spec.error_statuses) | ({400} if spec.request_model or spec.query_model else set())
    error_statuses |= set() if anonymous else {401}
    for status in sorted(error_statuses):
        body = {"application/json": {"schema": refs["ErrorResponse"]}}
        if status in spec.report_statuses and spec.response_model is not None:
            body = {"application/json": {"schema": refs[spec.response_model.__name__]}}
        responses[str(status)] = {"description": _ERROR_TEXT.get(status, "Error"), "content": body}
    operation: dict[str, Any] = {
        "operationId": spec.name,
        "summary": spec.summary,
        "description": spec.description,
        "tags": list(spec.tags),
        "parameters": _query_parameters(spec),
        "responses": responses,
        "security": [] if anonymous else [{"functionKey": []}, {"functionKeyQuery": []}],
        "x-auth-level": spec.auth_level.value,
    }
    if spec.request_model is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[spec.request_model.__name__]}},
        }
    return operation


def openapi_document() -> dict[str, Any]:
    """The whole document; every schema comes from a model a handler uses."""
    specs = sorted(REGISTRY.specs, key=lambda s: s.route)
    refs, definitions = models_json_schema([(m, "serialization") for m in _models(specs)], ref_template=_REF)
    schema_refs = {model.__name__: ref for (model, _), ref in refs.items()}
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        item = paths.setdefault("/api/" + spec.route, {})
        for method in spec.methods:
            item[method.lower()] = _operation(spec, method, schema_refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "geoetl",
            "version": __version__,
            "description": "Geospatial ETL jobs: submit, poll, and read the results.",
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
        },
    }


def render_docs_page(document: dict[str, Any]) -> str:
    """A plain HTML page listing each operation with its parameters and schemas."""
    esc = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(document['info']['title'])} API</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "code,pre{background:#f4f4f4}pre{padding:.5em;overflow:auto}h2{border-top:1px solid #ccc;"
        "padding-top:.5em}.m{font-weight:bold;text-transform:uppercase}</style></head><body>",
        f"<h1>{esc(document['info']['title'])} API {esc(document['info']['version'])}</h1>",
        f"<p>{esc(document['info']['description'])} Machine-readable: <a href='openapi.json'>openapi.json</a>. "
        "Keys: <code>x-functions-key</code> header or <code>code</code> query parameter.</p>",
    ]
    for path, item in document["paths"].items():
        for method, op in item.items():
            parts.append(f"<h2><span class='m'>{esc(method)}</span> <code>{esc(path)}</code></h2>")
            parts.append(f"<p>{esc(op['summary'])} (auth level: {esc(op['x-auth-level'])})</p>")
            if op.get("description"):
                parts.append(f"<p>{esc(op['description'])}</p>")
            for param in op["parameters"]:
                parts.append(f"<p>{esc(param['in'])} parameter <code>{esc(param['name'])}</code></p>")
            for status, response in op["responses"].items():
                parts.append(f"<p>{esc(status)}: {esc(response['description'])}</p>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        parts.append(f"<h3 id='{esc(name)}'>{esc(name)}</h3><pre>{esc(json.dumps(schema, indent=2))}</pre>")
    parts.append("</body></html>")
    return "".join(parts)
