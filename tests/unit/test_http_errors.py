from __future__ import annotations

import json
import logging

import pytest
from pydantic import BaseModel, ValidationError

from core import errors
from triggers.http.errors import error_response, invalid_request, status_for


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.InvalidInput("x"), 400),
        (errors.InvalidBlobName("x"), 400),
        (errors.BlobNotFound("x"), 404),
        (errors.Conflict("x"), 409),
        (errors.Forbidden("x"), 403),
        (errors.DatabaseUnavailable("x"), 503),
        (errors.GeoetlError("x"), 500),
        (RuntimeError("x"), 500),
    ],
)
def test_status_table(exc: Exception, status: int) -> None:
    assert status_for(exc) == status


def test_project_error_keeps_code_message_details() -> None:
    response = error_response(errors.BlobNotFound("blob a/b.tif not found", container="bronze"), "rid")
    assert response.status_code == 404
    assert json.loads(response.get_body()) == {
        "error": {"code": "blob_not_found", "message": "blob a/b.tif not found", "details": {"container": "bronze"}}
    }


def test_a_project_error_that_maps_to_500_is_stripped_too() -> None:
    response = error_response(errors.GeoetlError("internal path /srv/secret leaked"), "rid-5")
    assert response.status_code == 500
    assert "secret" not in response.get_body().decode()


def test_503_keeps_its_message_and_adds_the_request_id() -> None:
    body = json.loads(error_response(errors.DatabaseUnavailable("cannot reach PostgreSQL"), "rid-7").get_body())
    assert body["error"]["message"] == "cannot reach PostgreSQL" and body["error"]["details"]["request_id"] == "rid-7"


def test_default_message_is_the_docstring() -> None:
    assert errors.DatabaseUnavailable().message == "The database is unavailable."


def test_unexpected_error_is_500_without_its_text(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="geoetl.http"):
        response = error_response(KeyError("password=hunter2"), "req-9")
    body = json.loads(response.get_body())
    assert response.status_code == 500
    assert "hunter2" not in response.get_body().decode()
    assert body["error"] == {
        "code": "internal_error",
        "message": "An unexpected error occurred.",
        "details": {"request_id": "req-9"},
    }
    assert "req-9" in caplog.text, "the log keeps what the response hides"


def test_validation_error_names_each_field() -> None:
    class Model(BaseModel):
        count: int
        name: str

    with pytest.raises(ValidationError) as info:
        Model.model_validate({"count": "many"})
    body = json.loads(error_response(invalid_request(info.value, "body"), "rid").get_body())
    fields = [e["field"] for e in body["error"]["details"]["errors"]]
    assert fields == ["count", "name"]
    assert body["error"]["code"] == "invalid_input"
    assert "count:" in body["error"]["message"] and "name:" in body["error"]["message"]
