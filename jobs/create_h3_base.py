"""``create_h3_base``: the 122 resolution-0 cells, and optionally resolutions 1..``max_resolution`` (at most 4),
in one PostGIS table, each row with its parent; tasks split by resolution-0 cell."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.contract import JobDefinition, JobResults, Parallelism, PreviousStage, Stage
from infrastructure.context import get_app_context
from jobs import registry
from jobs.generate_h3_grid import AreaParameters, Finish, Prepare, load_tasks, summary
from services.h3 import grid


class BaseParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_resolution: int = Field(0, ge=0, le=4, description="Also load resolutions 1..max_resolution (0 = only res 0)")
    table: str = Field("base_cells", max_length=48, description="Table in schema h3")
    replace: bool = Field(False, description="Replace the table if an earlier H3 job made it")

    @field_validator("table")
    @classmethod
    def _check_table(cls, value: str) -> str:
        return grid.validate_table_name(value)


@registry.job
class CreateH3Base(JobDefinition[BaseParameters]):
    job_type = "create_h3_base"
    description = "The 122 resolution-0 H3 cells (and optionally resolutions 1-4) in a PostGIS table"
    parameters_model = BaseParameters
    stages = (
        Stage("prepare", "h3.prepare", Parallelism.SINGLE),
        Stage("load", "h3.load", Parallelism.FAN_OUT),
        Stage("finish", "h3.finish", Parallelism.SINGLE),
    )

    def create_tasks(self, stage: int, params: BaseParameters, previous: PreviousStage) -> Sequence[BaseModel]:
        if stage == 1:
            return [Prepare(table=params.table, replace=params.replace)]
        if stage == 2:
            per_task = get_app_context().settings.analytics.h3_cells_per_task
            resolutions = list(range(params.max_resolution + 1))
            return load_tasks(params.table, resolutions, 0, AreaParameters(), previous, per_task)
        return [Finish(table=params.table)]

    def finalize(self, params: BaseParameters, results: JobResults) -> dict[str, Any]:
        return {"max_resolution": params.max_resolution, **summary(results)}
