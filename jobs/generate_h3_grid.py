"""``generate_h3_grid``: H3 cells of one resolution over a bbox, a boundary table or the globe, into PostGIS.

Stages: prepare (single: create ``h3.<table>``, find the boundary's extent) → load (fan_out: each
task copies the cells under a group of coarser *split cells*, keeping those that meet the area) →
finish (single: indexes, ANALYZE, counts). A request that would produce more than ``H3_MAX_CELLS``
cells is refused at submit (HTTP 400) with the count.

The task handlers here are shared by ``create_h3_base`` and ``generate_h3_level4``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.contract import JobDefinition, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from core.errors import InvalidInput
from infrastructure.context import get_app_context
from jobs import registry
from services.h3 import cells, grid

BBoxField = Field(
    None,
    description="Area of interest [west, south, east, north] in degrees (west > east crosses the antimeridian)",
)
BoundaryField = Field(
    None,
    max_length=200,
    description="A PostGIS table (schema.table; schema geo by default) whose geometries limit the grid",
)


class AreaParameters(BaseModel):
    """What the H3 jobs share: the target table and an optional area."""

    model_config = ConfigDict(extra="forbid")

    bbox: list[float] | None = BBoxField
    boundary_table: str | None = BoundaryField
    replace: bool = Field(False, description="Replace the table if an earlier H3 job made it")

    @field_validator("bbox")
    @classmethod
    def _check_bbox(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            cells.BBox.parse(value)
        return value

    @field_validator("boundary_table")
    @classmethod
    def _check_boundary(cls, value: str | None) -> str | None:
        if value is not None:
            grid.parse_table_reference(value)
        return value


class GridParameters(AreaParameters):
    resolution: int = Field(ge=0, le=cells.MAX_RESOLUTION, description="H3 resolution of the cells (0-15)")
    table: str | None = Field(None, max_length=48, description="Table in schema h3 (default grid_r<resolution>)")

    @field_validator("table")
    @classmethod
    def _check_table(cls, value: str | None) -> str | None:
        return None if value is None else grid.validate_table_name(value)

    @property
    def table_name(self) -> str:
        return self.table or f"grid_r{self.resolution}"


# -- tasks shared by the H3 jobs --------------------------------------------------------------------------


class Prepare(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table: str
    replace: bool = False
    boundary_table: str | None = None


class Load(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table: str
    resolutions: list[int]
    split_cells: list[str] = Field(min_length=1)
    bbox: list[float] | None = None
    boundary_table: str | None = None


class Finish(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table: str


@registry.task("h3.prepare")
def prepare(params: Prepare, context: TaskContext) -> dict[str, Any]:
    """Create the table; publish the boundary table's extent (where the load tasks look for cells)."""
    extent: list[float] | None = None
    with context.db.transaction() as conn:
        if params.boundary_table is not None:
            boundary = grid.find_boundary(conn, params.boundary_table)
            box = grid.boundary_extent(conn, boundary)
            extent = None if box is None else [box.west, box.south, box.east, box.north]
        outcome = grid.prepare_table(conn, params.table, context.job_id, params.replace)
    context.set_next_stage_params(
        {"extent": extent, "empty_boundary": params.boundary_table is not None and not extent}
    )
    return {"table": f"{grid.SCHEMA}.{params.table}", "outcome": outcome, "boundary_extent": extent}


@registry.task("h3.load")
def load(params: Load, context: TaskContext) -> dict[str, Any]:
    bbox = None if params.bbox is None else cells.BBox.parse(params.bbox)
    with context.db.transaction() as conn:
        boundary = None if params.boundary_table is None else grid.find_boundary(conn, params.boundary_table)
        loaded = grid.load_cells(
            conn, params.table, context.job_id, params.split_cells, params.resolutions, bbox, boundary
        )
    return {"split_cells": len(params.split_cells), "cells": loaded}


@registry.task("h3.finish")
def finish(params: Finish, context: TaskContext) -> dict[str, Any]:
    with context.db.transaction() as conn:
        return grid.finish_table(conn, params.table, context.job_id)


def load_tasks(
    table: str,
    resolutions: Sequence[int],
    split_res: int,
    area: AreaParameters,
    previous: PreviousStage,
    cells_per_task: int | None,
) -> list[Load]:
    """The load tasks: split cells that may meet the area, grouped (one per task when ``cells_per_task`` is None)."""
    extent = previous.next_stage_params.get("extent")
    if previous.next_stage_params.get("empty_boundary"):
        return []  # the boundary table holds no geometry: nothing can intersect it
    bbox = None if area.bbox is None else cells.BBox.parse(area.bbox)
    search = bbox if bbox is not None else (None if extent is None else cells.BBox.parse(extent))
    found = cells.split_cells(split_res, search)
    groups = (
        [[c] for c in found] if cells_per_task is None else cells.group_split_cells(found, resolutions, cells_per_task)
    )
    return [
        Load(
            table=table,
            resolutions=list(resolutions),
            split_cells=group,
            bbox=area.bbox,
            boundary_table=area.boundary_table,
        )
        for group in groups
    ]


def summary(results: JobResults) -> dict[str, Any]:
    prepared = next(results.stage(1))
    finished = next(results.stage(3))
    return {**finished, "table_outcome": prepared["outcome"], "load_tasks": results.count(2)}


def validate_area(area: AreaParameters) -> None:
    """The submit-time check every H3 job with an area shares: a ``boundary_table`` must exist with a geometry
    column and an SRID (InvalidInput, HTTP 400, naming the table and what is wrong)."""
    if area.boundary_table is not None:
        with get_app_context().db.transaction() as conn:
            grid.find_boundary(conn, area.boundary_table)


def estimate_count(resolution: int, area: AreaParameters, limit: int) -> int:
    """The cells a grid over ``area`` at ``resolution`` would have (exact or estimated; reaching the database for
    a boundary table)."""
    if area.bbox is not None:
        count = cells.count_cells_in_bbox(cells.BBox.parse(area.bbox), resolution, limit)
    else:
        count = cells.cell_count(resolution)
    if area.boundary_table is not None:
        with get_app_context().db.transaction() as conn:
            boundary = grid.find_boundary(conn, area.boundary_table)
            by_area = cells.estimate_cells_in_area(grid.boundary_area_m2(conn, boundary), resolution)
        count = min(count, by_area)
    return count


@registry.job
class GenerateH3Grid(JobDefinition[GridParameters]):
    job_type = "generate_h3_grid"
    description = "H3 cells of one resolution over a bbox, a boundary table or the globe, into a PostGIS table"
    parameters_model = GridParameters
    stages = (
        Stage("prepare", "h3.prepare", Parallelism.SINGLE),
        Stage("load", "h3.load", Parallelism.FAN_OUT),
        Stage("finish", "h3.finish", Parallelism.SINGLE),
    )

    def validate_submission(self, params: GridParameters) -> None:
        validate_area(params)
        limit = get_app_context().settings.analytics.h3_max_cells
        count = estimate_count(params.resolution, params, limit)
        if count > limit:
            where = "the globe" if params.bbox is None and params.boundary_table is None else "this area"
            raise InvalidInput(
                f"a resolution-{params.resolution} grid over {where} would have about {count:,} cells, more than "
                f"the limit of {limit:,} (H3_MAX_CELLS): choose a coarser resolution or a smaller area",
                field="resolution",
                cells=count,
                limit=limit,
            )

    def create_tasks(self, stage: int, params: GridParameters, previous: PreviousStage) -> Sequence[BaseModel]:
        table = params.table_name
        if stage == 1:
            return [Prepare(table=table, replace=params.replace, boundary_table=params.boundary_table)]
        if stage == 2:
            per_task = get_app_context().settings.analytics.h3_cells_per_task
            split_res = cells.split_resolution(params.resolution, per_task)
            return load_tasks(table, [params.resolution], split_res, params, previous, per_task)
        return [Finish(table=table)]

    def finalize(self, params: GridParameters, results: JobResults) -> dict[str, Any]:
        return {"resolution": params.resolution, **summary(results)}
