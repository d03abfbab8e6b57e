"""A probe, not the product: what a fetch-and-decode child process would buy on 2 cores.

The daemon's one Python thread fetches (kafka-python parses every record in Python),
decodes, learns and publishes. This probe runs the same per-event work twice over the
pre-produced topic, with the product's own pieces (``stream.events.decode``,
``PartitionLearner``, ``BatchProducer``):

- **one process**: poll, decode, learn, publish in one loop;
- **fetch child**: a spawned child polls and decodes, and ships each poll's events as
  compact tuples through a pipe; the parent only learns and publishes.

Neither has the daemon's metrics, checkpoints or group membership, so both run faster
than ``streamlearn run``; their ratio is the figure that matters (docs/performance.md).
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, cast

import orjson
from kafka import KafkaConsumer, TopicPartition
from river.base import Classifier

from bench.workload import Stream
from learners.prequential import PartitionLearner
from learners.spec import parse_model_spec
from stream.events import Event, decode
from stream.kafka.admin import ensure_topics
from stream.kafka.batch_producer import BatchProducer
from stream.kafka.clients import FETCH_TUNING
from stream.kafka.fetched_records import speed_up_fetches

#: (offset, key, features, label, event id): what the child ships per event.
Shipped = tuple[int, bytes | None, dict[str, Any], Any, str | None]


@dataclass(frozen=True)
class Split:
    one_process: float  # events/s
    fetch_child: float

    @property
    def gain(self) -> float:
        return self.fetch_child / self.one_process


def _consumer(stream: Stream) -> KafkaConsumer:
    consumer = KafkaConsumer(
        bootstrap_servers=stream.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=1000,
        **FETCH_TUNING,
    )
    tp = TopicPartition(stream.topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    return speed_up_fetches(consumer)


def _decoded_polls(stream: Stream) -> Iterator[list[Shipped]]:
    """Each poll's records of the whole topic, decoded (the fetch and decode stage)."""
    consumer = _consumer(stream)
    got = 0
    try:
        while got < stream.count:
            for records in consumer.poll(timeout_ms=200).values():
                shipped = []
                for record in records:
                    event = cast(Event, decode(record.value))
                    shipped.append(
                        (record.offset, record.key, event.features, event.label, event.id)
                    )
                got += len(shipped)
                yield shipped
    finally:
        consumer.close()


def _fetch_child(conn: Connection, stream: Stream) -> None:
    for shipped in _decoded_polls(stream):
        conn.send(shipped)
    conn.send(None)


def _received(conn: Connection) -> Iterator[list[Shipped]]:
    while (shipped := conn.recv()) is not None:
        yield shipped


def _learn_and_publish(polls: Iterator[list[Shipped]], stream: Stream, spec: str) -> float:
    """Learn every event and publish its prediction; events/s from the first poll on."""
    learner = PartitionLearner(cast(Classifier, parse_model_spec(spec)))
    config = {"bootstrap_servers": [stream.bootstrap]}
    topic = f"{stream.topic}.probe-{uuid.uuid4().hex[:8]}"
    ensure_topics(config, [topic])
    producer = BatchProducer(config)
    first, count = None, 0
    try:
        for shipped in polls:
            first = first or time.perf_counter()
            for offset, key, x, y, event_id in shipped:
                y_pred, proba = learner.step(x, y, offset)
                value = {
                    "id": event_id,
                    "offset": offset,
                    "prediction": y_pred,
                    "probabilities": proba,
                    "model_version": learner.model_version,
                }
                producer.send(topic, orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS), key, None)
            count += len(shipped)
            producer.ship()
        producer.flush()
    finally:
        producer.close()
    assert first is not None, "nothing was consumed"
    return count / (time.perf_counter() - first)


def measure(stream: Stream, spec: str) -> Split:
    one = _learn_and_publish(_decoded_polls(stream), stream, spec)
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_fetch_child, args=(sending, stream), daemon=True)
    child.start()
    try:
        split = _learn_and_publish(_received(receiving), stream, spec)
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    return Split(one, split)
