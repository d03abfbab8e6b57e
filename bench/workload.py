"""The events every contender sees: an agrawal stream with drifts, produced once to the broker."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from stream.tools.produce import ProduceOptions, produce

LR = "preprocessing.StandardScaler | linear_model.LogisticRegression"
HT = "tree.HoeffdingTreeClassifier"
MODELS = {"LR": LR, "HT": HT}

Pair = tuple[dict[str, Any], Any]


@dataclass(frozen=True)
class Stream:
    """A pre-produced topic: where it is, how many events, and the events decoded in memory."""

    bootstrap: str
    topic: str
    count: int
    partitions: int
    pairs: tuple[Pair, ...] = ()


def drift_points(count: int, changes: int = 3) -> tuple[int, ...]:
    """Evenly spaced abrupt changes, e.g. 3 changes in 100,000 events.

    >>> drift_points(100_000)
    (25000, 50000, 75000)
    """
    return tuple(count * (k + 1) // (changes + 1) for k in range(changes))


def produce_stream(
    bootstrap: str,
    topic: str,
    count: int,
    *,
    seed: int = 7,
    drift_at: tuple[int, ...] | None = None,
    partitions: int = 1,
    rate: float | None = None,
    generator: str = "agrawal",
) -> None:
    """Produce ``count`` events with the project's own producer (one topic, event i to i % P)."""
    drifts = drift_points(count) if drift_at is None else drift_at
    options = ProduceOptions(
        bootstrap,
        topic,
        count=count,
        seed=seed,
        generator=generator,
        drift_at=drifts,
        partitions=partitions,
        rate=rate,
    )
    summary = produce(options, out=io.StringIO())  # the bench prints its own lines
    if summary.failed or summary.produced != count:
        raise RuntimeError(f"producing {topic} failed: {summary.line()} {summary.errors}")


def read_topic(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 120.0
) -> list[ConsumerRecord]:
    """The first ``expected`` records of every partition of ``topic`` together, bounded in time."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    try:
        deadline = time.monotonic() + timeout_s
        partitions: set[int] | None = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                time.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord] = []
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500, max_records=50_000).values():
                records.extend(batch)
    finally:
        consumer.close()
    if len(records) < expected:
        raise RuntimeError(f"read {len(records)} of {expected} records of {topic} in time")
    return records


def decoded_pairs(records: list[ConsumerRecord]) -> tuple[Pair, ...]:
    """(features, label) of each record, in partition then offset order (the limit's input)."""
    ordered = sorted(records, key=lambda r: (r.partition, r.offset))
    events = (json.loads(record.value) for record in ordered)
    return tuple((event["features"], event["label"]) for event in events)


def prepare(bootstrap: str, topic: str, count: int, partitions: int = 1) -> Stream:
    """Produce the stream once and keep it decoded in memory too."""
    produce_stream(bootstrap, topic, count, partitions=partitions)
    pairs = decoded_pairs(read_topic(bootstrap, topic, count))
    return Stream(bootstrap, topic, count, partitions, pairs)


@dataclass(frozen=True)
class Context:
    """Where the runs happen: the broker, a scratch directory, and the group session timeout
    (Tansu waits one whole session timeout before a new group's first assignment)."""

    bootstrap: str
    workdir: Path
    session_timeout_ms: int = 6000
