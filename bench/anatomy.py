"""Where one event's time goes inside the daemon: each stage of the hot path timed alone.

The stages are the product's own functions, run in this process one after another over
the same records: fetch (kafka-python poll, CRC and record parsing included, with
kafka-python's reader and with the daemon's), decode (bytes to a validated Event), the
learner's step, and publishing the prediction.
Their sum, against the limit loop, says which stage to work on first.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from river.base import Classifier

from bench.contenders import run_limit
from bench.workload import Stream
from learners.prequential import PartitionLearner
from learners.spec import parse_model_spec
from stream.daemon.publisher import Publisher
from stream.events import Event, decode, judge
from stream.kafka.admin import ensure_topics
from stream.kafka.batch_producer import BatchProducer
from stream.kafka.clients import FETCH_TUNING, producer_config
from stream.kafka.fetched_records import speed_up_fetches
from stream.kafka.process_producer import ProcessSink
from stream.kafka.record_batch import Headers
from stream.ports import Sink


@dataclass(frozen=True)
class Stage:
    name: str
    micros: float  # per event


def _fetch(stream: Stream, fast: bool) -> tuple[list[ConsumerRecord], float]:
    consumer = KafkaConsumer(
        bootstrap_servers=stream.bootstrap, group_id=None, enable_auto_commit=False, **FETCH_TUNING
    )
    if fast:
        speed_up_fetches(consumer)
    tp = TopicPartition(stream.topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    records: list[ConsumerRecord] = []
    consumer.poll(timeout_ms=2000, max_records=1)  # connect and first fetch: not steady state
    consumer.seek(tp, 0)
    started = time.perf_counter()
    deadline = started + 120
    while len(records) < stream.count and time.perf_counter() < deadline:
        for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
            records.extend(batch)
    elapsed = time.perf_counter() - started
    consumer.close()
    return records, elapsed


def _per_event(elapsed: float, count: int) -> float:
    return elapsed / count * 1e6


def _timed(fn: Any, items: list[Any]) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return _per_event(time.perf_counter() - started, len(items))


def measure(stream: Stream, spec: str) -> list[Stage]:
    """Per-event microseconds of each stage; the stream must have one partition."""
    theirs, plain_s = _fetch(stream, fast=False)
    records, fetch_s = _fetch(stream, fast=True)
    if records != theirs:
        raise RuntimeError("the daemon's record reader and kafka-python's disagree")
    n = len(records)
    values = [record.value for record in records]
    stages = [
        Stage("fetch: poll 5000 at a time, the daemon's reader", _per_event(fetch_s, n)),
        Stage("  the same with kafka-python's reader", _per_event(plain_s, n)),
        Stage("decode: orjson and type checks (stream.events.decode)", _timed(decode, values)),
        Stage("  for comparison: pydantic's strict model alone", _timed(judge, values)),
        Stage("  for comparison: json.loads alone", _timed(json.loads, values)),
    ]
    events: list[Event] = [e for e in map(decode, values) if isinstance(e, Event)]
    learner = PartitionLearner(cast(Classifier, parse_model_spec(spec)))
    started = time.perf_counter()
    outputs = [learner.step(e.features, e.label, i) for i, e in enumerate(events)]
    stages.append(
        Stage(
            "learner.step (predict, score, ADWIN, learn)",
            _per_event(time.perf_counter() - started, len(events)),
        )
    )
    limit = run_limit(spec, tuple((e.features, e.label) for e in events))
    stages.append(Stage("  for comparison: the limit loop", 1e6 / limit.rate))
    stages.extend(_publish(stream, records, events, outputs))
    return stages


class KafkaPythonSink:
    """kafka-python's own ``KafkaProducer.send`` per record: what the daemon used before
    :class:`BatchProducer`, kept here as the comparison."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.producer = KafkaProducer(**config, acks="all", linger_ms=5, batch_size=512 * 1024)

    def send(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        self.producer.send(topic, value=value, key=key, headers=headers)

    def ship(self) -> None:
        """Records are in the producer already."""

    def flush(self, timeout_s: float = 30.0) -> None:
        self.producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self.producer.close(timeout=10)


#: The daemon ships its outputs once per handled poll of this many records.
SHIP_EVERY = 1000


def _publish(
    stream: Stream, records: list[ConsumerRecord], events: list[Event], outputs: list[Any]
) -> list[Stage]:
    """The prediction records through each sink the daemon can use (``--publisher``)."""
    config: dict[str, Any] = {"bootstrap_servers": [stream.bootstrap]}
    sinks: tuple[tuple[str, Callable[[], Sink]], ...] = (
        (
            "kafka-python KafkaProducer.send per record (the old publisher)",
            lambda: KafkaPythonSink(config),
        ),
        (
            "BatchProducer in this process (--publisher inline)",
            lambda: BatchProducer(**producer_config(config)),
        ),
        (
            "shipped to a BatchProducer child (--publisher process)",
            lambda: ProcessSink(producer_config(config)),
        ),
    )
    stages = []
    for name, sink in sinks:
        topic = f"{stream.topic}.anatomy-{uuid.uuid4().hex[:8]}"
        ensure_topics(config, [topic])
        publisher = Publisher(sink(), topic, None)
        started = time.perf_counter()
        for i, (record, event, (y_pred, proba)) in enumerate(
            zip(records, events, outputs, strict=True)
        ):
            publisher.prediction(record, event, y_pred, proba, 1)
            if i % SHIP_EVERY == SHIP_EVERY - 1:
                publisher.ship()
        publisher.ship()
        sent = time.perf_counter() - started
        publisher.flush()
        flushed = time.perf_counter() - started
        publisher.close()
        stages.append(Stage(f"publish: {name}", _per_event(sent, len(events))))
        stages.append(Stage("  the same until flushed", _per_event(flushed, len(events))))
    payload = {
        "id": "7-1",
        "topic": stream.topic,
        "partition": 0,
        "offset": 1,
        "prediction": True,
        "probabilities": {"False": 0.4, "True": 0.6},
        "model_version": 1,
    }
    encode = _timed(lambda _: orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS), events)
    return [*stages, Stage("  of which orjson.dumps of one prediction", encode)]
