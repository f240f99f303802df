"""Read ``local.settings.json`` like ``func start``: its ``Values`` become environment variables."""

from __future__ import annotations

import json
import os
from pathlib import Path

from core.errors import InvalidSetting
from core.settings import PROJECT_ROOT

DEFAULT_PATH = PROJECT_ROOT / "local.settings.json"


def read_local_settings(path: Path = DEFAULT_PATH) -> dict[str, str]:
    """The ``Values`` of a local.settings.json (empty when there is no such file)."""
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidSetting(f"{path} is not valid JSON: {exc}") from exc
    values = document.get("Values", {})
    if not isinstance(values, dict):
        raise InvalidSetting(f"{path}: 'Values' must be an object of strings")
    return {str(key): str(value) for key, value in values.items() if value is not None}


def settings_file() -> Path | None:
    """local.settings.json in the project, or the file LOCAL_SETTINGS_FILE names ('none': no file)."""
    chosen = os.environ.get("LOCAL_SETTINGS_FILE", "")
    if chosen.lower() == "none":
        return None
    return Path(chosen) if chosen else DEFAULT_PATH


def apply_local_settings(path: Path | None = None) -> dict[str, str]:
    """Set each value that the environment does not already set (environment variables win)."""
    path = path or settings_file()
    if path is None:
        return {}
    applied: dict[str, str] = {}
    for key, value in read_local_settings(path).items():
        if key not in os.environ:
            os.environ[key] = str(value)
            applied[key] = str(value)
    return applied
