"""ADMIN endpoints: schema migration and (when enabled) the destructive schema redeploy."""

from __future__ import annotations

from typing import Literal

import azure.functions as func
from pydantic import BaseModel, Field

from core.errors import Forbidden, InvalidInput
from infrastructure.context import get_app_context
from services.schema import migrate, redeploy_orchestration_schema
from triggers.http.api import endpoint, parse_query

bp = func.Blueprint()  # type: ignore[no-untyped-call]


class SchemaResult(BaseModel):
    migrations_applied: list[int] = Field(description="Migration versions applied by this call")
    pgstac_version: str | None = None


class RedeployQuery(BaseModel):
    confirm: Literal["yes"] | None = Field(None, description="Must be 'yes': the redeploy deletes all job history")


@endpoint(
    bp,
    route="db/migrate",
    methods=("POST",),
    auth_level=func.AuthLevel.ADMIN,
    tags=("admin",),
    summary="Apply pending schema migrations and install/upgrade pgstac",
    response_model=SchemaResult,
    error_statuses=(409, 503),
)
def db_migrate(req: func.HttpRequest) -> SchemaResult:
    """Idempotent: with nothing pending it applies nothing."""
    ctx = get_app_context()
    result = migrate(ctx.settings.database, ctx.db_token_provider)
    return SchemaResult(migrations_applied=result.migrations_applied, pgstac_version=result.pgstac_version)


@endpoint(
    bp,
    route="db/schema/redeploy",
    methods=("POST",),
    auth_level=func.AuthLevel.ADMIN,
    tags=("admin",),
    summary="Drop and recreate the orchestration schema (destructive)",
    response_model=SchemaResult,
    query_model=RedeployQuery,
    error_statuses=(400, 403, 409, 503),
)
def db_schema_redeploy(req: func.HttpRequest) -> SchemaResult:
    """Needs ENABLE_ADMIN_ENDPOINTS=true and ?confirm=yes; vector tables, H3 grids and pgstac are kept."""
    ctx = get_app_context()
    settings = ctx.settings
    if not settings.app.enable_admin_endpoints:
        raise Forbidden("admin endpoints are disabled; set ENABLE_ADMIN_ENDPOINTS=true to use them")
    if parse_query(req, RedeployQuery).confirm != "yes":
        raise InvalidInput("add ?confirm=yes: this deletes every job, task and event")
    applied = redeploy_orchestration_schema(settings.database, ctx.db_token_provider)
    return SchemaResult(migrations_applied=applied)
