"""``generate_h3_level4``: all 288,122 resolution-4 cells, one load task per resolution-0 parent (122).

Optionally only the cells that intersect a bbox or a PostGIS table of boundaries (e.g. land only);
then only the parents whose cells can meet the area get a task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, field_validator

from core.contract import JobDefinition, JobResults, Parallelism, PreviousStage, Stage
from jobs import registry
from jobs.generate_h3_grid import AreaParameters, Finish, Prepare, load_tasks, summary, validate_area
from services.h3 import grid

RESOLUTION = 4


class Level4Parameters(AreaParameters):
    table: str = Field("cells_r4", max_length=48, description="Table in schema h3")

    @field_validator("table")
    @classmethod
    def _check_table(cls, value: str) -> str:
        return grid.validate_table_name(value)


@registry.job
class GenerateH3Level4(JobDefinition[Level4Parameters]):
    job_type = "generate_h3_level4"
    description = "All resolution-4 H3 cells (288,122), fanned out by resolution-0 parent, optionally within an area"
    parameters_model = Level4Parameters
    stages = (
        Stage("prepare", "h3.prepare", Parallelism.SINGLE),
        Stage("load", "h3.load", Parallelism.FAN_OUT),
        Stage("finish", "h3.finish", Parallelism.SINGLE),
    )

    def validate_submission(self, params: Level4Parameters) -> None:
        validate_area(params)

    def create_tasks(self, stage: int, params: Level4Parameters, previous: PreviousStage) -> Sequence[BaseModel]:
        if stage == 1:
            return [Prepare(table=params.table, replace=params.replace, boundary_table=params.boundary_table)]
        if stage == 2:
            return load_tasks(params.table, [RESOLUTION], 0, params, previous, None)
        return [Finish(table=params.table)]

    def finalize(self, params: Level4Parameters, results: JobResults) -> dict[str, Any]:
        return {"resolution": RESOLUTION, **summary(results)}
