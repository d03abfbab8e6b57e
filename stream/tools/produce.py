"""``streamlearn produce``: publish a synthetic or replayed stream of canonical events.

Each event goes to partition ``i % P`` explicitly, so every partition's ``seq`` runs
0, 1, 2, ... without gaps, and the drift points of the generator stay where they were
put in the global order (event ``i`` is ``"<seed>-<i>"``). Sends are not awaited one
by one: delivery results arrive through callbacks and are tallied, then one flush
waits for all of them (:mod:`stream.kafka.event_writer`, whose producer is idempotent,
so retries neither duplicate nor reorder records within a partition).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from stream.exceptions import BrokerUnavailable, CredentialsRefused, SettingsError
from stream.kafka.admin import prepare_topic
from stream.kafka.event_writer import PRODUCER_SETTINGS, EventWriter
from stream.settings import ENV_PREFIX, SECURITY_FIELDS, security_config
from stream.tools.generators import (
    GENERATORS,
    Label,
    Pair,
    SourceError,
    concept_stream,
    file_stream,
    validate_drift_at,
)

# The options live in a light module so `streamlearn --help` need not import Kafka;
# re-exported here, where callers of run_produce look for them.
from stream.tools.produce_args import KEY_STRATEGIES, KeyStrategy, source_fields
from stream.tools.produce_args import add_produce_arguments as add_produce_arguments

# Settings the producer owns; a passthrough that sets them would contradict it.
_OWNED_SETTINGS = frozenset({"bootstrap_servers", "key_serializer", "value_serializer"})
# Larger batches and a short linger: throughput without a noticeable delay.
_PROGRESS_EVERY_S = 0.2
_PLAIN = frozenset({bool, int, float, str, type(None)})


@dataclass(frozen=True, kw_only=True)
class SourceOptions:
    """Where events come from (a generator or a file), as ``produce`` and ``evaluate``
    take them; checked on construction."""

    count: int | None = None
    seed: int = 42
    generator: str = "sea"
    drift_at: tuple[int, ...] = ()
    #: Each change gradual over this many events (0: abrupt); see ``concept_stream``.
    drift_width: int = 0
    file: Path | None = None
    label_column: str | None = None
    #: Send events without their label, and each label as its own ``{"id", "label"}``
    #: record this many records later (before event i, the label of event i - D).
    label_delay: int | None = None
    #: A file's labels are numbers (a regression), not classes.
    number_labels: bool = False

    def __post_init__(self) -> None:
        if self.count is None and self.file is None:
            raise SettingsError("count is required unless events come from a file")
        if self.count is not None and self.count <= 0:
            raise SettingsError(f"count must be positive, got {self.count}")
        if self.label_delay is not None and self.label_delay < 1:
            raise SettingsError(f"label delay must be at least 1 record, got {self.label_delay}")
        if self.file is not None:
            if self.drift_at or self.drift_width:
                raise SettingsError("drift points apply to generators, not to a replayed file")
            return
        if self.label_column is not None:
            raise SettingsError("a label column applies to a replayed file, not a generator")
        if self.number_labels:
            raise SettingsError("number labels apply to a replayed file, not a generator")
        if self.generator not in GENERATORS:
            raise SettingsError(
                f"unknown generator {self.generator!r}; choose one of: {', '.join(GENERATORS)}"
            )
        try:
            validate_drift_at(self.drift_at, self.count, self.drift_width)
        except SourceError as exc:
            raise SettingsError(str(exc)) from None


@dataclass(frozen=True)
class ProduceOptions(SourceOptions):
    """Everything ``produce`` needs: the source, and where and how to write it.

    ``partitions=None`` uses the partitions of an existing topic, or creates it with one.
    ``kafka_config`` is passed to the producer and admin client as given (security
    settings such as ``security_protocol``, ``sasl_*``, ``ssl_*``).
    """

    bootstrap_servers: str
    topic: str
    partitions: int | None = None
    rate: float | None = None
    key: KeyStrategy = "id"
    #: With ``label_delay``: the late labels go to this topic, co-partitioned.
    labels_topic: str | None = None
    kafka_config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bootstrap_servers.strip():
            raise SettingsError("bootstrap servers must not be empty")
        if not self.topic.strip():
            raise SettingsError("topic must not be empty")
        if self.partitions is not None and self.partitions < 1:
            raise SettingsError(f"partitions must be at least 1, got {self.partitions}")
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise SettingsError(f"rate must be a positive number of events/s, got {self.rate}")
        if self.labels_topic is not None and self.label_delay is None:
            raise SettingsError("a labels topic takes the labels of --label-delay; give one")
        if self.labels_topic is not None and self.labels_topic == self.topic:
            raise SettingsError("the labels topic must differ from the events topic")
        if self.key not in KEY_STRATEGIES:
            raise SettingsError(f"key must be one of {KEY_STRATEGIES}, got {self.key!r}")
        owned = sorted(_OWNED_SETTINGS & set(self.kafka_config))
        if owned:
            raise SettingsError(f"kafka_config must not set {owned}: the producer owns them")
        unknown = sorted(set(self.kafka_config) - PRODUCER_SETTINGS)
        if unknown:
            raise SettingsError(f"unknown Kafka producer settings: {unknown}")
        super().__post_init__()


@dataclass(frozen=True)
class ProduceSummary:
    """What a run did: delivered and failed counts, time taken, first errors."""

    topic: str
    partitions: int
    produced: int
    failed: int
    elapsed_s: float
    drift_at: tuple[int, ...] = ()
    errors: tuple[str, ...] = ()
    #: With ``--label-delay``: how many late labels were sent (counted in ``produced``).
    labels: int = 0
    label_delay: int | None = None

    @property
    def events_per_s(self) -> float:
        return self.produced / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def line(self) -> str:
        """One human line, e.g. ``produced 100 events to T (2 partitions) in 0.1 s, ...``.

        >>> ProduceSummary("T", 2, 100_000, 0, 3.125).line()
        'produced 100000 events to T (2 partitions) in 3.1 s, 32,000 events/s, 0 failed'
        """
        noun = "partition" if self.partitions == 1 else "partitions"
        drifts = f", drifts at {list(self.drift_at)}" if self.drift_at else ""
        labels = (
            f", {self.labels} of them labels sent {self.label_delay} records late"
            if self.labels
            else ""
        )
        return (
            f"produced {self.produced} events to {self.topic} ({self.partitions} {noun})"
            f" in {self.elapsed_s:.1f} s, {self.events_per_s:,.0f} events/s{drifts}{labels},"
            f" {self.failed} failed"
        )


class Pacer:
    """Hold a steady rate: event ``n`` is due at ``start + n / rate`` on ``clock``.

    Due times come from the count, not from summing sleeps, so the rate does not drift
    with sleep overshoot; sleeps shorter than ``min_sleep_s`` are skipped and caught up
    on the next one. After a stall longer than ``max_backlog_s`` the schedule restarts
    (like a token bucket of that size) instead of bursting to make up all lost time.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        min_sleep_s: float = 0.001,
        max_backlog_s: float = 1.0,
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.min_sleep_s = min_sleep_s
        self.max_backlog_s = max_backlog_s
        self._start: float | None = None
        self._sent = 0

    def wait(self) -> float:
        """Block until the next event is due; return the seconds slept (0 when none)."""
        now = self.clock()
        if self._start is None:
            self._start = now
        due = self._start + self._sent / self.rate
        if now - due > self.max_backlog_s:
            self._start = now - self.max_backlog_s - self._sent / self.rate
            due = now - self.max_backlog_s
        self._sent += 1
        delay = due - now
        if delay < self.min_sleep_s:
            return 0.0
        self.sleep(delay)
        return delay


class _Tally:
    """Delivery results, written by the producer's I/O thread and read at the end."""

    max_errors = 5

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def ok(self, _metadata: object) -> None:
        with self._lock:
            self.delivered += 1

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            self.failed += 1
            if len(self.errors) < self.max_errors:
                self.errors.append(f"{type(exc).__name__}: {exc}")


def json_safe(value: Any) -> Any:
    """A feature or label as a plain JSON value (numpy scalars to Python, keys to str).

    >>> import numpy as np
    >>> json_safe({0: np.float64(1.5), "b": np.bool_(True), "c": np.int64(3)})
    {'0': 1.5, 'b': True, 'c': 3}
    """
    kind = type(value)
    if kind in _PLAIN:  # the common case, checked by exact type: it runs per feature
        return value
    if isinstance(value, dict):
        return {k if type(k) is str else str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, np.generic):  # before float: np.float64 is a float subclass
        return value.item()  # item() keeps np.bool_ a bool, not 0/1
    if isinstance(value, bool | int | float | str):
        return value
    raise SourceError(f"value {value!r} of type {kind.__name__} is not JSON-safe")


def encode_event(event_id: str, features: dict[Any, Any], label: Any, seq: int) -> bytes:
    """The canonical event as compact JSON bytes (NaN/inf refused: not JSON)."""
    event = {
        "id": event_id,
        "features": json_safe(features),
        "label": json_safe(label),
        "timestamp": time.time(),
        "seq": seq,
    }
    return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()


def encode_label(event_id: str, label: Any) -> bytes:
    """The late label of event ``event_id``: an id and a label, no features.

    >>> encode_label("42-7", True)
    b'{"id":"42-7","label":true}'
    """
    record = {"id": event_id, "label": json_safe(label)}
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()


def source_events(options: SourceOptions) -> Iterator[Pair]:
    """The (features, label) pairs the options ask for."""
    if options.file is not None:
        rows = file_stream(
            options.file, label_column=options.label_column, number_labels=options.number_labels
        )
        return itertools.islice(rows, options.count) if options.count else rows
    return concept_stream(
        options.generator,
        seed=options.seed,
        drift_at=options.drift_at,
        count=options.count,
        drift_width=options.drift_width,
    )


def ensure_topic(options: ProduceOptions, out: TextIO) -> int:
    """Create the topic if missing; return how many partitions to write to."""
    wanted = options.partitions
    existing = prepare_topic(options.bootstrap_servers, options.topic, wanted, options.kafka_config)
    if wanted is not None and existing < wanted:
        out.write(
            f"warning: topic {options.topic} has {existing} partitions, fewer than the"
            f" {wanted} asked for; writing to {existing}\n"
        )
    partitions = existing if wanted is None else min(existing, wanted)
    if options.labels_topic is not None:
        ensure_labels_topic(options, existing)
    return partitions


def ensure_labels_topic(options: ProduceOptions, events_partitions: int) -> None:
    """Create the labels topic with the events topic's partition count; refuse one that
    exists with another count (the daemon would refuse the pair)."""
    assert options.labels_topic is not None
    count = prepare_topic(
        options.bootstrap_servers, options.labels_topic, events_partitions, options.kafka_config
    )
    if count != events_partitions:
        raise SettingsError(
            f"the labels topic {options.labels_topic} has {count} partitions and the events "
            f"topic {options.topic} {events_partitions}: they must be co-partitioned"
        )


def produce(options: ProduceOptions, *, out: TextIO = sys.stderr) -> ProduceSummary:
    """Publish the events ``options`` describe; return what was delivered and failed."""
    events = source_events(options)  # fail on a bad file before touching the broker
    partitions = ensure_topic(options, out)
    producer = EventWriter(options.bootstrap_servers, options.kafka_config)
    tally = _Tally()
    progress = _Progress(out, options.count)
    start = time.monotonic()
    try:
        labels = _send_all(producer, options, partitions, events, tally, progress)
        producer.flush()
    finally:
        producer.close()
    elapsed = time.monotonic() - start
    progress.done()
    summary = ProduceSummary(
        topic=options.topic,
        partitions=partitions,
        produced=tally.delivered,
        failed=tally.failed,
        elapsed_s=elapsed,
        drift_at=options.drift_at,
        errors=tuple(tally.errors),
        labels=labels,
        label_delay=options.label_delay,
    )
    out.write(summary.line() + "\n")
    for error in summary.errors:
        out.write(f"  delivery error: {error}\n")
    return summary


@dataclass(frozen=True)
class Outgoing:
    """One record of the stream as ``produce`` writes it (and ``evaluate`` reads it)."""

    partition: int
    key: bytes | None
    value: bytes
    #: The index in the stream of the event this record is, or carries the late label of.
    index: int
    #: The label this record carries: the event's, or None on an event sent unlabelled.
    label: Label
    #: True for a late label's record (``{"id", "label"}``, no features).
    late: bool = False


def encode_stream(
    events: Iterator[Pair],
    *,
    seed: int,
    partitions: int,
    key: KeyStrategy = "id",
    label_delay: int | None = None,
) -> Iterator[Outgoing]:
    """The records of ``events`` in sending order: event ``i`` to partition ``i % P`` with
    its per-partition ``seq``, and with ``label_delay`` each label as its own record
    ``label_delay`` records after its event (the last ones close the stream)."""
    seqs = [0] * partitions
    # Labels waiting to be sent, oldest first: (event index, id, label, partition).
    waiting: deque[tuple[int, str, Any, int]] = deque()

    def late_label(index: int, event_id: str, label: Any, partition: int) -> Outgoing:
        record_key = event_id.encode() if key == "id" else None
        value = encode_label(event_id, label)
        return Outgoing(partition, record_key, value, index, label, late=True)

    for i, (features, label) in enumerate(events):
        partition = i % partitions
        event_id = f"{seed}-{i}"
        if label_delay is not None:
            if waiting and waiting[0][0] == i - label_delay:
                yield late_label(*waiting.popleft())
            if label is not None:  # an unlabelled row of a file stays unlabelled
                waiting.append((i, event_id, label, partition))
            label = None
        value = encode_event(event_id, features, label, seqs[partition])
        seqs[partition] += 1
        yield Outgoing(partition, event_id.encode() if key == "id" else None, value, i, label)
    for late in waiting:
        yield late_label(*late)


def _send_all(
    producer: EventWriter,
    options: ProduceOptions,
    partitions: int,
    events: Iterator[Pair],
    tally: _Tally,
    progress: _Progress,
) -> int:
    """Send every event (and, with a label delay, every late label); returns how many
    late labels were sent."""
    pacer = Pacer(options.rate) if options.rate else None
    labels = 0
    labels_topic = options.labels_topic or options.topic
    # On their own topic, labels and events are merged back by record time: strictly
    # increasing times keep the in-band order (a label before the event after it).
    stamp: Callable[[], int | None] = RecordTimes() if options.labels_topic else (lambda: None)
    records = encode_stream(
        events,
        seed=options.seed,
        partitions=partitions,
        key=options.key,
        label_delay=options.label_delay,
    )
    for record in records:
        if record.late:
            labels += 1
        elif pacer is not None:
            pacer.wait()
        topic = labels_topic if record.late else options.topic
        producer.send(
            topic, record.value, record.key, record.partition, tally.ok, tally.fail, stamp()
        )
        if not record.late:
            progress.update(record.index + 1)
    return labels


class RecordTimes:
    """Record times in milliseconds, the wall clock's but strictly increasing.

    >>> times = RecordTimes(clock=lambda: 5.0)
    >>> times(), times(), times()
    (5000, 5001, 5002)
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._last = -1

    def __call__(self) -> int:
        self._last = max(int(self.clock() * 1000), self._last + 1)
        return self._last


class _Progress:
    """A ``\\r`` progress line on a terminal; silent otherwise."""

    def __init__(self, out: TextIO, total: int | None) -> None:
        self.out = out
        self.total = total
        self.enabled = bool(getattr(out, "isatty", lambda: False)())
        self._start = time.monotonic()
        self._last = 0.0

    def update(self, sent: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < _PROGRESS_EVERY_S and sent != self.total:
            return
        self._last = now
        eps = sent / max(now - self._start, 1e-9)
        of = f"/{self.total} ({100 * sent / self.total:.0f}%)" if self.total else ""
        self.out.write(f"\r{sent}{of} events, {eps:,.0f} events/s ")
        self.out.flush()

    def done(self) -> None:
        if self.enabled and self._last:
            self.out.write("\n")


# ----------------------------------------------------------------------------- CLI


def security_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The security options (passwords from the environment) as producer settings; empty
    for PLAINTEXT without any of them, so the default stays what it was."""
    environ = os.environ if environ is None else environ
    fields: dict[str, Any] = {
        name: getattr(args, name, None) for name in SECURITY_FIELDS if not name.endswith("password")
    }
    for name in ("sasl_password", "ssl_password"):
        fields[name] = environ.get(ENV_PREFIX + name.upper()) or None
    if not any(fields.values()):
        return {}
    try:
        return security_config(fields)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def options_from_args(args: argparse.Namespace) -> ProduceOptions:
    """Build the options from parsed arguments; :class:`SettingsError` when they conflict."""
    return ProduceOptions(
        bootstrap_servers=args.bootstrap_servers,
        topic=args.topic,
        partitions=args.partitions,
        rate=args.rate,
        key=args.key,
        labels_topic=args.labels_topic,
        kafka_config=security_from_args(args),
        **source_fields(args),
    )


def run_produce(args: argparse.Namespace, *, out: TextIO = sys.stderr) -> int:
    """Run ``streamlearn produce``.

    Returns 0 when every event was delivered, 1 when some failed or Kafka did not
    answer, 2 when the options, the file or the credentials were refused.
    """
    try:
        options = options_from_args(args)
        summary = produce(options, out=out)
    except (SettingsError, SourceError, CredentialsRefused) as exc:
        out.write(f"error: {exc}\n")
        return 2
    except BrokerUnavailable as exc:
        out.write(f"error: Kafka refused or did not answer: {exc}\n")
        return 1
    return 1 if summary.failed else 0
