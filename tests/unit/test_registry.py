"""Registration is checked when the app starts: malformed jobs and handlers never reach run time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from core.contract import JobDefinition, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from core.registry import Registry, RegistryError, UnknownJobType


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    ok: bool = True


def handler(params: Params, context: TaskContext) -> Out:
    return Out()


def job_class(name: str, stages: tuple[Stage, ...], model: type[BaseModel] = Params) -> type[JobDefinition[Any]]:
    class Job(JobDefinition[Any]):
        job_type = name
        parameters_model = model
        description = "test"

        def create_tasks(self, stage: int, params: Any, previous: PreviousStage) -> Sequence[BaseModel]:
            return [Params()]

        def finalize(self, params: Any, results: JobResults) -> dict[str, Any]:
            return {}

    Job.stages = stages
    return Job


def test_a_well_formed_job_passes() -> None:
    registry = Registry()
    registry.task("t")(handler)
    registry.job(job_class("j", (Stage("a", "t", Parallelism.SINGLE), Stage("b", "t", Parallelism.FAN_IN))))
    registry.check()
    assert registry.handler("t") is not None and registry.handler("t").output_model is Out  # type: ignore[union-attr]


def test_duplicate_names_fail_at_once() -> None:
    registry = Registry()
    registry.task("t")(handler)
    with pytest.raises(RegistryError, match="registered twice"):
        registry.task("t")(handler)
    registry.job(job_class("j", (Stage("a", "t", Parallelism.SINGLE),)))
    with pytest.raises(RegistryError, match="registered twice"):
        registry.job(job_class("j", (Stage("a", "t", Parallelism.SINGLE),)))


def test_a_stage_without_a_handler_fails_the_check() -> None:
    registry = Registry()
    registry.job(job_class("j", (Stage("a", "missing", Parallelism.SINGLE),)))
    with pytest.raises(RegistryError, match="no handler for 'missing'"):
        registry.check()


def test_fan_in_first_no_stages_duplicate_stage_names_and_open_models_fail() -> None:
    class Open(BaseModel):
        pass

    registry = Registry()
    registry.task("t")(handler)
    registry.job(job_class("fan_in_first", (Stage("a", "t", Parallelism.FAN_IN),)))
    registry.job(job_class("no_stages", ()))
    registry.job(job_class("twice", (Stage("a", "t", Parallelism.SINGLE), Stage("a", "t", Parallelism.SINGLE))))
    registry.job(job_class("open", (Stage("a", "t", Parallelism.SINGLE),), Open))
    with pytest.raises(RegistryError) as err:
        registry.check()
    message = str(err.value)
    for expected in ("cannot be fan_in", "has no stages", "stage names must be unique", "extra='forbid'"):
        assert expected in message


def test_handlers_must_be_typed() -> None:
    registry = Registry()

    def untyped(params, context):  # type: ignore[no-untyped-def]
        return {}

    def wrong_arity(params: Params) -> Out:
        return Out()

    def returns_text(params: Params, context: TaskContext) -> str:
        return ""

    for fn, problem in ((untyped, "pydantic model"), (wrong_arity, "must take"), (returns_text, "must return")):
        with pytest.raises(RegistryError, match=problem):
            registry.task(fn.__name__)(fn)


def test_unknown_job_types_name_the_known_ones() -> None:
    registry = Registry()
    registry.task("t")(handler)
    registry.job(job_class("b", (Stage("a", "t", Parallelism.SINGLE),)))
    registry.job(job_class("a", (Stage("a", "t", Parallelism.SINGLE),)))
    with pytest.raises(UnknownJobType) as err:
        registry.job_definition("c")
    assert err.value.details == {"known_job_types": ["a", "b"]} and "a, b" in err.value.message


def test_the_project_registry_is_consistent() -> None:
    from jobs import registry

    registry.check()
    assert {"hello_world", "diamond"} <= set(registry.jobs)


class Needs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: int


def needs(params: Needs, context: TaskContext) -> Out:
    return Out()


def test_fan_in_handlers_must_accept_empty_parameters_and_retries_cannot_be_negative() -> None:
    registry = Registry()
    registry.task("t")(handler)
    registry.task("needs")(needs)
    registry.job(job_class("j", (Stage("a", "t", Parallelism.SINGLE), Stage("b", "needs", Parallelism.FAN_IN))))
    registry.job(job_class("k", (Stage("a", "t", Parallelism.SINGLE, max_retries=-1),)))
    with pytest.raises(RegistryError) as err:
        registry.check()
    assert "must accept {}" in str(err.value) and "max_retries cannot be negative" in str(err.value)
