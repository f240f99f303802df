from __future__ import annotations

import json
import logging

from infrastructure.logging import JsonFormatter


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("geoetl.test", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_plain_message_with_extra_fields() -> None:
    line = json.loads(JsonFormatter().format(record("database ready", migrations_applied=[1], pgstac="0.10.0")))
    assert line["message"] == "database ready"
    assert line["migrations_applied"] == [1] and line["pgstac"] == "0.10.0"
    assert line["level"] == "info" and line["logger"] == "geoetl.test" and line["ts"].endswith("+00:00")


def test_json_message_is_merged() -> None:
    line = json.loads(JsonFormatter().format(record('{"event": "http.request", "status": 200}')))
    assert line["event"] == "http.request" and line["status"] == 200 and "message" not in line


def test_exception_is_included() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = record("failed")
        rec.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in line["exception"]
