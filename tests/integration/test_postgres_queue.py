"""The postgres queue transport: delivery, visibility, scheduling, duplicates, dead letters; poison messages."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from core.models import QueueMessage
from core.settings import QueueSettings
from infrastructure.queues import PostgresQueue
from tests.helpers.driver import Driver

Q = "test-queue"


def queue_of(driver: Driver, **settings: object) -> PostgresQueue:
    return PostgresQueue(driver.ctx.db, QueueSettings(**settings))  # type: ignore[arg-type]


def test_send_receive_complete(driver: Driver) -> None:
    queue = queue_of(driver)
    queue.send(Q, [QueueMessage("m1", '{"a": 1}', properties={"kind": "x"})])
    [message] = queue.receive(Q, 10, 0)
    assert (message.message_id, message.body, message.delivery_count) == ("m1", b'{"a": 1}', 1)
    assert message.application_properties == {"kind": "x"}
    assert queue.receive(Q, 10, 0) == []  # invisible while being worked on
    queue.complete(Q, message)
    assert queue.depth(Q) == 0


def test_a_live_message_id_is_not_queued_twice(driver: Driver) -> None:
    queue = queue_of(driver)
    queue.send(Q, [QueueMessage("same", "{}"), QueueMessage("same", "{}")])
    queue.send(Q, [QueueMessage("same", "{}")])
    assert queue.depth(Q) == 1


def test_a_message_not_completed_comes_back_after_the_visibility_timeout(driver: Driver) -> None:
    queue = queue_of(driver, queue_visibility_timeout_seconds=0.3)
    queue.send(Q, [QueueMessage("m", "{}")])
    assert len(queue.receive(Q, 1, 0)) == 1  # ...and the worker dies
    assert queue.receive(Q, 1, 0) == []
    [again] = queue.receive(Q, 1, 2.0)
    assert again.delivery_count == 2


def test_scheduled_messages_wait_for_their_time(driver: Driver) -> None:
    queue = queue_of(driver)
    queue.send(Q, [QueueMessage("later", "{}", not_before=datetime.now(UTC) + timedelta(seconds=0.5))])
    assert queue.receive(Q, 1, 0) == []
    assert len(queue.receive(Q, 1, 5.0)) == 1  # delivered once due, within the wait


def test_abandoned_messages_are_dead_lettered_after_too_many_deliveries(driver: Driver) -> None:
    queue = queue_of(driver, queue_max_deliveries=2)
    queue.send(Q, [QueueMessage("poison", "{}")])
    [first] = queue.receive(Q, 1, 0)
    queue.abandon(Q, first, "boom 1")
    driver.sql("UPDATE geoetl.queue_messages SET visible_at = now()")  # skip the abandon pause
    [second] = queue.receive(Q, 1, 0)
    queue.abandon(Q, second, "boom 2")
    assert queue.depth(Q) == 0
    [dead] = driver.sql("SELECT message_id, reason, delivery_count FROM geoetl.dead_letters")
    assert dead["message_id"] == "poison" and "boom 2" in str(dead["reason"]) and dead["delivery_count"] == 2


def test_messages_whose_workers_keep_dying_are_dead_lettered(driver: Driver) -> None:
    queue = queue_of(driver, queue_max_deliveries=2, queue_visibility_timeout_seconds=0.05)
    queue.send(Q, [QueueMessage("crasher", "{}")])
    for _ in range(2):
        assert len(queue.receive(Q, 1, 1.0)) == 1  # received, never settled
    assert queue.receive(Q, 1, 0.3) == []
    assert [r["message_id"] for r in driver.sql("SELECT message_id FROM geoetl.dead_letters")] == ["crasher"]


def test_concurrent_receivers_never_get_the_same_message(driver: Driver) -> None:
    queue = queue_of(driver)
    queue.send(Q, [QueueMessage(f"m{i}", "{}") for i in range(200)])

    def drain(_: int) -> list[str]:
        got: list[str] = []
        while batch := queue.receive(Q, 3, 0):
            got += [m.message_id for m in batch]
            for m in batch:
                queue.complete(Q, m)
        return got

    with ThreadPoolExecutor(6) as pool:
        received = [m for part in pool.map(drain, range(6)) for m in part]
    assert sorted(received) == sorted(f"m{i}" for i in range(200))


def polls_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A receiver that polls once, then only waits to be woken (until its wait ends): no clock involved."""
    import infrastructure.queues.postgres as module

    monkeypatch.setattr(module, "_MIN_POLL_SECONDS", 3600.0)


def test_a_send_wakes_a_waiting_receiver(driver: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    polls_once(monkeypatch)
    queue = queue_of(driver, queue_poll_interval_ms=3_600_000, queue_listen=False)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(queue.receive, Q, 1, 60.0)
        time.sleep(0.3)
        queue.send(Q, [QueueMessage("wake", "{}")])
        # woken long before its wait (60 s) ends; unwoken, it would poll again only then
        assert [m.message_id for m in waiting.result(timeout=30)] == ["wake"]


# --- messages no worker can use ------------------------------------------------------------------


def test_unparseable_and_unknown_messages_are_dead_lettered_with_a_reason(driver: Driver) -> None:
    m = driver.machine
    assert m.handle_task_message(b"not json", "junk-1") == "dead_lettered"
    assert m.handle_task_message(b'{"kind": "task", "task_id": "nope", "attempt": 1}', "junk-2") == "dead_lettered"
    assert (
        m.handle_job_message(b'{"kind": "job", "job_id": "' + b"a" * 64 + b'", "run": 1}', "junk-3") == "dead_lettered"
    )
    assert m.handle_job_message(b'{"kind": "task", "task_id": "x", "attempt": 1}', "junk-4") == "dead_lettered"
    rows = driver.sql("SELECT message_id, queue_name, reason FROM geoetl.dead_letters ORDER BY id")
    assert [r["message_id"] for r in rows] == ["junk-1", "junk-2", "junk-3", "junk-4"]
    reasons = [str(r["reason"]) for r in rows]
    assert "not a TaskMessage" in reasons[0]
    assert "task nope does not exist" in reasons[1]
    assert "does not exist" in reasons[2]
    assert "not a JobMessage" in reasons[3]


def test_a_released_message_is_visible_at_once_and_its_delivery_not_counted(driver: Driver) -> None:
    queue = queue_of(driver)
    queue.send(Q, [QueueMessage("a", "{}"), QueueMessage("b", "{}")])
    first, second = queue.receive(Q, 2, 0)
    queue.release(Q, second)
    [again] = queue.receive(Q, 2, 0)
    assert (again.message_id, again.delivery_count) == (second.message_id, 1)
    queue.complete(Q, first)
    queue.complete(Q, again)
    assert queue.depth(Q) == 0


def test_a_send_in_another_process_wakes_a_waiting_receiver_through_notify(
    driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two queues over two pools stand for two processes; the receiver polls once, then only listens."""
    from infrastructure.db.database import Database

    other_db = Database(driver.ctx.settings.database)
    receiver = queue_of(driver)
    sender = PostgresQueue(other_db, QueueSettings())
    try:
        receiver.receive(Q, 1, 0)  # starts its listener
        assert receiver.listening.wait(30)
        polls_once(monkeypatch)
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(receiver.receive, Q, 1, 60.0)
            time.sleep(0.3)
            sender.send(Q, [QueueMessage("from-afar", "{}")])
            # woken long before its wait (60 s) ends; without NOTIFY it would poll again only then
            assert [m.message_id for m in waiting.result(timeout=30)] == ["from-afar"]
    finally:
        receiver.close()
        sender.close()
        other_db.close()


def test_wake_ups_for_another_queue_do_not_stop_a_receiver_from_polling(driver: Driver) -> None:
    """A retry scheduled on one queue is found by polling even while the other queue is busy."""
    queue = queue_of(driver, queue_poll_interval_ms=200, queue_listen=False)
    queue.send(Q, [QueueMessage("due-soon", "{}", not_before=datetime.now(UTC) + timedelta(seconds=0.5))])
    stop = threading.Event()

    def busy_other_queue() -> None:
        while not stop.is_set():
            queue.wake("other-queue")
            time.sleep(0.01)

    with ThreadPoolExecutor(1) as pool:
        pool.submit(busy_other_queue)
        try:
            assert [m.message_id for m in queue.receive(Q, 1, 5.0)] == ["due-soon"]
        finally:
            stop.set()
