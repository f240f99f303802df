"""Structured logging: one JSON object per line, for the local host and the CLI tools.

In Azure the Functions host collects Python log records itself (Application
Insights); there we only set the level.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """A JSON message is merged into the line; ``extra={...}`` fields are added as keys."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if message.startswith("{") and message.endswith("}"):
            try:
                entry.update(json.loads(message))
            except ValueError:
                entry["message"] = message
        else:
            entry["message"] = message
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and k not in entry})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


LOGGERS = ("geoetl", "core", "jobs", "services", "infrastructure", "triggers")


def set_levels(level: str = "INFO") -> None:
    """The level of the project's loggers (in Azure the Functions host owns the handlers)."""
    for name in LOGGERS:
        logging.getLogger(name).setLevel(level.upper())


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the root logger (local host and tools); idempotent."""
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    set_levels(level)
