"""Registries of job types and task handlers, checked when the app starts (not when a job runs)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.contract import Handler, JobDefinition, Parallelism
from core.errors import NotFound

J = TypeVar("J", bound=type[JobDefinition[Any]])


class RegistryError(Exception):
    """A job or task handler is declared wrongly; raised at import so the app does not start."""


class UnknownJobType(NotFound):
    """This job type does not exist."""

    code = "unknown_job_type"


@dataclass(frozen=True)
class TaskHandler:
    task_type: str
    fn: Handler
    input_model: type[BaseModel]
    output_model: type[BaseModel] | None  # None: the handler returns a dict (or None)


def _handler_types(task_type: str, fn: Callable[..., Any]) -> tuple[type[BaseModel], type[BaseModel] | None]:
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise RegistryError(f"task handler {task_type!r}: cannot read its type hints: {exc}") from exc
    params = list(inspect.signature(fn).parameters)
    if len(params) != 2:
        raise RegistryError(f"task handler {task_type!r} must take (params, context), not {params}")
    input_model = hints.get(params[0])
    if not (isinstance(input_model, type) and issubclass(input_model, BaseModel)):
        raise RegistryError(f"task handler {task_type!r}: its first parameter must be a pydantic model")
    output = hints.get("return")
    if isinstance(output, type) and issubclass(output, BaseModel):
        return input_model, output
    if output in (dict, type(None)) or typing.get_origin(output) is dict:
        return input_model, None
    raise RegistryError(f"task handler {task_type!r} must return a pydantic model or a dict")


def _accepts_empty(handler: TaskHandler) -> bool:
    """fan_in tasks are created with {} as parameters."""
    try:
        handler.input_model.model_validate({})
    except ValidationError:
        return False
    return True


class Registry:
    """Job types by name and task handlers by task type."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobDefinition[Any]] = {}
        self.handlers: dict[str, TaskHandler] = {}

    def task(self, task_type: str) -> Callable[[Handler], Handler]:
        """Decorator: register a typed handler ``(params: Model, context) -> Model``."""

        def register(fn: Handler) -> Handler:
            if task_type in self.handlers:
                raise RegistryError(f"task type {task_type!r} is registered twice")
            input_model, output_model = _handler_types(task_type, fn)
            self.handlers[task_type] = TaskHandler(task_type, fn, input_model, output_model)
            return fn

        return register

    def job(self, cls: J) -> J:
        """Class decorator: register a job definition."""
        job_type = getattr(cls, "job_type", None)
        if not job_type or not isinstance(job_type, str):
            raise RegistryError(f"{cls.__name__} has no job_type")
        if job_type in self.jobs:
            raise RegistryError(f"job type {job_type!r} is registered twice")
        self.jobs[job_type] = cls()
        return cls

    def check(self) -> None:
        """Every job well-formed and every stage's task type handled; raises RegistryError listing problems."""
        problems = [p for job in self.jobs.values() for p in self._problems(job)]
        if problems:
            raise RegistryError("; ".join(problems))

    def _problems(self, job: JobDefinition[Any]) -> list[str]:
        name = job.job_type
        model = getattr(job, "parameters_model", None)
        stages = getattr(job, "stages", ())
        problems: list[str] = []
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return [f"job {name!r}: parameters_model must be a pydantic model"]
        if model.model_config.get("extra") != "forbid":
            problems.append(f"job {name!r}: parameters_model must forbid unknown parameters (extra='forbid')")
        if not stages:
            problems.append(f"job {name!r} has no stages")
        for number, stage in enumerate(stages, start=1):
            if stage.task_type not in self.handlers:
                problems.append(f"job {name!r} stage {number} ({stage.name}): no handler for {stage.task_type!r}")
            if stage.parallelism == Parallelism.FAN_IN and number == 1:
                problems.append(f"job {name!r}: the first stage cannot be fan_in (there is nothing to gather)")
            handler = self.handlers.get(stage.task_type)
            if stage.parallelism == Parallelism.FAN_IN and handler is not None and not _accepts_empty(handler):
                problems.append(f"job {name!r} stage {number} is fan_in: its handler's input must accept {{}}")
            if stage.max_retries is not None and stage.max_retries < 0:
                problems.append(f"job {name!r} stage {number}: max_retries cannot be negative")
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            problems.append(f"job {name!r}: stage names must be unique")
        return problems

    def job_definition(self, job_type: str) -> JobDefinition[Any]:
        try:
            return self.jobs[job_type]
        except KeyError:
            known = sorted(self.jobs)
            raise UnknownJobType(
                f"unknown job type {job_type!r}; known job types: {', '.join(known)}", known_job_types=known
            ) from None

    def handler(self, task_type: str) -> TaskHandler | None:
        return self.handlers.get(task_type)

    def describe(self) -> Mapping[str, JobDefinition[Any]]:
        return dict(sorted(self.jobs.items()))
