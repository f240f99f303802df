"""A task while it runs: its context for the handler, its lease heartbeat, and the claim check of results."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
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


class Lease:
    """One running task's lease as the keeper sees it."""

    def __init__(self, renew: Callable[[], bool], interval: float) -> None:
        self.renew, self.interval = renew, interval
        self.due = time.monotonic() + interval
        self.lost = False

    def beat(self) -> bool:
        """Renew now; False once the task is no longer this attempt's."""
        try:
            alive = self.renew()
        except Exception:  # a database hiccup: try again a little later, the lease has margin
            log.warning("renewing a task lease failed", exc_info=True)
            self.due = time.monotonic() + min(self.interval, 5.0)
            return not self.lost
        self.lost = self.lost or not alive
        self.due = time.monotonic() + self.interval
        return alive


class LeaseKeeper:
    """Renews the leases of this process's running tasks on one daemon thread, each every ``interval``
    seconds (a third of the lease). A task shorter than that costs no renewal and no thread."""

    def __init__(self) -> None:
        self._leases: dict[int, Lease] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextmanager
    def hold(self, renew: Callable[[], bool], interval: float) -> Iterator[Lease]:
        lease = Lease(renew, interval)
        with self._changed:
            # leases all have the same interval: only one that arrives when no live lease waits is due earliest
            idle = all(held.lost for held in self._leases.values())
            self._leases[id(lease)] = lease
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()
            if idle:
                self._changed.notify()
        try:
            yield lease
        finally:
            with self._changed:
                self._leases.pop(id(lease), None)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [lease for lease in self._leases.values() if lease.due <= now and not lease.lost]
                if not due:
                    upcoming = [lease.due for lease in self._leases.values() if not lease.lost]
                    self._changed.wait(min(upcoming) - now if upcoming else 60.0)
                    continue
            for lease in due:  # outside the lock: renewing is a database round trip
                lease.beat()


class RunningTask:
    """The :class:`core.contract.TaskContext` the machine hands to a task handler."""

    def __init__(
        self,
        claimed: ClaimedTask,
        store: JobStore,
        claim_check: ClaimCheck,
        resources: Mapping[str, Callable[[], Any]],
        lease: Lease | None = None,
    ) -> None:
        task = claimed.task
        self.job_id, self.job_type, self.task_id = task.job_id, claimed.job_type, task.task_id
        self.stage, self.task_index = task.stage, task.task_index
        self.attempt, self.max_attempts = task.attempt, task.max_attempts
        self.job_parameters: Mapping[str, Any] = claimed.job_parameters
        self.next_stage_params: dict[str, Any] | None = None
        self._store, self._claim_check, self._resources = store, claim_check, resources
        self._lease = lease

    @property
    def storage(self) -> Any:
        return self._resources["storage"]()

    @property
    def db(self) -> Any:
        return self._resources["db"]()

    @property
    def settings(self) -> Any:
        return self._resources["settings"]()

    def heartbeat(self) -> bool:
        return self._lease.beat() if self._lease is not None else True

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
