"""``hello_world``: the two-stage demo. Stage 1 fans out ``n`` greetings, stage 2 one reply per greeting.

For trying failure handling through the API, ``fail_indices`` makes those
stage-1 tasks fail on their first ``fail_attempts`` attempts (a number at
least the attempt limit means always), with a ``retryable`` or ``permanent``
error; ``sleep_ms`` makes every task take that long.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.contract import JobDefinition, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from core.errors import InvalidInput, RetryableError
from jobs import registry


class HelloWorldParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(3, ge=1, le=10_000, description="Number of greetings (stage-1 tasks)")
    message: str = Field("hello", max_length=1000, description="Text each greeting carries")
    sleep_ms: int = Field(0, ge=0, le=600_000, description="Milliseconds every task sleeps (to watch progress)")
    fail_indices: list[int] = Field(
        default_factory=list, max_length=10_000, description="Stage-1 task indices that fail (0-based)"
    )
    fail_attempts: int = Field(
        1, ge=1, description="Attempts of those tasks that fail before one succeeds (>= the attempt limit: always)"
    )
    fail_kind: Literal["retryable", "permanent"] = Field("retryable", description="The kind of error they raise")


class Greeting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int
    message: str
    sleep_ms: int = 0
    fail: bool = False
    fail_attempts: int = 1
    fail_kind: Literal["retryable", "permanent"] = "retryable"


class GreetingResult(BaseModel):
    index: int
    greeting: str
    attempt: int


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int
    greeting: str
    sleep_ms: int = 0


class ReplyResult(BaseModel):
    index: int
    reply: str


@registry.task("hello_world.greet")
def greet(params: Greeting, context: TaskContext) -> GreetingResult:
    if params.sleep_ms:
        time.sleep(params.sleep_ms / 1000)
    if params.fail and context.attempt <= params.fail_attempts:
        text = f"greeting {params.index} failed on attempt {context.attempt} as asked (fail_indices)"
        raise InvalidInput(text) if params.fail_kind == "permanent" else RetryableError(text)
    return GreetingResult(index=params.index, greeting=f"{params.message} #{params.index}", attempt=context.attempt)


@registry.task("hello_world.reply")
def reply(params: Reply, context: TaskContext) -> ReplyResult:
    if params.sleep_ms:
        time.sleep(params.sleep_ms / 1000)
    return ReplyResult(index=params.index, reply=f"reply to '{params.greeting}'")


@registry.job
class HelloWorld(JobDefinition[HelloWorldParameters]):
    job_type = "hello_world"
    description = "Two-stage demo: n greetings fan out, then one reply per greeting"
    parameters_model = HelloWorldParameters
    stages = (
        Stage("greet", "hello_world.greet", Parallelism.FAN_OUT),
        Stage("reply", "hello_world.reply", Parallelism.FAN_OUT),
    )

    def validate_submission(self, params: HelloWorldParameters) -> None:
        outside = sorted(i for i in set(params.fail_indices) if not 0 <= i < params.n)
        if outside:
            raise InvalidInput(f"fail_indices {outside[:10]} are outside 0..{params.n - 1}", field="fail_indices")

    def create_tasks(self, stage: int, params: HelloWorldParameters, previous: PreviousStage) -> Sequence[BaseModel]:
        if stage == 1:
            failing = set(params.fail_indices)
            return [
                Greeting(
                    index=i,
                    message=params.message,
                    sleep_ms=params.sleep_ms,
                    fail=i in failing,
                    fail_attempts=params.fail_attempts,
                    fail_kind=params.fail_kind,
                )
                for i in range(params.n)
            ]
        return [Reply(index=r["index"], greeting=r["greeting"], sleep_ms=params.sleep_ms) for r in previous.results]

    def finalize(self, params: HelloWorldParameters, results: JobResults) -> dict[str, object]:
        greetings = list(results.stage(1))
        replies = list(results.stage(2))
        return {
            "greetings": len(greetings),
            "replies": len(replies),
            "retried_greetings": sum(1 for g in greetings if g["attempt"] > 1),
            "first_greeting": greetings[0]["greeting"] if greetings else None,
            "last_reply": replies[-1]["reply"] if replies else None,
        }
