"""A task while it runs: its context for the handler, its lease heartbeat, and the claim check of results."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from core.ports import ClaimedTask, JobStore, PayloadStore, iterate_pages

log = logging.getLogger("geoetl.machine")

CLAIM_CHECK = "$claim_check"


class ClaimCheck:
    """Results larger than ``limit`` bytes go to the payload store; the record keeps ``{"$claim_check": ref}``."""

    def __init__(self, payloads: PayloadStore | None, limit: int) -> None:
        self.payloads, self.limit = payloads, limit

    def store(self, key: str, value: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(value, separators=(",", ":"), default=str).encode()
        if self.payloads is None or len(data) <= self.limit:
            return value
        return {CLAIM_CHECK: self.payloads.put(key, data)}

    def load(self, value: dict[str, Any] | None) -> dict[str, Any]:
        if value is None:
            return {}
        if self.payloads is not None and set(value) == {CLAIM_CHECK}:
            loaded: dict[str, Any] = json.loads(self.payloads.get(value[CLAIM_CHECK]))
            return loaded
        return value


class Heartbeat:
    """Renews a running task's lease every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, renew: Callable[[], bool], interval: float, name: str) -> None:
        self._renew, self._interval = renew, interval
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{name}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def beat(self) -> bool:
        try:
            alive = self._renew()
        except Exception:  # a database hiccup: the next beat tries again, the lease has margin
            log.warning("renewing a task lease failed", exc_info=True)
            return not self.lost
        if not alive:
            self.lost = True
        return alive

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if not self.beat():
                return


class RunningTask:
    """The :class:`core.contract.TaskContext` the machine hands to a task handler."""

    def __init__(
        self,
        claimed: ClaimedTask,
        store: JobStore,
        claim_check: ClaimCheck,
        resources: Mapping[str, Callable[[], Any]],
        heartbeat: Heartbeat | None = None,
    ) -> None:
        task = claimed.task
        self.job_id, self.job_type, self.task_id = task.job_id, claimed.job_type, task.task_id
        self.stage, self.task_index = task.stage, task.task_index
        self.attempt, self.max_attempts = task.attempt, task.max_attempts
        self.job_parameters: Mapping[str, Any] = claimed.job_parameters
        self.next_stage_params: dict[str, Any] | None = None
        self._store, self._claim_check, self._resources = store, claim_check, resources
        self._heartbeat = heartbeat

    @property
    def storage(self) -> Any:
        return self._resources["storage"]()

    @property
    def db(self) -> Any:
        return self._resources["db"]()

    def heartbeat(self) -> bool:
        return self._heartbeat.beat() if self._heartbeat is not None else True

    def set_next_stage_params(self, params: Mapping[str, Any]) -> None:
        self.next_stage_params = {**(self.next_stage_params or {}), **params}

    def previous_results(self, page_size: int = 1000) -> Iterator[dict[str, Any]]:
        if self.stage == 1:
            return
        for _, result in iterate_pages(self._store, self.job_id, self.stage - 1, page_size):
            yield self._claim_check.load(result)


class StoredResults:
    """:class:`core.contract.JobResults` over the store, for ``finalize``."""

    def __init__(self, store: JobStore, job_id: str, claim_check: ClaimCheck) -> None:
        self._store, self._job_id, self._claim_check = store, job_id, claim_check

    def stage(self, number: int, page_size: int = 1000) -> Iterator[dict[str, Any]]:
        for _, result in iterate_pages(self._store, self._job_id, number, page_size):
            yield self._claim_check.load(result)

    def count(self, number: int) -> int:
        return self._store.count_completed(self._job_id, number)
