"""The Service Bus transport against a real namespace: send, schedule, receive, abandon and complete.

Runs only when GEOETL_TEST_SERVICEBUS_CONNECTION holds a connection string (Send and Listen rights) of a
namespace whose queue GEOETL_TEST_SERVICEBUS_QUEUE (default geospatial-tasks) exists. Use a queue for tests
only: messages that are not the test's own are abandoned, which counts a delivery against them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from core.models import task_message
from core.settings import QueueSettings
from infrastructure.queues.base import ReceivedMessage
from infrastructure.queues.servicebus import ServiceBusSender, ServiceBusSource

CONNECTION = os.environ.get("GEOETL_TEST_SERVICEBUS_CONNECTION", "")
QUEUE = os.environ.get("GEOETL_TEST_SERVICEBUS_QUEUE") or "geospatial-tasks"

pytestmark = [
    pytest.mark.servicebus,
    pytest.mark.skipif(
        not CONNECTION,
        reason="set GEOETL_TEST_SERVICEBUS_CONNECTION to a Service Bus connection string to run the live "
        "Service Bus tests (queue: GEOETL_TEST_SERVICEBUS_QUEUE, default geospatial-tasks)",
    ),
]


@pytest.fixture
def transport() -> Iterator[tuple[ServiceBusSender, ServiceBusSource]]:
    settings = QueueSettings.model_validate({"ServiceBusConnection": CONNECTION})
    sender, source = ServiceBusSender(settings, None), ServiceBusSource(settings, None)
    try:
        yield sender, source
    finally:
        sender.close()
        source.close()


def _collect(source: ServiceBusSource, wanted: set[str], seconds: float) -> list[ReceivedMessage]:
    """Messages with ids in ``wanted`` received within ``seconds`` (left unsettled); others are abandoned."""
    found: list[ReceivedMessage] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len({m.message_id for m in found}) < len(wanted):
        for message in source.receive(QUEUE, 10, min(5.0, max(0.1, deadline - time.monotonic()))):
            if message.message_id in wanted:
                found.append(message)
            else:
                source.abandon(QUEUE, message, "not a message of this test")
    return found


def _unique(prefix: str) -> str:
    return f"live-{prefix}-{uuid.uuid4().hex}"


def test_send_receive_abandon_complete(transport: tuple[ServiceBusSender, ServiceBusSource]) -> None:
    sender, source = transport
    message = task_message(_unique("roundtrip"), 1)
    sent_at = datetime.now(UTC)
    sender.send(QUEUE, [message])

    [first] = _collect(source, {message.message_id}, 60)
    assert (first.body, first.content_type) == (message.body.encode(), "application/json")
    assert first.application_properties == message.properties
    assert first.delivery_count == 1
    assert first.enqueued_time is not None and abs(first.enqueued_time - sent_at) < timedelta(minutes=2)

    source.abandon(QUEUE, first, "testing redelivery")
    [second] = _collect(source, {message.message_id}, 60)
    assert second.delivery_count == 2
    source.complete(QUEUE, second)
    assert _collect(source, {message.message_id}, 5) == []


def test_a_scheduled_message_arrives_when_due(transport: tuple[ServiceBusSender, ServiceBusSource]) -> None:
    sender, source = transport
    due = datetime.now(UTC) + timedelta(seconds=10)
    message = task_message(_unique("scheduled"), 2, not_before=due)
    sender.send(QUEUE, [message])

    assert _collect(source, {message.message_id}, 6) == [], "delivered before its time"
    [received] = _collect(source, {message.message_id}, 90)
    assert datetime.now(UTC) >= due - timedelta(seconds=1)  # a second of clock skew allowed
    assert received.enqueued_time is not None and received.enqueued_time >= due - timedelta(seconds=1)
    source.complete(QUEUE, received)


def test_many_messages_go_out_in_batches_and_arrive_once(
    transport: tuple[ServiceBusSender, ServiceBusSource],
) -> None:
    sender, source = transport
    messages = [task_message(_unique(f"batch{i}"), 1) for i in range(150)]
    sender.send(QUEUE, messages)
    received = _collect(source, {m.message_id for m in messages}, 120)
    for message in received:
        source.complete(QUEUE, message)
    assert sorted(m.message_id for m in received) == sorted(m.message_id for m in messages)
