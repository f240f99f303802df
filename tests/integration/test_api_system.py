"""System and admin endpoints of function_app.py, through the local host."""

from __future__ import annotations

from pathlib import Path

import httpx
import jsonschema
import pytest

from core.settings import DatabaseSettings
from infrastructure.db.database import connect


def test_openapi_lists_every_http_function_and_resolves_every_ref(api: str, app_functions) -> None:  # type: ignore[no-untyped-def]
    document = httpx.get(f"{api}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    routes = {f"/api/{f.route}" for f in app_functions.http if not f.route.startswith("{*")}
    assert routes == set(document["paths"])
    schemas = document["components"]["schemas"]
    refs: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert refs
    for ref in refs:
        assert ref.split("/")[-1] in schemas, ref
    health_ok = document["paths"]["/api/health"]["get"]["responses"]["200"]
    assert health_ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/HealthReport"}


def test_health_response_matches_its_published_schema(api: str) -> None:
    document = httpx.get(f"{api}/openapi.json").json()
    report = httpx.get(f"{api}/health", timeout=30).json()
    schema = {"$ref": "#/components/schemas/HealthReport", "components": document["components"]}
    jsonschema.Draft202012Validator(schema).validate(report)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({**report, "status": "sort of"})


def test_docs_page_is_html_listing_the_endpoints(api: str) -> None:
    response = httpx.get(f"{api}/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/api/health" in response.text and "HealthReport" in response.text


@pytest.mark.parametrize("path", ["/api/nope", "/api/jobs/unknown/thing", "/api"])
def test_unknown_routes_are_json_404(api: str, path: str) -> None:
    response = httpx.post(api.removesuffix("/api") + path)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "route_not_found" and set(error) == {"code", "message", "details"}


def test_migrate_endpoint_is_idempotent(api: str) -> None:
    response = httpx.post(f"{api}/db/migrate", timeout=60)
    assert response.status_code == 200, response.text
    assert response.json() == {"migrations_applied": [], "pgstac_version": "0.10.0"}


def test_redeploy_is_off_unless_enabled(api: str) -> None:
    response = httpx.post(f"{api}/db/schema/redeploy?confirm=yes")
    assert response.status_code == 403
    assert "ENABLE_ADMIN_ENDPOINTS" in response.json()["error"]["message"]


def test_redeploy_needs_confirmation_then_rebuilds(fresh_db: DatabaseSettings, tmp_path: Path, app_functions) -> None:  # type: ignore[no-untyped-def]
    from core.settings import LocalHostSettings
    from infrastructure.context import set_app_context
    from tests.helpers.servers import serve
    from tests.plugins.app import make_context
    from triggers.localhost.host import LocalHost

    context = make_context(fresh_db, tmp_path, enable_admin_endpoints=True)
    previous = set_app_context(context)
    try:
        with connect(fresh_db) as conn:
            conn.execute("CREATE TABLE geoetl.leftover (id int)")
        with serve(LocalHost(app_functions, LocalHostSettings(local_host_timers=False)).asgi_app()) as url:
            refused = httpx.post(f"{url}/api/db/schema/redeploy")
            assert refused.status_code == 400
            assert "confirm=yes" in refused.json()["error"]["message"]
            bad = httpx.post(f"{url}/api/db/schema/redeploy?confirm=maybe")
            assert bad.status_code == 400 and bad.json()["error"]["details"]["errors"][0]["field"] == "confirm"
            done = httpx.post(f"{url}/api/db/schema/redeploy?confirm=yes", timeout=60)
            assert done.status_code == 200, done.text
        with connect(fresh_db) as conn:
            assert conn.execute("SELECT to_regclass('geoetl.leftover')").fetchone() == (None,)
    finally:
        set_app_context(previous)
        context.close()


def test_openapi_document_is_a_valid_openapi_3_1_spec(api: str) -> None:
    from openapi_spec_validator import validate

    validate(httpx.get(f"{api}/openapi.json").json())


def test_ping_needs_no_key_and_checks_nothing(app_functions) -> None:  # type: ignore[no-untyped-def]
    from core.settings import LocalHostSettings
    from tests.helpers.servers import serve
    from triggers.localhost.host import LocalHost

    settings = LocalHostSettings(local_host_master_key="m", local_host_function_keys="f", local_host_timers=False)
    with serve(LocalHost(app_functions, settings).asgi_app()) as url:
        response = httpx.get(f"{url}/api/ping")
        assert response.status_code == 200 and response.json()["status"] == "ok"
        assert httpx.get(f"{url}/api/health").status_code == 401
