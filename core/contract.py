"""The job contract: what a job module declares, and what a task handler gets.

A job is a class with a pydantic ``parameters_model``, ordered ``stages`` and
two methods: ``create_tasks`` (the parameters of each task of a ``single`` or
``fan_out`` stage) and ``finalize`` (the job result from every stage's
results). A ``fan_in`` stage gets one task automatically; its handler reads
the previous stage's results page by page through its :class:`TaskContext`.
See docs/jobs.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel

P = TypeVar("P", bound=BaseModel)


class Parallelism(StrEnum):
    SINGLE = "single"  # exactly one task, parameters from create_tasks
    FAN_OUT = "fan_out"  # any number of tasks (0..n), parameters from create_tasks
    FAN_IN = "fan_in"  # one task created by the machine; it reads the previous stage's results


@dataclass(frozen=True)
class Stage:
    name: str
    task_type: str
    parallelism: Parallelism
    max_retries: int | None = None  # None: TASK_MAX_RETRIES


@dataclass(frozen=True)
class PreviousStage:
    """What planning stage N receives about stage N-1 (``number`` 0 and nothing else for stage 1)."""

    number: int
    results: Sequence[dict[str, Any]] = ()  # in task index order
    next_stage_params: Mapping[str, Any] = field(default_factory=dict)  # published by its tasks, merged in order


class JobResults(Protocol):
    """Read access to a job's task results, for ``finalize``."""

    def stage(self, number: int, page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """The results of one stage's completed tasks in index order, read page by page."""
        ...

    def count(self, number: int) -> int: ...


class TaskContext(Protocol):
    """What a task handler gets besides its parameters."""

    job_id: str
    job_type: str
    task_id: str
    stage: int
    task_index: int
    attempt: int  # 1 for the first attempt
    max_attempts: int
    job_parameters: Mapping[str, Any]

    @property
    def storage(self) -> Any:
        """The app's BlobStore."""
        ...

    @property
    def db(self) -> Any:
        """The app's Database (connection pool)."""
        ...

    @property
    def settings(self) -> Any:
        """The app's Settings (core.settings.Settings)."""
        ...

    def heartbeat(self) -> bool:
        """Renew the lease now (the machine also does it in the background); False if the task is no longer
        this attempt's (lease lost, job failed): the handler should stop."""
        ...

    def set_next_stage_params(self, params: Mapping[str, Any]) -> None:
        """Parameters the next stage's planning receives (merged over every task of this stage)."""
        ...

    def previous_results(self, page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """The previous stage's results in task index order, page by page (for fan_in handlers)."""
        ...


class JobEnd:
    """What a job's ``cleanup`` gets: which run ended and how, and the app's resources."""

    def __init__(
        self,
        job_id: str,
        run: int,
        status: str,
        error: Mapping[str, Any] | None,
        resources: Mapping[str, Callable[[], Any]],
    ) -> None:
        self.job_id, self.run, self.status, self.error = job_id, run, status, error
        self._resources = resources

    @property
    def storage(self) -> Any:
        """The app's BlobStore."""
        return self._resources["storage"]()

    @property
    def db(self) -> Any:
        """The app's Database (connection pool)."""
        return self._resources["db"]()

    @property
    def settings(self) -> Any:
        """The app's Settings."""
        return self._resources["settings"]()


class JobDefinition(ABC, Generic[P]):
    """Subclass, set the class attributes, implement ``create_tasks`` and ``finalize``, and register."""

    job_type: ClassVar[str]
    description: ClassVar[str] = ""
    parameters_model: ClassVar[type[BaseModel]]
    stages: ClassVar[tuple[Stage, ...]]

    def validate_submission(self, params: P) -> None:
        """Checks beyond the parameters model that can be made at submit time; raise InvalidInput."""

    @abstractmethod
    def create_tasks(self, stage: int, params: P, previous: PreviousStage) -> Sequence[BaseModel | Mapping[str, Any]]:
        """The parameters of each task of ``stage`` (1-based); not called for fan_in stages."""

    @abstractmethod
    def finalize(self, params: P, results: JobResults) -> BaseModel | Mapping[str, Any]:
        """The job's result_data, once every stage has completed."""

    def cleanup(self, params: P, end: JobEnd) -> Mapping[str, Any] | None:
        """Remove what a failed or cancelled run left behind (outputs, staging tables); optional.

        Runs on a worker after the run ended, from a job message sent in the same transaction as the
        ending; it may run more than once and while late tasks of the run still finish, so it must be
        idempotent (late tasks check ``context.heartbeat()`` after writing and remove their own output).
        Raise a RetryableError to have it tried again; what it returns is recorded in the job's events."""
        return None

    @classmethod
    def has_cleanup(cls) -> bool:
        return cls.cleanup is not JobDefinition.cleanup


Handler = Callable[[Any, TaskContext], Any]
