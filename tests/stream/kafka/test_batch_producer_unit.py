"""BatchProducer's retry, merge and deadline paths against a fake network client.

No broker: :class:`FakeNetClient` stands in for the part of kafka-python's
``KafkaNetClient`` that ``BatchProducer`` uses (``cluster``, ``send``, ``poll``,
``check_version``, ``close``), answers each ``ProduceRequest`` as scripted and keeps the
log of what it accepted. Time is a fake clock that ``poll`` moves on by its timeout, so
back-offs and deadlines pass without waiting. Real-broker behaviour is in
``tests/integration/test_batch_producer.py``.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import kafka.errors as kafka_errors
import pytest
from kafka.future import Future
from kafka.protocol.producer import ProduceRequest, ProduceResponse
from kafka.record.memory_records import MemoryRecords
from kafka.structs import TopicPartition

from stream.exceptions import PublishError, PublishTimeout
from stream.kafka import batch_producer
from stream.kafka.batch_producer import RETRY_BACKOFF_S, BatchProducer
from stream.kafka.record_batch import partition_for_key

NOT_LEADER = kafka_errors.NotLeaderForPartitionError.errno  # retriable
TOO_LARGE = kafka_errors.MessageSizeTooLargeError.errno  # not retriable
#: A scripted answer that never comes: the request times out, as kafka-python's
#: connection fails it after ``request_timeout_ms``.
SILENT = "silent"
T0 = 1_700_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Sent:
    """One ProduceRequest as the fake broker saw it."""

    tp: tuple[str, int]
    values: list[bytes | None]
    keys: list[bytes | None]
    at: float
    outcome: Any
    future: Future = field(default_factory=Future)


class FakeCluster:
    """The metadata calls BatchProducer makes, with topics known up front or later."""

    def __init__(self, partitions: dict[str, int]) -> None:
        self.partitions = dict(partitions)
        self.appearing: dict[str, int] = {}  # topics whose metadata the next update brings
        self.leader: int | None = 1
        self.updates: list[Future] = []
        self.update_count = 0

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        count = self.partitions.get(topic)
        return set(range(count)) if count else None

    def add_topic(self, topic: str) -> None:
        pass

    def request_update(self) -> Future:
        update = Future()
        self.updates.append(update)
        self.update_count += 1
        return update

    def leader_for_partition(self, tp: TopicPartition) -> int | None:
        return self.leader if tp.topic in self.partitions else None

    def answer_updates(self) -> None:
        if self.updates:
            self.partitions.update(self.appearing)
            self.appearing.clear()
            for update in self.updates:
                update.success(self)
            self.updates.clear()


class FakeNetClient:
    """Answers requests in order on ``poll``: each takes the next scripted outcome (an
    error code, an exception to fail the future with, or SILENT), ``default`` once the
    script is used up. ``held`` keeps answers back (requests stay in flight)."""

    def __init__(self, clock: Clock, partitions: dict[str, int], timeout_s: float = 30.0):
        self.clock = clock
        self.cluster = FakeCluster(partitions)
        self.timeout_s = timeout_s
        self.script: deque[Any] = deque()
        self.default: Any = 0
        self.held = False
        self.requests: list[Sent] = []
        self.log: dict[tuple[str, int], list[bytes | None]] = defaultdict(list)
        self.closed = False

    def check_version(self, timeout_ms: int | None = None) -> tuple[int, int]:
        return (4, 0)

    def send(self, node: int, request: ProduceRequest) -> Future:
        assert request.acks == -1
        [topic] = request.topic_data
        [partition] = topic.partition_data
        tp = (topic.name, partition.index)
        assert not self.in_flight(tp), f"two requests in flight for {tp}"
        records = list(MemoryRecords(bytes(partition.records)).next_batch())
        outcome = self.script.popleft() if self.script else self.default
        sent = Sent(tp, [r.value for r in records], [r.key for r in records], self.clock(), outcome)
        self.requests.append(sent)
        return sent.future

    def in_flight(self, tp: tuple[str, int]) -> list[Sent]:
        return [sent for sent in self.requests if sent.tp == tp and not sent.future.is_done]

    def poll(self, timeout_ms: float | None = None, future: Future | None = None) -> None:
        self.clock.now += (timeout_ms or 0) / 1000
        self.cluster.answer_updates()
        for sent in self.requests:
            if not sent.future.is_done:
                self._answer(sent)

    def _answer(self, sent: Sent) -> None:
        if sent.outcome == SILENT:
            if self.clock() >= sent.at + self.timeout_s:
                sent.future.failure(kafka_errors.RequestTimedOutError("no answer"))
        elif self.held:
            return
        elif isinstance(sent.outcome, Exception):
            sent.future.failure(sent.outcome)
        else:
            if sent.outcome == 0:
                self.log[sent.tp] += sent.values
            sent.future.success(response(sent.tp, sent.outcome))

    def close(self) -> None:
        self.closed = True


def response(tp: tuple[str, int], error_code: int) -> ProduceResponse:
    topic = ProduceResponse.TopicProduceResponse
    partition = topic.PartitionProduceResponse
    answer = partition(index=tp[1], error_code=error_code, error_message=None)
    return ProduceResponse(responses=[topic(name=tp[0], partition_responses=[answer])])


def producer_on(
    client: FakeNetClient, clock: Clock, delivery_timeout_s: float = 120.0
) -> BatchProducer:
    return BatchProducer(
        {"bootstrap_servers": ["fake:9092"]},
        delivery_timeout_s=delivery_timeout_s,
        client=client,
        clock=clock,
    )


def send_values(producer: BatchProducer, topic: str, values: list[bytes]) -> None:
    for value in values:
        producer.send(topic, value, None, None, timestamp_ms=T0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(clock: Clock) -> FakeNetClient:
    return FakeNetClient(clock, {"out": 1})


@pytest.mark.parametrize(
    "failure",
    [NOT_LEADER, kafka_errors.KafkaConnectionError("reset"), SILENT],
    ids=["not-leader", "connection-lost", "no-answer"],
)
def test_a_retriable_failure_is_retried_before_anything_behind_it(
    client: FakeNetClient, clock: Clock, failure: Any
) -> None:
    producer = producer_on(client, clock)
    client.script.append(failure)
    send_values(producer, "out", [b"a0", b"a1"])
    producer.ship()
    send_values(producer, "out", [b"b0"])
    producer.ship()
    producer.flush(timeout_s=60)

    assert client.log[("out", 0)] == [b"a0", b"a1", b"b0"]
    first, retry, behind = client.requests
    assert first.values == retry.values == [b"a0", b"a1"]  # the same batch, sent again
    assert behind.values == [b"b0"]
    assert retry.at >= first.at + RETRY_BACKOFF_S
    assert client.cluster.update_count >= 1  # the leader may have moved: metadata refreshed


def test_a_non_retriable_error_fails_the_batch_at_flush_and_the_rest_goes_on(
    client: FakeNetClient, clock: Clock
) -> None:
    producer = producer_on(client, clock)
    client.script.append(TOO_LARGE)
    send_values(producer, "out", [b"big0", b"big1", b"big2"])
    producer.ship()
    send_values(producer, "out", [b"next"])
    with pytest.raises(PublishError, match=r"3 send\(s\) failed.*MessageSizeTooLarge") as raised:
        producer.flush(timeout_s=5)
    assert not isinstance(raised.value, PublishTimeout)
    assert [sent.values for sent in client.requests] == [[b"big0", b"big1", b"big2"], [b"next"]]
    assert client.log[("out", 0)] == [b"next"]
    producer.flush(timeout_s=5)  # a failure is reported once


def test_shipments_queued_behind_a_request_in_flight_go_as_one_batch_up_to_the_limit(
    client: FakeNetClient, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each shipment of two 19-byte values counts 86 bytes (``_size``): two fit in 200.
    monkeypatch.setattr(batch_producer, "MAX_BATCH_BYTES", 200)
    producer = producer_on(client, clock)
    client.held = True
    for shipment in range(4):
        send_values(producer, "out", [b"%d-%s" % (shipment, b"x" * 17) for _ in range(2)])
        producer.ship()
    assert len(client.requests) == 1  # the first; three shipments wait behind it
    client.held = False
    producer.flush(timeout_s=5)

    sizes = [len(sent.values) for sent in client.requests]
    assert sizes == [2, 4, 2]
    assert [value[:1] for value in client.log[("out", 0)]] == [b"%d" % (i // 2) for i in range(8)]


def test_a_batch_sent_once_is_resent_as_is_never_merged_with_later_ones(
    client: FakeNetClient, clock: Clock
) -> None:
    producer = producer_on(client, clock)
    client.script.append(NOT_LEADER)
    send_values(producer, "out", [b"first"])
    producer.ship()
    send_values(producer, "out", [b"second"])
    producer.ship()
    producer.flush(timeout_s=5)
    assert [sent.values for sent in client.requests] == [[b"first"], [b"first"], [b"second"]]


@pytest.mark.parametrize("trouble", ["retriable-errors", "no-leader"])
def test_past_the_delivery_deadline_the_batch_fails(
    client: FakeNetClient, clock: Clock, trouble: str
) -> None:
    producer = producer_on(client, clock, delivery_timeout_s=2.0)
    if trouble == "retriable-errors":
        client.default = NOT_LEADER
    else:
        client.cluster.leader = -1
    send_values(producer, "out", [b"lost0", b"lost1"])
    start = clock()
    with pytest.raises(PublishError, match=r"2 send\(s\) failed.*not delivered within 2 s"):
        producer.flush(timeout_s=30)
    assert 2.0 <= clock() - start < 30  # failed by the deadline, not by the flush timeout
    assert client.log[("out", 0)] == []
    if trouble == "retriable-errors":
        assert len(client.requests) > 2  # retried meanwhile, with a back-off
        gaps = [b.at - a.at for a, b in zip(client.requests, client.requests[1:], strict=False)]
        assert min(gaps) >= RETRY_BACKOFF_S
    else:
        assert client.requests == [] and client.cluster.update_count > 1  # kept asking


def test_an_unconfirmed_flush_raises_publish_timeout_and_a_later_flush_delivers(
    client: FakeNetClient, clock: Clock
) -> None:
    producer = producer_on(client, clock)
    client.held = True
    send_values(producer, "out", [b"v0", b"v1", b"v2"])
    with pytest.raises(PublishTimeout, match=r"3 record\(s\) not confirmed"):
        producer.flush(timeout_s=1.5)
    client.held = False
    producer.flush(timeout_s=1.5)
    assert client.log[("out", 0)] == [b"v0", b"v1", b"v2"]
    assert len(client.requests) == 1  # waited for, not sent again


def test_partitions_are_independent_and_keyed_records_follow_kafkas_partitioner(
    clock: Clock,
) -> None:
    client = FakeNetClient(clock, {"out": 3})
    producer = producer_on(client, clock)
    keys = [b"key-%d" % i for i in range(30)]
    client.script.append(NOT_LEADER)  # the first request sent fails once
    for key in keys:
        producer.send("out", key, key, None, timestamp_ms=T0)
    producer.flush(timeout_s=5)
    for (_, partition), values in client.log.items():
        assert values == [key for key in keys if partition_for_key(key, 3) == partition]
    assert sum(len(values) for values in client.log.values()) == 30
    stuck = client.requests[0].tp
    assert [sent.tp for sent in client.requests].count(stuck) == 2
    assert client.requests[1].tp != stuck  # the others did not wait for its back-off


def test_records_wait_for_their_topics_metadata_without_blocking_ship(clock: Clock) -> None:
    client = FakeNetClient(clock, {})
    client.cluster.appearing = {"late": 1}
    producer = producer_on(client, clock)
    send_values(producer, "late", [b"x"])
    producer.ship()  # asks for the topic's metadata, does not wait for it
    assert client.requests == [] and clock() == 1000.0
    assert client.cluster.update_count == 1
    producer.flush(timeout_s=5)
    assert client.log[("late", 0)] == [b"x"]


def test_a_topic_without_metadata_fails_at_flush(client: FakeNetClient, clock: Clock) -> None:
    producer = producer_on(client, clock)
    producer.send("nowhere", b"v", None, None)
    with pytest.raises(PublishError, match=r"1 send\(s\) failed, first: nowhere: no metadata"):
        producer.flush(timeout_s=5)
    assert client.requests == []


def test_an_oversized_record_is_refused_before_it_is_sent(
    client: FakeNetClient, clock: Clock
) -> None:
    producer = producer_on(client, clock)
    producer.send("out", b"x" * (batch_producer.MAX_REQUEST_BYTES + 1), None, None)
    producer.send("out", b"fits", None, None)
    with pytest.raises(PublishError, match=r"1 send\(s\) failed, first: out: a record of"):
        producer.flush(timeout_s=5)
    assert client.log[("out", 0)] == [b"fits"]


def test_close_flushes_then_closes_the_client(client: FakeNetClient, clock: Clock) -> None:
    producer = producer_on(client, clock)
    send_values(producer, "out", [b"last"])
    producer.close()
    assert client.log[("out", 0)] == [b"last"] and client.closed
