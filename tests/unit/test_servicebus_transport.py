"""The Service Bus transport without a namespace: the SDK's own message, batch and received-message types, and
fake clients that record what the transport asks of the SDK (and raise the SDK's own errors)."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from azure.servicebus import (
    AutoLockRenewer,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
)
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._pyamqp.message import Header, Message, Properties
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusServerBusyError,
)

from core.errors import Conflict, GeoetlError, InvalidInput, InvalidSetting, ServiceUnavailable
from core.models import QueueMessage, job_message, task_message
from core.settings import QueueSettings
from infrastructure.queues import servicebus
from infrastructure.queues.base import ReceivedMessage
from infrastructure.queues.servicebus import (
    LOCK_RENEWAL_SECONDS,
    ServiceBusSender,
    ServiceBusSource,
    build_client,
    build_messages,
    send_in_batches,
    to_received,
)

KEY = "c2VjcmV0LWtleS1vZi10aGUtdGVzdHM9PQ=="
CONNECTION = f"Endpoint=sb://geoetl-test.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={KEY}"
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
JOB_ID = "a" * 64


def _settings(connection: str | None = CONNECTION, namespace: str | None = None) -> QueueSettings:
    values = {"ServiceBusConnection": connection, "ServiceBusConnection__fullyQualifiedNamespace": namespace}
    return QueueSettings.model_validate({name: value for name, value in values.items() if value is not None})


def _body(message: ServiceBusMessage | ServiceBusReceivedMessage) -> bytes:
    return b"".join(message.body)


# --- fakes of the SDK's client, sender and receiver ----------------------------------------------------


class RecordingBatch(ServiceBusMessageBatch):
    """The SDK's batch (its own size accounting), remembering which messages it accepted."""

    def __init__(self, max_size_in_bytes: int) -> None:
        super().__init__(max_size_in_bytes=max_size_in_bytes)
        self.added: list[ServiceBusMessage] = []

    def add_message(self, message: Any) -> None:
        super().add_message(message)
        self.added.append(message)


class FakeSender:
    def __init__(self, batch_size: int, error: BaseException | None = None) -> None:
        self.batch_size, self.error = batch_size, error
        self.batches: list[RecordingBatch] = []
        self.scheduled: list[tuple[list[ServiceBusMessage], datetime]] = []
        self.closed = False
        self.busy = threading.Lock()  # the SDK's handlers are not thread-safe: calls must never overlap
        self.overlaps = 0

    def _enter(self) -> None:
        if not self.busy.acquire(blocking=False):
            self.overlaps += 1
            return
        time.sleep(0.001)
        self.busy.release()
        if self.error is not None:
            raise self.error

    def create_message_batch(self, max_size_in_bytes: int | None = None) -> RecordingBatch:
        self._enter()
        return RecordingBatch(self.batch_size)

    def send_messages(self, batch: RecordingBatch) -> None:
        self._enter()
        self.batches.append(batch)

    def schedule_messages(self, messages: list[ServiceBusMessage], schedule_time_utc: datetime) -> list[int]:
        self._enter()
        self.scheduled.append((list(messages), schedule_time_utc))
        return list(range(len(messages)))

    def close(self) -> None:
        self.closed = True


class FakeReceiver:
    def __init__(self, messages: list[ServiceBusReceivedMessage], error: BaseException | None = None) -> None:
        self.pending, self.error = messages, error
        self.calls: list[tuple[str, Any]] = []
        self.closed = False

    def _call(self, name: str, argument: Any) -> None:
        self.calls.append((name, argument))
        if self.error is not None:
            raise self.error

    def receive_messages(self, max_message_count: int, max_wait_time: float) -> list[ServiceBusReceivedMessage]:
        self._call("receive", (max_message_count, max_wait_time))
        taken, self.pending = self.pending[:max_message_count], self.pending[max_message_count:]
        return taken

    def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        self._call("complete", message)

    def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        self._call("abandon", message)

    def close(self) -> None:
        self.closed = True


class FakeClient:
    def __init__(self, batch_size: int = 1024, error: BaseException | None = None) -> None:
        self.batch_size, self.error = batch_size, error
        self.senders: dict[str, FakeSender] = {}
        self.receivers: dict[str, FakeReceiver] = {}
        self.receiver_options: dict[str, dict[str, Any]] = {}
        self.inbox: list[ServiceBusReceivedMessage] = []
        self.closed = False

    def get_queue_sender(self, queue_name: str) -> FakeSender:
        assert queue_name not in self.senders, "a sender per queue, cached"
        self.senders[queue_name] = FakeSender(self.batch_size, self.error)
        return self.senders[queue_name]

    def get_queue_receiver(self, queue_name: str, **options: Any) -> FakeReceiver:
        assert queue_name not in self.receivers, "a receiver per queue, cached"
        self.receivers[queue_name], self.receiver_options[queue_name] = FakeReceiver(self.inbox, self.error), options
        return self.receivers[queue_name]

    def close(self) -> None:
        self.closed = True


def _sender(client: FakeClient) -> ServiceBusSender:
    return ServiceBusSender(_settings(), None, client=cast(ServiceBusClient, client))


@pytest.fixture
def source_client() -> Iterator[tuple[ServiceBusSource, FakeClient]]:
    client = FakeClient()
    source = ServiceBusSource(_settings(), None, client=cast(ServiceBusClient, client))
    yield source, client
    source.close()


# --- building messages -------------------------------------------------------------------------------


def test_messages_keep_id_json_body_content_type_and_properties() -> None:
    queued = [job_message(JOB_ID, 1, "s1"), task_message(f"{JOB_ID}-r1-s1-t0", 2)]
    immediate, scheduled = build_messages(queued, now=NOW)
    assert scheduled == []
    for built, original in zip(immediate, queued, strict=True):
        assert built.message_id == original.message_id
        assert _body(built) == original.body.encode()
        assert built.content_type == "application/json"
        assert built.application_properties == original.properties
        assert built.scheduled_enqueue_time_utc is None


def test_future_messages_are_scheduled_in_utc_and_past_ones_sent_now() -> None:
    later = NOW + timedelta(seconds=30)
    in_paris = datetime(2030, 1, 2, 4, 5, 5, tzinfo=timezone(timedelta(hours=1)))  # NOW + 60 s
    messages = [
        task_message("t-due", 1, not_before=NOW - timedelta(seconds=1)),
        task_message("t-now", 1, not_before=NOW),
        task_message("t-later", 2, not_before=later),
        task_message("t-offset", 2, not_before=in_paris),
        task_message("t-none", 1),
    ]
    immediate, scheduled = build_messages(messages, now=NOW)
    assert [m.message_id for m in immediate] == ["t-due:a1", "t-now:a1", "t-none:a1"]
    assert [(m.message_id, due) for m, due in scheduled] == [
        ("t-later:a2", later),
        ("t-offset:a2", NOW + timedelta(seconds=60)),
    ]
    assert all(due.tzinfo is UTC for _, due in scheduled)


def test_naive_not_before_is_taken_as_utc() -> None:
    naive = datetime(2030, 1, 2, 3, 5, 0)
    _, scheduled = build_messages([task_message("t", 1, not_before=naive)], now=NOW)
    assert scheduled[0][1] == naive.replace(tzinfo=UTC) and scheduled[0][1].tzinfo is UTC
    immediate, _ = build_messages([task_message("t", 1, not_before=datetime(2030, 1, 2, 3, 4, 0))], now=NOW)
    assert len(immediate) == 1


def test_too_long_ids_become_a_stable_digest() -> None:
    long_id = "x" * 129
    first = build_messages([QueueMessage(long_id, "{}")], now=NOW)[0][0]
    second = build_messages([QueueMessage(long_id, "{}")], now=NOW)[0][0]
    assert first.message_id == second.message_id and first.message_id is not None
    assert first.message_id.startswith("sha256:") and len(first.message_id) <= 128
    assert build_messages([QueueMessage("y" * 128, "{}")], now=NOW)[0][0].message_id == "y" * 128


def test_properties_are_primitives() -> None:
    message = QueueMessage("m", "{}", properties={"n": 3, "ok": True, "nested": {"b": 1, "a": [1]}, "gone": None})
    built = build_messages([message], now=NOW)[0][0]
    assert built.application_properties == {"n": 3, "ok": True, "nested": '{"a":[1],"b":1}'}


# --- receiving ---------------------------------------------------------------------------------------


def _received(
    body: list[bytes], delivery_count: int | None, annotations: dict[str | bytes, Any] | None = None
) -> ServiceBusReceivedMessage:
    """A received message as the SDK's own tests build one: a pyamqp Message, no receiver."""
    amqp = Message(
        header=Header(delivery_count=delivery_count),
        properties=Properties(message_id=b"t-1:a1", content_type=b"application/json"),
        application_properties={b"kind": b"task", b"task_id": b"t-1", b"n": 7},
        message_annotations=annotations,
        data=body,
    )
    return ServiceBusReceivedMessage(amqp, receiver=None)


def test_to_received_joins_body_sections_and_decodes_properties() -> None:
    enqueued_ms = int(NOW.timestamp() * 1000)
    message = _received([b'{"task_id":', b'"t-1","attempt":1}'], 2, {b"x-opt-enqueued-time": enqueued_ms})
    received = to_received(message)
    assert received == ReceivedMessage(
        message_id="t-1:a1",
        body=b'{"task_id":"t-1","attempt":1}',
        delivery_count=3,  # the SDK counts earlier deliveries (2), a ReceivedMessage counts this one too
        enqueued_time=NOW,
        content_type="application/json",
        application_properties={"kind": "task", "task_id": "t-1", "n": 7},
        receipt=message,
    )
    assert received.receipt is message


def test_first_delivery_counts_one() -> None:
    assert to_received(_received([b"{}"], None)).delivery_count == 1
    assert to_received(_received([b"{}"], 0)).delivery_count == 1


def test_a_sent_message_reads_back_the_same_over_the_wire_format() -> None:
    """Encode a built message as AMQP bytes (as the broker would deliver it) and receive it with the SDK."""
    original = task_message("t-9", 4)
    built = build_messages([original], now=NOW)[0][0]
    amqp = PyamqpTransport.to_outgoing_amqp_message(built.raw_amqp_message)
    enqueued: dict[str | bytes, Any] = {
        b"x-opt-enqueued-time": {"TYPE": "TIMESTAMP", "VALUE": int(NOW.timestamp() * 1000)}
    }
    wire = bytearray()
    encode_payload(wire, amqp._replace(header=Header(delivery_count=0), message_annotations=enqueued))
    received = to_received(ServiceBusReceivedMessage.from_bytes(bytes(wire)))
    assert (received.message_id, received.body) == (original.message_id, original.body.encode())
    assert received.application_properties == original.properties
    assert (received.delivery_count, received.enqueued_time, received.content_type) == (1, NOW, "application/json")


# --- sending -----------------------------------------------------------------------------------------


def test_batches_fill_up_then_a_new_one_starts() -> None:
    sender = FakeSender(batch_size=600)
    messages = build_messages([task_message(f"task-{i}", 1) for i in range(20)], now=NOW)[0]
    sent = send_in_batches(cast(Any, sender), messages)
    assert sent == len(sender.batches) > 2
    assert [m.message_id for batch in sender.batches for m in batch.added] == [m.message_id for m in messages]
    assert all(len(batch) > 0 and batch.size_in_bytes <= 600 for batch in sender.batches)


def test_a_message_too_large_for_any_batch_is_invalid() -> None:
    sender = FakeSender(batch_size=200)
    messages = build_messages([QueueMessage("small", "{}"), QueueMessage("big", "x" * 500)], now=NOW)[0]
    with pytest.raises(InvalidInput, match="big"):
        send_in_batches(cast(Any, sender), messages)
    assert [[m.message_id for m in batch.added] for batch in sender.batches] == [["small"]]


def test_send_batches_the_due_and_schedules_the_rest() -> None:
    client = FakeClient()
    sender = _sender(client)
    later = datetime.now(UTC) + timedelta(hours=1)
    even_later = later + timedelta(minutes=5)
    sender.send(
        "tasks",
        [
            task_message("t-a", 1),
            task_message("t-b", 2, not_before=later),
            task_message("t-c", 2, not_before=later),
            task_message("t-d", 3, not_before=even_later),
        ],
    )
    fake = client.senders["tasks"]
    assert [[m.message_id for m in batch.added] for batch in fake.batches] == [["t-a:a1"]]
    assert [([m.message_id for m in group], due) for group, due in fake.scheduled] == [
        (["t-b:a2", "t-c:a2"], later),
        (["t-d:a3"], even_later),
    ]
    assert all(due.tzinfo is UTC for _, due in fake.scheduled)
    assert sender.transactional is False


def test_nothing_to_send_touches_nothing() -> None:
    client = FakeClient()
    _sender(client).send("tasks", [])
    assert client.senders == {}


def test_one_sender_per_queue_used_by_one_thread_at_a_time() -> None:
    client = FakeClient()
    sender = _sender(client)

    def send_many(worker: int) -> None:
        for i in range(20):
            sender.send("tasks" if i % 2 else "jobs", [task_message(f"w{worker}-{i}", 1)])

    threads = [threading.Thread(target=send_many, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(client.senders) == {"tasks", "jobs"}
    assert sum(len(batch) for fake in client.senders.values() for batch in fake.batches) == 120
    assert all(fake.overlaps == 0 for fake in client.senders.values())


def test_close_closes_senders_and_client_and_refuses_more_sends() -> None:
    client = FakeClient()
    sender = _sender(client)
    sender.send("tasks", [task_message("t", 1)])
    sender.close()
    assert client.closed and client.senders["tasks"].closed
    with pytest.raises(GeoetlError, match="closed"):
        sender.send("tasks", [task_message("t", 2)])


# --- errors ------------------------------------------------------------------------------------------


def _assert_no_secret(error: BaseException) -> None:
    assert isinstance(error, GeoetlError)
    for text in (str(error), repr(error.details), "".join(traceback.format_exception(error))):
        for secret in (KEY, CONNECTION, "SharedAccessKey=c2", "sig=abc"):
            assert secret not in text, f"{secret!r} in {text!r}"


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (ServiceBusConnectionError(message="Failed to initiate the connection"), "cannot be reached"),
        (ServiceBusCommunicationError(), "cannot be reached"),
        (OperationTimeoutError(), "did not answer in time"),
        (ServiceBusServerBusyError(), "busy"),
        (ServiceBusAuthenticationError(message="Put token failed. status-code: 401"), "refused the credentials"),
        (MessagingEntityNotFoundError(message="The messaging entity could not be found"), "no such queue"),
        (ServiceBusError("Something else went wrong"), "failed"),
    ],
)
def test_sdk_errors_become_service_unavailable(error: ServiceBusError, says: str) -> None:
    client = FakeClient(error=error)
    with pytest.raises(ServiceUnavailable) as caught:
        _sender(client).send("tasks", [task_message("t", 1)])
    assert caught.value.retryable and says in caught.value.message
    assert "'tasks'" in caught.value.message and type(error).__name__ in caught.value.message
    assert caught.value.details == {"queue": "tasks", "operation": "send", "azure_error": type(error).__name__}
    assert caught.value.__cause__ is error  # no secret in it: kept for the logged traceback
    _assert_no_secret(caught.value)


def test_errors_quoting_secrets_are_redacted_and_not_chained() -> None:
    inner = ValueError(f"bad token SharedAccessSignature sr=x&sig=abcdef&se=1 from {CONNECTION}")
    error = ServiceBusAuthenticationError(message=f"CBS failed for SharedAccessKey={KEY}", error=inner)
    client = FakeClient(error=error)
    with pytest.raises(ServiceUnavailable) as caught:
        _sender(client).send("tasks", [task_message("t", 1)])
    assert "<redacted>" in caught.value.message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    _assert_no_secret(caught.value)


def test_a_secret_only_in_the_wrapped_error_also_stops_chaining() -> None:
    error = ServiceBusConnectionError(message="connection lost", error=ValueError(f"while using {CONNECTION}"))
    with pytest.raises(ServiceUnavailable) as caught:
        _sender(FakeClient(error=error)).send("tasks", [task_message("t", 1)])
    assert caught.value.__cause__ is None
    _assert_no_secret(caught.value)


@pytest.mark.parametrize("side", ["send", "receive"])
def test_a_real_client_that_cannot_connect_raises_service_unavailable(side: str) -> None:
    """The SDK's own failure (a refused TCP connection), without retries, through the transport."""
    connection = f"Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=send;SharedAccessKey={KEY};UseDevelopmentEmulator=true"
    client = ServiceBusClient.from_connection_string(connection, retry_total=0)
    transport: ServiceBusSender | ServiceBusSource
    if side == "send":
        transport = ServiceBusSender(_settings(connection), None, client=client)
    else:
        transport = ServiceBusSource(_settings(connection), None, client=client)
    try:
        with pytest.raises(ServiceUnavailable, match="cannot be reached") as caught:
            if isinstance(transport, ServiceBusSender):
                transport.send("tasks", [task_message("t", 1)])
            else:
                transport.receive("tasks", 1, 1.0)
        _assert_no_secret(caught.value)
    finally:
        transport.close()


# --- settings ----------------------------------------------------------------------------------------


def test_neither_connection_nor_namespace_is_an_invalid_setting() -> None:
    with pytest.raises(InvalidSetting) as caught:
        ServiceBusSender(_settings(connection=None), None)
    assert "ServiceBusConnection " in caught.value.message
    assert "ServiceBusConnection__fullyQualifiedNamespace" in caught.value.message
    with pytest.raises(InvalidSetting):
        ServiceBusSource(_settings(connection=None), "client-id")


def test_a_malformed_connection_string_is_invalid_without_quoting_it() -> None:
    malformed = f"Endpoint=sb://geoetl-test.servicebus.windows.net/;SharedAccessKey={KEY}"
    with pytest.raises(InvalidSetting, match="ServiceBusConnection") as caught:
        ServiceBusSender(_settings(malformed), None)
    _assert_no_secret(caught.value)


def test_the_connection_string_wins_over_the_namespace() -> None:
    client = build_client(_settings(namespace="other.servicebus.windows.net"), None)
    try:
        assert client.fully_qualified_namespace == "geoetl-test.servicebus.windows.net"
    finally:
        client.close()


@pytest.mark.parametrize("namespace", ["geoetl-mi.servicebus.windows.net", "sb://geoetl-mi.servicebus.windows.net/"])
def test_a_namespace_uses_the_identity_credential(monkeypatch: pytest.MonkeyPatch, namespace: str) -> None:
    asked: list[str | None] = []

    class Credential:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise AssertionError("no token is needed before connecting")

    def get_credential(client_id: str | None = None) -> Credential:
        asked.append(client_id)
        return Credential()

    monkeypatch.setattr(servicebus, "get_credential", get_credential)
    client = build_client(_settings(connection=None, namespace=namespace), "mi-client-id")
    try:
        assert client.fully_qualified_namespace == "geoetl-mi.servicebus.windows.net"
        assert asked == ["mi-client-id"]
    finally:
        client.close()


# --- the source --------------------------------------------------------------------------------------


def test_receive_uses_a_cached_peek_lock_receiver_with_lock_renewal(
    source_client: tuple[ServiceBusSource, FakeClient],
) -> None:
    source, client = source_client
    client.inbox.extend(_received([b"{}"], 0) for _ in range(3))
    first = source.receive("tasks", 2, 5.0)
    second = source.receive("tasks", 2, 0)
    assert [len(first), len(second)] == [2, 1]
    assert all(isinstance(m.receipt, ServiceBusReceivedMessage) and m.delivery_count == 1 for m in first)
    options = client.receiver_options["tasks"]
    assert options["receive_mode"] == ServiceBusReceiveMode.PEEK_LOCK
    renewer = options["auto_lock_renewer"]
    assert isinstance(renewer, AutoLockRenewer) and renewer._max_lock_renewal_duration == LOCK_RENEWAL_SECONDS
    calls = client.receivers["tasks"].calls
    assert calls[0] == ("receive", (2, 5.0)) and calls[1][1][1] > 0  # the SDK refuses a wait of 0


def test_complete_and_abandon_settle_the_received_message(source_client: tuple[ServiceBusSource, FakeClient]) -> None:
    source, client = source_client
    client.inbox.extend([_received([b"{}"], 0), _received([b"{}"], 0)])
    done, failed = source.receive("tasks", 2, 1.0)
    source.complete("tasks", done)
    source.abandon("tasks", failed, "ValueError: boom")
    assert client.receivers["tasks"].calls[1:] == [("complete", done.receipt), ("abandon", failed.receipt)]


def test_nothing_asked_nothing_received(source_client: tuple[ServiceBusSource, FakeClient]) -> None:
    source, client = source_client
    assert source.receive("tasks", 0, 1.0) == []
    assert client.receivers == {}


@pytest.mark.parametrize("action", ["receive", "complete", "abandon"])
def test_source_errors_are_translated(action: str) -> None:
    client = FakeClient(error=MessageLockLostError())
    source = ServiceBusSource(_settings(), None, client=cast(ServiceBusClient, client))
    message = ReceivedMessage("m", b"{}", receipt=_received([b"{}"], 0))
    try:
        with pytest.raises(
            ServiceUnavailable,
            match=f"{action} on Service Bus queue 'tasks' failed: Service Bus lost the message's lock",
        ):
            if action == "receive":
                source.receive("tasks", 1, 1.0)
            elif action == "complete":
                source.complete("tasks", message)
            else:
                source.abandon("tasks", message, "boom")
    finally:
        source.close()


def test_settling_twice_is_a_conflict() -> None:
    client = FakeClient(error=MessageAlreadySettled(action="complete"))
    source = ServiceBusSource(_settings(), None, client=cast(ServiceBusClient, client))
    try:
        with pytest.raises(Conflict, match="already settled"):
            source.complete("tasks", ReceivedMessage("m", b"{}", receipt=_received([b"{}"], 0)))
    finally:
        source.close()


def test_source_close_closes_receivers_and_client() -> None:
    client = FakeClient()
    source = ServiceBusSource(_settings(), None, client=cast(ServiceBusClient, client))
    source.receive("jobs", 1, 0.1)
    source.close()
    assert client.closed and client.receivers["jobs"].closed
    with pytest.raises(GeoetlError, match="closed"):
        source.receive("jobs", 1, 0.1)
