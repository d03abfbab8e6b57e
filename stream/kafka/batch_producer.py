"""Publish records as whole Kafka record batches over kafka-python's own connections.

kafka-python's ``KafkaProducer.send`` costs 18-28 µs of Python per record (partitioner,
futures, accumulator, per-record builder): more than a logistic regression takes to learn
the event. The daemon hands its outputs over a poll's worth at a time anyway, so this
producer encodes each partition's share into one record batch (``stream/kafka/record_batch.py``,
about 1 µs per record) and sends it in a ``ProduceRequest`` on kafka-python's network
client, with the same bootstrap, SASL and SSL settings.

What it guarantees (outputs are at-least-once, see docs/reliability.md):

- ``acks=all``: a batch counts once the partition leader has answered without error.
- Order per partition: one request in flight per partition, and a batch that must be
  retried is retried before anything behind it is sent.
- Retriable errors (leader moved, broker unreachable, request timed out) are retried
  with a back-off until the delivery timeout; then the batch fails. Other errors fail it
  at once.
- ``flush`` raises :class:`PublishTimeout` when the broker has not confirmed everything in
  time (nothing failed yet: try later) and :class:`PublishError` when a batch failed, so
  the offsets it carried are never committed.

Everything runs on the caller's thread: ``ship`` and ``flush`` drive the client's I/O.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kafka.errors as kafka_errors
from kafka.net.compat import KafkaNetClient
from kafka.protocol.producer import ProduceRequest
from kafka.structs import TopicPartition

from stream.exceptions import PublishError, PublishTimeout
from stream.kafka.record_batch import BatchRecord, encode_batch, partition_for_key
from stream.ports import Headers

log = logging.getLogger(__name__)

#: Records go out in batches of at most this many bytes (the broker's default limit is
#: 1 MiB); a bigger single record goes alone, and the broker judges it.
MAX_BATCH_BYTES = 512 * 1024
#: A record that cannot fit a request at all is refused before it is sent.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
RETRY_BACKOFF_S = 0.1
#: ProduceRequest v3 is the first to carry v2 record batches; v9 is kafka-python's newest.
PRODUCE_VERSIONS = (3, 9)


@dataclass
class _Batch:
    records: list[BatchRecord]
    size: int  # bytes, roughly
    deadline: float  # clock time after which it fails (the delivery timeout)
    data: bytes | None = None  # encoded when first sent, then resent as is
    not_before: float = 0.0  # retry back-off

    @property
    def count(self) -> int:
        return len(self.records)


class BatchProducer:
    """A :class:`stream.sinks.Sink`: one record batch per partition per request, one
    request in flight per partition.

    ``client`` is kafka-python's ``KafkaNetClient`` built from ``kafka_config`` unless one
    is given (tests pass a fake); ``clock`` times back-offs and deadlines.
    """

    def __init__(
        self,
        kafka_config: dict[str, Any],
        delivery_timeout_s: float = 120.0,
        request_timeout_ms: int = 30_000,
        client_id: str = "streamlearn-publisher",
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kafka_config = kafka_config
        self.delivery_timeout_s = delivery_timeout_s
        self.request_timeout_ms = request_timeout_ms
        self.client_id = client_id
        self.clock = clock
        if client is None:
            client = KafkaNetClient(
                **kafka_config, client_id=client_id, request_timeout_ms=request_timeout_ms
            )
        self._client = client
        self._client.check_version(timeout_ms=request_timeout_ms)  # bootstraps, or raises
        self._pending: dict[str, list[BatchRecord]] = {}
        self._queues: dict[tuple[str, int], deque[_Batch]] = {}
        self._in_flight: dict[tuple[str, int], Any] = {}  # partition -> kafka Future
        self._failures: list[str] = []
        self._failed_records = 0

    # -- the Sink protocol ------------------------------------------------------------

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        timestamp_ms: int | None = None,
    ) -> None:
        """Queue a record, stamped now (its CreateTime) unless ``timestamp_ms`` is given."""
        size = len(value) + (len(key) if key else 0)
        if size > MAX_REQUEST_BYTES:
            self._fail(1, f"{topic}: a record of {size} bytes is over {MAX_REQUEST_BYTES}")
            return
        if timestamp_ms is None:
            timestamp_ms = int(time.time() * 1000)
        self._pending.setdefault(topic, []).append((key, value, headers, timestamp_ms))

    def ship(self) -> None:
        """Queue what was sent per partition and move the I/O along (never blocks); a
        batch is encoded when it is first sent."""
        now = self.clock()
        for topic in list(self._pending):
            partitions = self._partition_count(topic, wait_ms=0)
            if partitions is not None:
                self._enqueue(topic, self._pending.pop(topic), partitions, now)
        self._pump()

    def flush(self, timeout_s: float = 30.0) -> None:
        deadline = self.clock() + timeout_s
        for topic in list(self._pending):
            if self._partition_count(topic, wait_ms=self.request_timeout_ms) is None:
                records = self._pending.pop(topic)
                self._fail(len(records), f"{topic}: no metadata for the topic (does it exist?)")
        self.ship()
        while self._queues or self._in_flight:
            remaining = deadline - self.clock()
            if remaining <= 0:
                waiting = sum(b.count for q in self._queues.values() for b in q)
                raise PublishTimeout(
                    f"{waiting} record(s) not confirmed by the broker within {timeout_s:.0f} s"
                )
            self._client.poll(timeout_ms=min(remaining, 0.05) * 1000)
            self._pump()
        if self._failures:
            failures, count = self._failures, self._failed_records
            self._failures, self._failed_records = [], 0
            raise PublishError(f"{count} send(s) failed, first: {failures[0]}")

    def close(self) -> None:
        try:
            self.flush(timeout_s=10.0)
        except PublishError as exc:
            log.warning("closing the publisher with outputs not delivered: %s", exc)
        self._client.close()

    # -- batching ---------------------------------------------------------------------

    def _partition_count(self, topic: str, wait_ms: int) -> int | None:
        partitions = self._client.cluster.partitions_for_topic(topic)
        if partitions:
            return len(partitions)
        self._client.cluster.add_topic(topic)
        update = self._client.cluster.request_update()
        if wait_ms:
            self._client.poll(timeout_ms=wait_ms, future=update)
            partitions = self._client.cluster.partitions_for_topic(topic)
        return len(partitions) if partitions else None

    def _enqueue(self, topic: str, records: list[BatchRecord], partitions: int, now: float) -> None:
        # Keyed records go where Kafka's default partitioner puts them (joins and
        # per-key order rely on it); unkeyed ones stick to one partition per shipment.
        by_partition: dict[int, list[BatchRecord]]
        if partitions == 1:
            by_partition = {0: records}  # every key hashes to the only partition
        else:
            by_partition = {}
            sticky = random.randrange(partitions)
            for record in records:
                key = record[0]
                partition = sticky if key is None else partition_for_key(key, partitions)
                by_partition.setdefault(partition, []).append(record)
        deadline = now + self.delivery_timeout_s
        for partition, chunk in by_partition.items():
            queue = self._queues.setdefault((topic, partition), deque())
            for part, size in _split(chunk, MAX_BATCH_BYTES):
                queue.append(_Batch(part, size, deadline))

    # -- I/O ----------------------------------------------------------------------------

    def _pump(self) -> None:
        """Settle answered requests, then send the head batch of every idle partition."""
        self._client.poll(timeout_ms=0)
        for tp, future in list(self._in_flight.items()):
            if future.is_done:
                del self._in_flight[tp]
                self._settle(tp, future)
        now = self.clock()
        for tp, queue in list(self._queues.items()):
            if not queue:
                del self._queues[tp]
            elif tp not in self._in_flight and now >= queue[0].not_before:
                self._send_head(tp, queue, now)
        self._client.poll(timeout_ms=0)

    def _send_head(self, tp: tuple[str, int], queue: deque[_Batch], now: float) -> None:
        batch = queue[0]
        if batch.data is None:
            # Shipments that piled up while the previous request was out go as one batch:
            # a flush then waits for one round trip, not one per shipment.
            while len(queue) > 1 and queue[1].data is None:
                following = queue[1]
                if batch.size + following.size > MAX_BATCH_BYTES:
                    break
                batch.records += following.records
                batch.size += following.size
                del queue[1]
            batch.data = encode_batch(batch.records)
        if now > batch.deadline:
            queue.popleft()
            self._fail(
                batch.count,
                f"{tp[0]}[{tp[1]}]: not delivered within {self.delivery_timeout_s:.0f} s",
            )
            return
        leader = self._client.cluster.leader_for_partition(TopicPartition(*tp))
        if leader is None or leader == -1:
            self._client.cluster.request_update()
            batch.not_before = now + RETRY_BACKOFF_S
            return
        self._in_flight[tp] = self._client.send(leader, self._request(tp, batch.data))

    def _request(self, tp: tuple[str, int], data: bytes) -> ProduceRequest:
        topic_data = ProduceRequest.TopicProduceData
        partition_data = topic_data.PartitionProduceData
        return ProduceRequest(
            transactional_id=None,
            acks=-1,
            timeout_ms=self.request_timeout_ms,
            topic_data=[
                topic_data(name=tp[0], partition_data=[partition_data(index=tp[1], records=data)])
            ],
            min_version=PRODUCE_VERSIONS[0],
            max_version=PRODUCE_VERSIONS[1],
        )

    def _settle(self, tp: tuple[str, int], future: Any) -> None:
        queue = self._queues[tp]
        batch = queue[0]
        error = future.exception if future.failed() else _partition_error(future.value, tp)
        if error is None:
            queue.popleft()
        elif getattr(error, "retriable", False) or isinstance(error, _RETRIABLE):
            log.debug("retrying a batch for %s[%d]: %r", tp[0], tp[1], error)
            self._client.cluster.request_update()
            batch.not_before = self.clock() + RETRY_BACKOFF_S
        else:
            queue.popleft()
            self._fail(batch.count, f"{tp[0]}[{tp[1]}]: {error!r}")

    def _fail(self, records: int, message: str) -> None:
        log.error("publishing failed: %s (%d record(s))", message, records)
        self._failures.append(message)
        self._failed_records += records


#: Connection-level trouble, whatever the error class says: the batch is sent again.
_RETRIABLE = (
    kafka_errors.KafkaConnectionError,
    kafka_errors.NodeNotReadyError,
    kafka_errors.KafkaTimeoutError,
    kafka_errors.RequestTimedOutError,
)


def _partition_error(response: Any, tp: tuple[str, int]) -> BaseException | None:
    """The error the broker gave for ``tp`` in a ProduceResponse, or None if it took it."""
    for topic in response.responses:
        for partition in topic.partition_responses:
            if topic.name == tp[0] and partition.index == tp[1]:
                if partition.error_code == 0:
                    return None
                error_class = kafka_errors.for_code(partition.error_code)
                error: BaseException = error_class(partition.error_message or "")
                return error
    missing: BaseException = kafka_errors.KafkaError(
        f"no answer for {tp[0]}[{tp[1]}] in the produce response"
    )
    return missing


def _split(records: list[BatchRecord], max_bytes: int) -> list[tuple[list[BatchRecord], int]]:
    """Consecutive runs of ``records`` of at most ``max_bytes`` (at least one record each),
    with their sizes."""
    runs: list[tuple[list[BatchRecord], int]] = []
    current: list[BatchRecord] = []
    size = 0
    for record in records:
        record_size = _size(record)
        if current and size + record_size > max_bytes:
            runs.append((current, size))
            current, size = [], 0
        current.append(record)
        size += record_size
    if current:
        runs.append((current, size))
    return runs


def _size(record: BatchRecord) -> int:
    """An upper bound of the record's encoded size (dead letters carry sizable headers)."""
    key, value, headers, _ = record
    size = len(value or b"") + len(key or b"") + 24  # lengths, deltas, attributes
    for name, header_value in headers or ():
        size += len(name) * 4 + len(header_value) + 10  # utf-8 at worst, two lengths
    return size
