"""The three reference loops the daemon is compared with: limit, naive and peer.

Each returns a :class:`Throughput` measured from the first to the last event it
learned, so connecting and joining a consumer group are left out for everybody.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from river import drift, metrics

from bench.workload import Context, Pair, Stream
from learners.spec import parse_model_spec

# Each contender gets this long to learn its events, joining included.
RUN_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Throughput:
    """Events learned over the seconds between the first and the last of them."""

    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class _Loop:
    """Predict, score, ADWIN, learn: the per-event work all contenders share."""

    def __init__(self, spec: str) -> None:
        self.model: Any = parse_model_spec(spec)  # a classifier: the spec parser checks it
        self.accuracy = metrics.Accuracy()
        self.detector = drift.ADWIN()

    def step(self, x: dict[str, Any], y: Any) -> Any:
        y_pred = self.model.predict_one(x)
        self.accuracy.update(y, y_pred)
        self.detector.update(0.0 if y_pred == y else 1.0)
        self.model.learn_one(x, y)
        return y_pred


def run_limit(spec: str, pairs: tuple[Pair, ...]) -> Throughput:
    """The bare River loop over events already decoded in memory: the physical limit."""
    loop = _Loop(spec)
    step = loop.step
    started = time.perf_counter()
    for x, y in pairs:
        step(x, y)
    return Throughput(len(pairs), time.perf_counter() - started)


class _Stopwatch:
    """First-to-last timing of ``count`` events; the first event starts the clock."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.first = 0.0
        self.last = 0.0

    def tick(self) -> bool:
        """Count one event; True once all ``count`` were seen."""
        self.seen += 1
        now = time.perf_counter()
        if self.seen == 1:
            self.first = now
        self.last = now
        return self.seen >= self.count

    def result(self) -> Throughput:
        if self.seen < self.count:
            raise RuntimeError(f"only {self.seen} of {self.count} events arrived in time")
        # The first event starts the clock, so count-1 events fall inside the interval.
        return Throughput(self.count - 1, self.last - self.first)


def run_naive(ctx: Context, stream: Stream, spec: str) -> Throughput:
    """The loop most people write: iterate a KafkaConsumer, json.loads, River, Prometheus."""
    registry = CollectorRegistry()
    events = Counter("naive_events", "events", registry=registry)
    accuracy = Gauge("naive_accuracy", "accuracy", registry=registry)
    seconds = Histogram("naive_processing_seconds", "per event", registry=registry)
    consumer = KafkaConsumer(
        stream.topic,
        bootstrap_servers=stream.bootstrap,
        group_id=f"naive-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        session_timeout_ms=ctx.session_timeout_ms,
        heartbeat_interval_ms=max(ctx.session_timeout_ms // 4, 500),
        consumer_timeout_ms=int(RUN_TIMEOUT_S * 1000),
    )
    loop, watch = _Loop(spec), _Stopwatch(stream.count)
    try:
        for message in consumer:
            started = time.perf_counter()
            event = json.loads(message.value)
            loop.step(event["features"], event["label"])
            events.inc()
            accuracy.set(loop.accuracy.get())
            seconds.observe(time.perf_counter() - started)
            if watch.tick():
                break
    finally:
        consumer.close()
    return watch.result()


def run_peer(ctx: Context, stream: Stream, spec: str) -> Throughput:
    """The same loop in Quix Streams, publishing each prediction like streamlearn does."""
    from quixstreams import Application  # a bench-only extra

    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    app = Application(
        broker_address=stream.bootstrap,
        consumer_group=f"quix-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        consumer_extra_config={"session.timeout.ms": ctx.session_timeout_ms},
        loglevel="WARNING",
        use_changelog_topics=False,
        state_dir=ctx.workdir / "quix",
    )
    source = app.topic(stream.topic, value_deserializer="json")
    predictions = app.topic(f"{stream.topic}.quix-{uuid.uuid4().hex[:8]}", value_serializer="json")
    loop, watch = _Loop(spec), _Stopwatch(stream.count)

    def step(value: dict[str, Any]) -> dict[str, Any]:
        y_pred = loop.step(value["features"], value["label"])
        if watch.tick():
            app.stop()
        return {"id": value["id"], "prediction": y_pred}

    app.dataframe(source).apply(step).to_topic(predictions)
    watchdog = threading.Timer(RUN_TIMEOUT_S, app.stop)  # bounded even if events go missing
    watchdog.start()
    try:
        app.run()
    finally:
        watchdog.cancel()
    return watch.result()
