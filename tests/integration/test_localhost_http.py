"""The local host serves a FunctionApp's HTTP triggers through real uvicorn, as Azure would."""

from __future__ import annotations

import json
from collections.abc import Iterator

import azure.functions as func
import httpx
import pytest

from core.settings import LocalHostSettings
from tests.helpers.servers import serve
from triggers.localhost.host import LocalHost


def make_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="things/{thing_id}", methods=["POST"])
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        payload = {
            "method": req.method,
            "route_params": dict(req.route_params),
            "params": dict(req.params),
            "json": req.get_json(),
            "header": req.headers.get("x-test"),
            "url": req.url,
        }
        return func.HttpResponse(
            json.dumps(payload), status_code=201, mimetype="application/json", headers={"x-custom": "yes"}
        )

    @app.route(route="things/special", methods=["POST"])
    def special(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("special")

    @app.route(route="async/{n:int}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    async def async_fn(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(f"n={req.route_params['n']}")

    @app.route(route="size", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
    def size(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(str(len(req.get_body())))

    @app.route(route="ops/reset", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
    def reset(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("reset done")

    @app.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("secret internal detail")

    @app.route(route="{*path}", auth_level=func.AuthLevel.ANONYMOUS)
    def fallback(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(
            json.dumps({"fallback": req.route_params.get("path", "")}), status_code=404, mimetype="application/json"
        )

    return app


@pytest.fixture
def open_host() -> Iterator[str]:
    host = LocalHost(make_app(), LocalHostSettings(local_host_timers=False))
    with serve(host.asgi_app()) as url:
        yield url


@pytest.fixture
def keyed_host() -> Iterator[str]:
    settings = LocalHostSettings(
        local_host_master_key="master-123", local_host_function_keys="fn-1,fn-2", local_host_timers=False
    )
    with serve(LocalHost(make_app(), settings).asgi_app()) as url:
        yield url


def test_route_params_query_headers_and_body_reach_the_function(open_host: str) -> None:
    response = httpx.post(
        f"{open_host}/api/things/abc?color=red&size=2", json={"a": [1, 2]}, headers={"x-test": "hello"}
    )
    assert response.status_code == 201
    assert response.headers["x-custom"] == "yes"
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["method"] == "POST"
    assert body["route_params"] == {"thing_id": "abc"}
    assert body["params"] == {"color": "red", "size": "2"}
    assert body["json"] == {"a": [1, 2]}
    assert body["header"] == "hello"
    assert body["url"].endswith("/api/things/abc?color=red&size=2")


def test_literal_route_wins_over_parameter_route(open_host: str) -> None:
    assert httpx.post(f"{open_host}/api/things/special").text == "special"


def test_async_function_and_int_constraint(open_host: str) -> None:
    assert httpx.get(f"{open_host}/api/async/42").text == "n=42"
    assert httpx.get(f"{open_host}/api/async/-7").text == "n=-7"
    assert httpx.get(f"{open_host}/api/async/notanumber").json() == {"fallback": "async/notanumber"}


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH"])
def test_unknown_route_reaches_the_catch_all_for_any_method(open_host: str, method: str) -> None:
    response = httpx.request(method, f"{open_host}/api/no/such/thing")
    assert response.status_code == 404
    assert response.json() == {"fallback": "no/such/thing"}


def test_wrong_method_falls_through_to_the_catch_all(open_host: str) -> None:
    assert httpx.get(f"{open_host}/api/things/abc").status_code == 404


def test_outside_api_prefix_is_json_404(open_host: str) -> None:
    response = httpx.get(f"{open_host}/elsewhere")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "route_not_found"


def test_unhandled_exception_is_500_without_details(open_host: str) -> None:
    response = httpx.get(f"{open_host}/api/boom")
    assert response.status_code == 500
    assert "secret internal detail" not in response.text
    assert response.json()["error"]["code"] == "internal_error"


def test_open_host_needs_no_key(open_host: str) -> None:
    assert httpx.post(f"{open_host}/api/ops/reset").text == "reset done"


def test_function_route_without_key_is_401(keyed_host: str) -> None:
    response = httpx.post(f"{keyed_host}/api/things/abc", json={})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert httpx.post(f"{keyed_host}/api/things/abc?code=wrong", json={}).status_code == 401


def test_function_route_accepts_function_key_in_header_or_query_and_master_key(keyed_host: str) -> None:
    assert httpx.post(f"{keyed_host}/api/things/abc", json={}, headers={"x-functions-key": "fn-1"}).status_code == 201
    assert httpx.post(f"{keyed_host}/api/things/abc?code=fn-2", json={}).status_code == 201
    assert httpx.post(f"{keyed_host}/api/things/abc?code=master-123", json={}).status_code == 201


def test_admin_route_refuses_function_key_and_accepts_master_key(keyed_host: str) -> None:
    assert httpx.post(f"{keyed_host}/api/ops/reset", headers={"x-functions-key": "fn-1"}).status_code == 401
    assert httpx.post(f"{keyed_host}/api/ops/reset").status_code == 401
    ok = httpx.post(f"{keyed_host}/api/ops/reset", headers={"x-functions-key": "master-123"})
    assert ok.status_code == 200 and ok.text == "reset done"


def test_anonymous_routes_stay_open_when_keys_are_set(keyed_host: str) -> None:
    assert httpx.get(f"{keyed_host}/api/async/1").text == "n=1"


def test_non_ascii_key_is_a_401_not_a_crash(keyed_host: str) -> None:
    response = httpx.post(f"{keyed_host}/api/things/abc?code=%C3%A9", json={})
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


def test_host_answers_carry_a_request_id_and_are_logged(keyed_host: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="geoetl.localhost"):
        refused = httpx.post(f"{keyed_host}/api/things/abc", json={}, headers={"x-request-id": "abc-123"})
        outside = httpx.get(f"{keyed_host}/not-api")
    assert (
        refused.headers["x-request-id"] == "abc-123" and refused.json()["error"]["details"]["request_id"] == "abc-123"
    )
    assert outside.status_code == 404 and outside.headers["x-request-id"]
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
    assert {(line["status"], line["path"]) for line in lines} >= {(401, "/api/things/abc"), (404, "/not-api")}


def test_an_unsafe_request_id_is_replaced(keyed_host: str) -> None:
    response = httpx.post(f"{keyed_host}/api/things/abc", json={}, headers={"x-request-id": "bad id <script>" * 3})
    assert response.status_code == 401 and response.headers["x-request-id"] != "bad id"
    assert " " not in response.headers["x-request-id"]


def test_trailing_slash_reaches_the_function(open_host: str) -> None:
    assert httpx.get(f"{open_host}/api/async/5/").text == "n=5"


def test_body_over_the_limit_is_413(open_host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import triggers.localhost.http as host_http

    monkeypatch.setattr(host_http, "MAX_BODY_BYTES", 1000)
    assert httpx.post(f"{open_host}/api/size", content=b"x" * 1000).text == "1000"
    response = httpx.post(f"{open_host}/api/size", content=b"x" * 1001)
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(5):
            yield b"x" * 400

    streamed = httpx.post(f"{open_host}/api/size", content=chunks())
    assert streamed.status_code == 413


def test_key_is_checked_before_the_body_is_read(keyed_host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import triggers.localhost.http as host_http

    monkeypatch.setattr(host_http, "MAX_BODY_BYTES", 10)
    response = httpx.post(f"{keyed_host}/api/things/abc", content=b"x" * 100)
    assert response.status_code == 401


def test_serving_beyond_loopback_without_keys_is_refused() -> None:
    from core.errors import InvalidSetting

    host = LocalHost(make_app(), LocalHostSettings(local_host_timers=False))
    with pytest.raises(InvalidSetting, match="without keys"):
        host.serve(bind="0.0.0.0", port=1)
