"""Timer and queue triggers run by the local host on background threads.

Timers fire on their NCRONTAB schedule. Queue-triggered functions are fed from
a :class:`MessageSource` (the configured queue transport) the way the
Functions host does it: success completes the message, an exception abandons
it so the transport redelivers (and dead-letters after too many deliveries).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

from infrastructure.queues.base import MessageSource, ReceivedMessage
from triggers.localhost.functions import QueueFunction, TimerFunction, invoke
from triggers.localhost.schedule import Schedule

log = logging.getLogger("geoetl.localhost")


def to_servicebus_message(message: ReceivedMessage) -> ServiceBusMessage:
    """The trigger argument a Service Bus queue trigger receives in Azure."""
    return ServiceBusMessage(
        body=message.body,
        message_id=message.message_id,
        delivery_count=message.delivery_count,
        enqueued_time_utc=message.enqueued_time,
        content_type=message.content_type,
        application_properties=dict(message.application_properties),
        user_properties=dict(message.application_properties),
    )


class TimerRunner(threading.Thread):
    """Fires one timer function on its schedule until ``stop`` is set."""

    def __init__(self, function: TimerFunction, stop: threading.Event) -> None:
        super().__init__(name=f"timer-{function.name}", daemon=True)
        self.function, self.stop_event = function, stop
        self.schedule = Schedule.parse(function.schedule)
        self.fired = 0

    def run(self) -> None:
        if self.function.run_on_startup:
            self._fire(past_due=False)
        while not self.stop_event.is_set():
            now = datetime.now(UTC)
            due = self.schedule.next_after(now)
            if self.stop_event.wait((due - now).total_seconds()):
                return
            self._fire(past_due=(datetime.now(UTC) - due).total_seconds() > 1)

    def _fire(self, past_due: bool) -> None:
        self.fired += 1
        try:
            invoke(self.function.fn, self.function.arg_name, TimerRequest(past_due=past_due))
        except Exception:
            log.exception("timer function %s raised", self.function.name)


RELEASE_AFTER_SECONDS = 1.0


class _Deadlines:
    """Calls functions at their deadlines on one daemon thread (cheaper than a timer thread per batch)."""

    def __init__(self) -> None:
        self._due: dict[int, tuple[float, Callable[[], None]]] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._next_id = 0

    def schedule(self, delay: float, fn: Callable[[], None]) -> int:
        with self._changed:
            idle = not self._due  # one delay for all: only a first deadline can be the earliest
            self._next_id += 1
            self._due[self._next_id] = (time.monotonic() + delay, fn)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="queue-release", daemon=True)
                self._thread.start()
                idle = True
            if idle:
                self._changed.notify()
            return self._next_id

    def cancel(self, handle: int) -> None:
        with self._changed:
            self._due.pop(handle, None)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                ready = [h for h, (at, _) in self._due.items() if at <= now]
                calls = [self._due.pop(h)[1] for h in ready]
                if not calls:
                    upcoming = [at for at, _ in self._due.values()]
                    self._changed.wait(min(upcoming) - now if upcoming else 60.0)
                    continue
            for call in calls:
                try:
                    call()
                except Exception:
                    log.exception("releasing prefetched messages failed; they come back after their timeout")


_deadlines = _Deadlines()


class QueueWorker(threading.Thread):
    """One worker feeding one queue-triggered function from a message source.

    It takes up to ``prefetch`` messages at once and runs them one after the other (short tasks then cost
    one receive for several); a second after the batch started, a deadline gives back to the queue the
    messages not started yet, so a long task holds the others back for a second at most.
    """

    def __init__(
        self, function: QueueFunction, source: MessageSource, stop: threading.Event, index: int, prefetch: int = 1
    ) -> None:
        super().__init__(name=f"queue-{function.name}-{index}", daemon=True)
        self.function, self.source, self.stop_event = function, source, stop
        self.prefetch = prefetch

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                messages = self.source.receive(self.function.queue_name, self.prefetch, 1.0)
            except Exception:
                log.exception("receiving from %s failed; retrying", self.function.queue_name)
                self.stop_event.wait(2.0)
                continue
            if len(messages) == 1:
                self._handle(messages[0])
            elif messages:
                self._run_batch(messages)

    def _run_batch(self, messages: Sequence[ReceivedMessage]) -> None:
        """One after the other; after RELEASE_AFTER_SECONDS a timer gives back those not started yet."""
        pending = deque(messages)
        lock = threading.Lock()

        def release_rest() -> None:
            with lock:
                rest = list(pending)
                pending.clear()
            self._release(rest)

        handle = _deadlines.schedule(RELEASE_AFTER_SECONDS, release_rest)
        try:
            while not self.stop_event.is_set():
                with lock:
                    if not pending:
                        break
                    message = pending.popleft()
                self._handle(message)
        finally:
            _deadlines.cancel(handle)
            release_rest()

    def _release(self, messages: Sequence[ReceivedMessage]) -> None:
        for message in messages:
            self._settle(self.source.release, self.function.queue_name, message)

    def _handle(self, message: ReceivedMessage) -> None:
        """Run the function; settle the message (complete or abandon) without ever killing the worker."""
        queue = self.function.queue_name
        try:
            invoke(self.function.fn, self.function.arg_name, to_servicebus_message(message))
        except Exception as exc:
            log.exception("function %s failed on message %s", self.function.name, message.message_id)
            self._settle(self.source.abandon, queue, message, f"{type(exc).__name__}: {exc}")
            return
        self._settle(self.source.complete, queue, message)

    def _settle(self, action: Any, *args: Any) -> None:
        # A message left unsettled comes back when its lock or visibility timeout expires: at-least-once.
        try:
            action(*args)
        except Exception:
            log.exception("settling message on %s failed; it will be delivered again", self.function.queue_name)
