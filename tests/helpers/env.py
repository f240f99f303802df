"""Keep the developer's settings out of the tests.

Every geoetl setting is removed from the environment, except the PostgreSQL
connection (``PG*``) and the stack folder, which say *where* the test server is;
of ``local.settings.json`` only those are applied too, and processes the tests
start are told to read no settings file. Tests build the settings they need.
"""

from __future__ import annotations

import os

from core.settings import SETTINGS_CLASSES
from triggers.localhost.settings_file import DEFAULT_PATH, read_local_settings

KEPT_PREFIXES = ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSSLMODE", "PG_BINDIR", "LOCAL_STACK_DIR")


def setting_names() -> set[str]:
    names: set[str] = set()
    for cls in SETTINGS_CLASSES:
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            names.add((alias if isinstance(alias, str) else name).upper())
    return names


def isolate_environment() -> None:
    names = setting_names()
    for key in list(os.environ):
        if key.upper() in names and not key.upper().startswith(KEPT_PREFIXES):
            del os.environ[key]
    for key, value in read_local_settings(DEFAULT_PATH).items():
        if key.upper().startswith(KEPT_PREFIXES) and key not in os.environ:
            os.environ[key] = value
    os.environ["LOCAL_SETTINGS_FILE"] = "none"  # processes the tests start read no settings file either
