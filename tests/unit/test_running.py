"""The lease keeper and the retry of units of work the database gave up on."""

from __future__ import annotations

import threading

import pytest

from core.errors import DatabaseBusy
from core.outcomes import retry_busy
from core.running import LeaseKeeper


def test_a_new_lease_is_renewed_even_when_every_other_lease_is_lost() -> None:
    keeper = LeaseKeeper()
    lost_once = threading.Event()

    def lost() -> bool:
        lost_once.set()
        return False

    renewed = threading.Semaphore(0)

    def alive() -> bool:
        renewed.release()
        return True

    with keeper.hold(lost, 0.05):
        assert lost_once.wait(10)  # the first lease is now lost; its handler still runs
        with keeper.hold(alive, 0.05):
            assert all(renewed.acquire(timeout=10) for _ in range(3))  # the keeper did not go to sleep


def test_a_failed_renewal_is_tried_again_later_not_in_a_loop() -> None:
    keeper = LeaseKeeper()
    calls: list[int] = []

    def failing() -> bool:
        calls.append(1)
        raise OSError("database down")

    with keeper.hold(failing, 0.2) as lease:
        threading.Event().wait(0.5)
        assert not lease.lost
    assert 1 <= len(calls) <= 10  # backed off, not thousands of attempts


def test_units_of_work_are_retried_when_the_database_gives_up_on_them() -> None:
    outcomes = iter([DatabaseBusy("deadlock"), DatabaseBusy("deadlock"), "done"])

    def action() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retry_busy(action) == "done"

    def always_busy() -> str:
        raise DatabaseBusy("deadlock")

    with pytest.raises(DatabaseBusy):
        retry_busy(always_busy)
