"""Timer and queue triggers run by the local host on background threads."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Sequence

import azure.functions as func
import pytest

from core.settings import LocalHostSettings
from infrastructure.queues.base import ReceivedMessage
from triggers.localhost.host import LocalHost


class ListSource:
    """A message source over a list, recording what the host completes and abandons."""

    max_prefetch = 100

    def __init__(self, messages: list[ReceivedMessage]) -> None:
        self.pending: deque[ReceivedMessage] = deque(messages)
        self.completed: list[str] = []
        self.abandoned: list[tuple[str, str]] = []
        self.released: list[str] = []
        self.queues_asked: set[str] = set()
        self.lock = threading.Lock()

    def receive(self, queue_name: str, max_messages: int, max_wait_seconds: float) -> Sequence[ReceivedMessage]:
        self.queues_asked.add(queue_name)
        with self.lock:
            if self.pending:
                return [self.pending.popleft() for _ in range(min(max_messages, len(self.pending)))]
        time.sleep(0.05)
        return []

    def complete(self, queue_name: str, message: ReceivedMessage) -> None:
        with self.lock:
            self.completed.append(message.message_id)

    def abandon(self, queue_name: str, message: ReceivedMessage, reason: str) -> None:
        with self.lock:
            self.abandoned.append((message.message_id, reason))

    def release(self, queue_name: str, message: ReceivedMessage) -> None:
        with self.lock:
            self.released.append(message.message_id)
            self.pending.append(message)


def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_timer_fires_on_schedule_and_on_startup() -> None:
    fired: list[bool] = []
    app = func.FunctionApp()

    @app.timer_trigger(schedule="* * * * * *", arg_name="timer", run_on_startup=True)
    def every_second(timer: func.TimerRequest) -> None:
        fired.append(timer.past_due)

    host = LocalHost(app, LocalHostSettings())
    host.start_background()
    try:
        wait_for(lambda: len(fired) >= 3, timeout=6)
    finally:
        host.stop_background()
    count = len(fired)
    time.sleep(1.2)
    assert len(fired) == count, "timer kept firing after stop"


def test_timers_can_be_switched_off() -> None:
    fired: list[bool] = []
    app = func.FunctionApp()

    @app.timer_trigger(schedule="* * * * * *", arg_name="timer", run_on_startup=True)
    def every_second(timer: func.TimerRequest) -> None:
        fired.append(True)

    host = LocalHost(app, LocalHostSettings(local_host_timers=False))
    host.start_background()
    time.sleep(1.5)
    host.stop_background()
    assert fired == []


def test_queue_trigger_is_fed_from_the_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_QUEUE", "work-items")
    seen: list[dict[str, object]] = []
    app = func.FunctionApp()

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="%TEST_QUEUE%", connection="ServiceBusConnection")
    def worker(msg: func.ServiceBusMessage) -> None:
        body = json.loads(msg.get_body())
        if body.get("fail"):
            raise ValueError("bad message")
        seen.append({"id": msg.message_id, "body": body, "deliveries": msg.delivery_count})

    messages = [ReceivedMessage(f"m{i}", json.dumps({"i": i}).encode(), delivery_count=1) for i in range(5)]
    messages.append(ReceivedMessage("bad", json.dumps({"fail": True}).encode(), delivery_count=2))
    source = ListSource(messages)
    host = LocalHost(app, LocalHostSettings(local_host_workers=3), message_source=source)
    host.start_background()
    try:
        wait_for(lambda: len(source.completed) + len(source.abandoned) == 6)
    finally:
        host.stop_background()
    assert source.queues_asked == {"work-items"}
    assert sorted(source.completed) == [f"m{i}" for i in range(5)]
    assert source.abandoned == [("bad", "ValueError: bad message")]
    assert sorted(str(s["id"]) for s in seen) == [f"m{i}" for i in range(5)]
    assert all(s["deliveries"] == 1 for s in seen)


def test_unset_setting_in_queue_name_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    app = func.FunctionApp()

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="%NOT_SET_ANYWHERE%", connection="X")
    def worker(msg: func.ServiceBusMessage) -> None:
        pass

    with pytest.raises(KeyError, match="NOT_SET_ANYWHERE"):
        LocalHost(app, LocalHostSettings())


def test_timer_schedule_may_name_an_app_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SCHEDULE", "*/2 * * * * *")
    app = func.FunctionApp()

    @app.timer_trigger(schedule="%TEST_SCHEDULE%", arg_name="timer")
    def janitor(timer: func.TimerRequest) -> None:
        pass

    assert LocalHost(app, LocalHostSettings()).table.timers[0].schedule == "*/2 * * * * *"


def test_a_failing_complete_does_not_kill_the_worker() -> None:
    handled: list[str] = []
    app = func.FunctionApp()

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="q", connection="X")
    def worker(msg: func.ServiceBusMessage) -> None:
        handled.append(msg.message_id)

    class FlakySource(ListSource):
        def complete(self, queue_name: str, message: ReceivedMessage) -> None:
            if message.message_id == "m0":
                raise ConnectionError("transport hiccup")
            super().complete(queue_name, message)

    source = FlakySource([ReceivedMessage(f"m{i}", b"{}") for i in range(3)])
    host = LocalHost(app, LocalHostSettings(local_host_workers=1), message_source=source)
    host.start_background()
    try:
        wait_for(lambda: len(source.completed) == 2)
    finally:
        host.stop_background()
    assert handled == ["m0", "m1", "m2"] and source.completed == ["m1", "m2"]


def test_prefetched_messages_not_started_in_time_go_back_unstarted(monkeypatch: pytest.MonkeyPatch) -> None:
    import triggers.localhost.background as background

    monkeypatch.setattr(background, "RELEASE_AFTER_SECONDS", 0.1)
    app = func.FunctionApp()
    started: list[str] = []

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="slow", connection="ServiceBusConnection")
    def slow(msg: func.ServiceBusMessage) -> None:
        started.append(msg.message_id)
        time.sleep(0.3)

    source = ListSource([ReceivedMessage(f"m{i}", b"{}") for i in range(3)])
    host = LocalHost(app, LocalHostSettings(local_host_workers=1, local_host_prefetch=3), message_source=source)
    host.start_background()
    try:
        wait_for(lambda: len(source.completed) == 3)
    finally:
        host.stop_background()
    assert sorted(started) == ["m0", "m1", "m2"]  # each ran once
    assert set(source.released) >= {"m1", "m2"}  # the first batch gave back what it had not started
