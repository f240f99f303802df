"""What a task, a planning or a finalize produced, turned into what the records hold: JSON data, errors as
``{"code", "message", "details"}`` (secrets redacted), and whether an error is worth another attempt."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from core.errors import DatabaseBusy, GeoetlError, InvalidInput


def is_retryable(exc: BaseException) -> bool:
    """Our errors say so themselves; validation errors are permanent; anything unexpected may be transient."""
    if isinstance(exc, GeoetlError):
        return exc.retryable
    return not isinstance(exc, ValidationError | TypeError)


def error_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, GeoetlError):
        return exc.to_dict()
    if isinstance(exc, ValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
        return {"code": "invalid_input", "message": problems, "details": {}}
    return {"code": "internal_error", "message": _redacted(f"{type(exc).__name__}: {exc}")[:2000], "details": {}}


def retry_busy(action: Callable[[], str], attempts: int = 3) -> str:
    """Run a unit of work again when the database gave up on it (a deadlock victim, a serialization
    conflict): the state change still has to happen, and abandoning the message would leave it to the
    janitor, minutes later."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except DatabaseBusy:
            if attempt == attempts:
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def as_json(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` as plain JSON data (what a JSONB column stores); anything else is the job's bug."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"not JSON data (a task's parameters or result): {exc}") from None
    if "\\u0000" in text:
        raise InvalidInput("the data contains a NUL character, which the database cannot store")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


_SECRETS = re.compile(r"(?i)(sig|accountkey|password|sharedaccesskey|token)=[^&;\s]+")


def _redacted(text: str) -> str:
    return _SECRETS.sub(lambda m: f"{m.group(1)}=***", text)


def dump(value: BaseModel | Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return dict(value)
