"""``diamond``: single → fan_out → fan_in → single, to exercise ``next_stage_params`` and ``fan_in``.

Stage 1 decides how many parts there are and publishes it as ``next_stage_params``;
stage 2 squares each part's number; stage 3 (fan_in) sums the squares reading
stage 2's results page by page; stage 4 checks the sum against the formula.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from core.contract import JobDefinition, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from core.errors import InvalidInput
from jobs import registry


class DiamondParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parts: int = Field(10, ge=0, le=10_000, description="Number of stage-2 tasks (0 is allowed: an empty stage)")
    page_size: int = Field(100, ge=1, le=10_000, description="Results the fan-in task reads per page")


class Split(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parts: int


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: int


class Gather(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parts: int


@registry.task("diamond.split")
def split(params: Split, context: TaskContext) -> dict[str, int]:
    context.set_next_stage_params({"parts": params.parts})
    return {"parts": params.parts}


@registry.task("diamond.square")
def square(params: Part, context: TaskContext) -> dict[str, int]:
    return {"number": params.number, "square": params.number**2}


@registry.task("diamond.gather")
def gather(params: Gather, context: TaskContext) -> dict[str, int]:
    page_size = int(context.job_parameters.get("page_size", 100))
    total = count = 0
    for result in context.previous_results(page_size=page_size):
        total += result["square"]
        count += 1
    return {"sum_of_squares": total, "count": count}


@registry.task("diamond.check")
def check(params: Check, context: TaskContext) -> dict[str, object]:
    expected = sum(i * i for i in range(1, params.parts + 1))
    return {"expected": expected}


@registry.job
class Diamond(JobDefinition[DiamondParameters]):
    job_type = "diamond"
    description = "Demo of single → fan_out → fan_in → single with next_stage_params"
    parameters_model = DiamondParameters
    stages = (
        Stage("split", "diamond.split", Parallelism.SINGLE),
        Stage("square", "diamond.square", Parallelism.FAN_OUT),
        Stage("gather", "diamond.gather", Parallelism.FAN_IN),
        Stage("check", "diamond.check", Parallelism.SINGLE),
    )

    def create_tasks(self, stage: int, params: DiamondParameters, previous: PreviousStage) -> Sequence[BaseModel]:
        if stage == 1:
            return [Split(parts=params.parts)]
        if stage == 2:
            parts = int(previous.next_stage_params["parts"])
            return [Part(number=i) for i in range(1, parts + 1)]
        return [Check(parts=params.parts)]

    def finalize(self, params: DiamondParameters, results: JobResults) -> dict[str, object]:
        gathered = next(results.stage(3))
        expected = next(results.stage(4))["expected"]
        if gathered["sum_of_squares"] != expected:
            raise InvalidInput(f"sum of squares {gathered['sum_of_squares']} != expected {expected}")
        return {"parts": params.parts, "sum_of_squares": gathered["sum_of_squares"], "squares": results.count(2)}
