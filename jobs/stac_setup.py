"""``stac_setup``: check pgstac and create the STAC collections the platform uses (idempotent).

One single-task stage: the task reports whether pgstac is installed and its version, creates the default
collections (``cogs``, ``vectors``, ``extracted``) and any extra ones asked for, and returns
every collection with its item count. Installing pgstac itself is ``POST /api/db/migrate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.contract import JobDefinition, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from core.errors import InvalidInput, ServiceUnavailable
from jobs import registry
from services.stac import catalog
from services.stac.items import validate_stac_id


class ExtraCollection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=255)
    title: str | None = Field(None, max_length=1000)
    description: str | None = Field(None, max_length=10_000)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return validate_stac_id(value, "collection id")


class StacSetupParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    create_defaults: bool = Field(True, description="Create the default collections that are missing")
    collections: list[ExtraCollection] = Field(
        default_factory=list, max_length=100, description="More collections to create if missing"
    )


class StacSetupResult(BaseModel):
    pgstac_version: str
    created: list[str]
    collections: list[dict[str, Any]]
    total_items: int


@registry.task("stac_setup.setup")
def setup(params: StacSetupParameters, context: TaskContext) -> StacSetupResult:
    status = catalog.pgstac_status(context.db)
    if not status["installed"]:
        raise ServiceUnavailable("pgstac is not installed in the database: run POST /api/db/migrate first")
    created = []
    if params.create_defaults:
        created += [cid for cid, made in catalog.ensure_default_collections(context.db).items() if made]
    for extra in params.collections:
        if catalog.ensure_collection(context.db, extra.id, title=extra.title, description=extra.description):
            created.append(extra.id)
    status = catalog.pgstac_status(context.db)
    return StacSetupResult(
        pgstac_version=status["pgstac_version"],
        created=created,
        collections=status["collections"],
        total_items=status["total_items"],
    )


@registry.job
class StacSetup(JobDefinition[StacSetupParameters]):
    job_type = "stac_setup"
    description = "Check pgstac and create the default STAC collections (idempotent)"
    parameters_model = StacSetupParameters
    stages = (Stage("setup", "stac_setup.setup", Parallelism.SINGLE),)

    def validate_submission(self, params: StacSetupParameters) -> None:
        ids = [c.id for c in params.collections]
        if len(ids) != len(set(ids)):
            raise InvalidInput("collections lists the same id twice", field="collections")

    def create_tasks(self, stage: int, params: StacSetupParameters, previous: PreviousStage) -> Sequence[BaseModel]:
        return [params]

    def finalize(self, params: StacSetupParameters, results: JobResults) -> dict[str, Any]:
        return next(iter(results.stage(1)))
