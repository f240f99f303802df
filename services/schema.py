"""Schema operations behind the admin endpoints: migrate, and the destructive redeploy."""

from __future__ import annotations

import psycopg

from core.settings import DatabaseSettings
from infrastructure.db.database import TokenProvider, connect, translate
from infrastructure.db.migrations import redeploy
from infrastructure.db.setup import SetupResult, setup_database


def migrate(settings: DatabaseSettings, token_provider: TokenProvider | None = None) -> SetupResult:
    """Apply pending migrations and install or upgrade pgstac (idempotent)."""
    return setup_database(settings, token_provider)


def redeploy_orchestration_schema(settings: DatabaseSettings, token_provider: TokenProvider | None = None) -> list[int]:
    """Drop and recreate the ``geoetl`` schema in one transaction; returns the migrations applied."""
    direct = settings.for_schema_changes()
    try:
        with connect(direct, token_provider, autocommit=True) as conn:
            return redeploy(conn)
    except psycopg.Error as exc:
        translated = translate(exc, direct)
        if translated is None:
            raise
        raise translated from exc
