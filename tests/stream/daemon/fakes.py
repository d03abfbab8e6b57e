"""Fakes of the daemon's ports (``stream/ports.py``) and a harness that wires the real loop.

Only our own protocols are faked here, to unit-test the loop (``Daemon``,
``PartitionTable``, ``Replayer``) without a broker; Kafka's own behaviour is tested
against the real broker in tests/integration. Time is fake too: one :class:`FakeClock`
serves as every clock of the loop, and advances only when something costs time (a
poll that waits, a replay read, a send), so deadlines, intervals and timeouts are
exact and a test runs in milliseconds.

Every call a test may want to order (flush, save, commit, pause, resume, seek, a
replay's start) is appended to one :class:`Journal`.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from river import linear_model, preprocessing

from learners.prequential import PartitionLearner
from monitoring.metrics import StreamlearnMetrics
from stream.checkpoints.checkpointer import Checkpointer
from stream.daemon.labels_topic import LabelsTopic
from stream.daemon.loop import Daemon, LoopTiming
from stream.daemon.memory import LogicalClock, MemoryLogReader, MemorySink, MemorySource
from stream.daemon.partitions import PartitionSlot, PartitionTable
from stream.daemon.publisher import Publisher
from stream.daemon.rebuild import Rebuilder
from stream.daemon.replay import Replayer
from stream.daemon.run_log import RunLog
from stream.ports import Headers, Record, SourceRecord, TopicPartition
from stream.tools.produce import encode_event

TOPIC = "events"
TP0 = TopicPartition(TOPIC, 0)
TP1 = TopicPartition(TOPIC, 1)
PREDICTIONS = "predictions"
DEAD_LETTERS = "dead-letters"

Call = tuple[Any, ...]


class FakeClock(LogicalClock):
    """Seconds that pass only when :meth:`advance` is called (the production clock)."""


class Journal(list[Call]):
    """Calls in the order they were made, e.g. ``("commit", {tp: 5})``."""

    def kinds(self) -> list[str]:
        return [call[0] for call in self]

    def of(self, kind: str) -> list[Call]:
        return [call for call in self if call[0] == kind]


# -- input --------------------------------------------------------------------------------


def flip_stream(
    count: int, flip_at: int | None = None, seed: int = 1
) -> Iterator[tuple[dict[str, float], bool]]:
    """``(features, label)``: the label says whether ``x > 0``, and the opposite from
    ``flip_at`` on (an abrupt concept change a linear model and ADWIN see at once)."""
    rng = random.Random(seed)
    for i in range(count):
        x = rng.uniform(-1.0, 1.0)
        label = x > 0
        if flip_at is not None and i >= flip_at:
            label = not label
        yield {"x": x, "noise": rng.uniform(-1.0, 1.0)}, label


def encoded_records(
    tp: TopicPartition, pairs: Iterator[tuple[dict[str, float], bool]], first_offset: int = 0
) -> list[SourceRecord]:
    """Records whose values are canonical events, encoded as ``streamlearn produce`` does."""
    records = []
    for n, (features, label) in enumerate(pairs):
        offset = first_offset + n
        event_id = f"{tp.partition}-{offset}"
        value = encode_event(event_id, features, label, seq=offset)
        records.append(SourceRecord(tp.topic, tp.partition, offset, value, event_id.encode()))
    return records


# -- the group consumer ---------------------------------------------------------------------


class FakeSource(MemorySource):
    """:class:`MemorySource` with what tests script and check: calls journaled, scripted
    answers (exactly those records, as a fetch completed before a pause would deliver
    them), an outage (``up``), commit errors, and a bound on polls."""

    #: Polls after which a loop that should have stopped fails the test instead of hanging.
    POLL_LIMIT = 10_000

    def __init__(self, clock: FakeClock, journal: Journal, max_records: int = 500) -> None:
        super().__init__(clock, max_records)
        self.journal = journal
        self.scripted: deque[dict[TopicPartition, list[SourceRecord]]] = deque()
        self.up = True
        #: Raised by the next commits, one each (CommitRefused, BrokerUnavailable).
        self.commit_errors: deque[Exception] = deque()
        self.poll_timeouts: list[int] = []
        #: The poll that runs a rebalance returns nothing (kafka-python's way).
        self.nothing_after_rebalance = False
        #: The high watermark each partition's last fetch brought (none before one, as
        #: kafka-python knows it only from fetches).
        self.fetched_ends: dict[TopicPartition, int] = {}
        #: Polls that leave a partition out still (its first fetches come late).
        self.fetch_delays: dict[TopicPartition, int] = {}

    def poll(self, timeout_ms: int) -> Mapping[TopicPartition, Sequence[Record]]:
        self.poll_timeouts.append(timeout_ms)
        assert len(self.poll_timeouts) <= self.POLL_LIMIT, "the loop did not stop"
        rebalanced = self._run_rebalances()
        if rebalanced and self.nothing_after_rebalance:
            return {}  # as kafka-python: the poll that ran the join hands out no records
        if self.scripted:
            return self.scripted.popleft()
        if not self.up:
            self.clock.advance(timeout_ms / 1000)
            return {}
        return self._fetch(timeout_ms)

    def _fetchable(self, tp: TopicPartition) -> bool:
        if not super()._fetchable(tp):
            return False
        left = self.fetch_delays.get(tp, 0)
        if left:
            self.fetch_delays[tp] = left - 1
            return False
        self.fetched_ends[tp] = len(self.logs.get(tp, []))
        return True

    def _rebalance(self, kind: str, tps: list[TopicPartition]) -> None:
        if kind == "assigned":
            for tp in tps:
                self.fetched_ends.pop(tp, None)
        super()._rebalance(kind, tps)
        if kind != "assigned":
            for tp in tps:
                self.fetched_ends.pop(tp, None)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.fetched_ends.get(tp)

    def pause(self, tp: TopicPartition) -> None:
        self.journal.append(("pause", tp))
        super().pause(tp)

    def resume(self, tp: TopicPartition) -> None:
        self.journal.append(("resume", tp))
        super().resume(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.journal.append(("seek", tp, offset))
        super().seek(tp, offset)

    def commit(self, offsets: Mapping[TopicPartition, int], blocking: bool = True) -> None:
        self.journal.append(("commit", dict(offsets), self.clock()))
        if self.commit_errors:
            raise self.commit_errors.popleft()
        super().commit(offsets)

    def reachable(self) -> bool:
        return self.up

    def close(self) -> None:
        self.journal.append(("close",))


# -- the replay's reader --------------------------------------------------------------------


class FakeLogReader(MemoryLogReader):
    """:class:`MemoryLogReader` that journals each start and keeps what each read got."""

    def __init__(
        self,
        logs: dict[TopicPartition, list[SourceRecord]],
        clock: FakeClock,
        journal: Journal,
        per_read: int = 100,
        read_cost_s: float = 0.02,
    ) -> None:
        super().__init__(logs, clock, per_read, read_cost_s)
        self.journal = journal
        self.reads: list[tuple[TopicPartition, int, int]] = []  # (tp, from, count)
        self.made = 0  # times a replayer's factory handed this reader out
        self.closed = False

    def start(self, tp: TopicPartition, offset: int) -> None:
        self.journal.append(("replay_start", tp, offset))
        super().start(tp, offset)

    def read(self, tp: TopicPartition, timeout_ms: int, max_records: int) -> list[Record]:
        position = self.positions[tp]
        records = super().read(tp, timeout_ms, max_records)
        self.reads.append((tp, position, len(records)))
        return records

    def close(self) -> None:
        self.closed = True


# -- outputs and the checkpoint store -------------------------------------------------------


class RecordingSink(MemorySink):
    """:class:`MemorySink` whose sends cost ``send_cost_s`` of fake time (the stand-in for
    a slow model or output that makes a cycle run out of budget), flushes journaled."""

    def __init__(self, clock: FakeClock, journal: Journal, send_cost_s: float = 0.0) -> None:
        super().__init__()
        self.clock = clock
        self.journal = journal
        self.send_cost_s = send_cost_s
        #: Raised by the next flushes, one each (PublishTimeout, PublishError).
        self.flush_errors: deque[Exception] = deque()

    def send(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        super().send(topic, value, key, headers)
        self.clock.advance(self.send_cost_s)

    def flush(self, timeout_s: float = 30.0) -> None:
        self.journal.append(("flush", len(self.sent)))
        if self.flush_errors:
            raise self.flush_errors.popleft()

    def predicted_offsets(self, tp: TopicPartition) -> list[int]:
        """Offsets of ``tp`` whose predictions were sent, in sending order."""
        values = (json.loads(value) for value in self.values(PREDICTIONS))
        return [v["offset"] for v in values if v["partition"] == tp.partition]


class MemoryStore:
    """A checkpoint store in a dict (the local and Kafka stores have their own tests)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.blobs: dict[tuple[str, int], bytes] = {}

    def save(self, topic: str, partition: int, blob: bytes) -> None:
        from learners.checkpoint import decode_checkpoint

        offset = decode_checkpoint(blob, key=None).next_offset
        self.journal.append(("save", TopicPartition(topic, partition), offset))
        self.blobs[topic, partition] = blob

    def load(self, topic: str, partition: int) -> bytes | None:
        return self.blobs.get((topic, partition))

    def close(self) -> None:
        pass


# -- the loop, wired ------------------------------------------------------------------------


@dataclass
class Harness:
    """The real ``Daemon``, ``PartitionTable`` and ``Replayer`` on fake ports and a fake clock.

    ``cycle()`` runs one loop cycle (``Daemon._cycle``, the unit every behaviour here is
    stated in); ``run()`` runs the whole loop until it stops by itself.
    """

    tmp_path: Path
    timing: LoopTiming = field(default_factory=LoopTiming)
    drift_action: str = "none"
    checkpoints: bool = True
    checkpoint_every_events: int = 1_000_000
    checkpoint_interval_s: float = 1e9
    max_records: int = 500
    send_cost_s: float = 0.0
    per_read: int = 100
    read_cost_s: float = 0.02
    learner_options: dict[str, Any] = field(default_factory=dict)
    #: Late labels also on this topic (``--labels-topic``), co-partitioned with TOPIC.
    labels_topic: str | None = None
    #: ``--rebuild-events``: a refused checkpoint is rebuilt from the log (0: not).
    rebuild_events: int = 0

    def __post_init__(self) -> None:
        self.clock = FakeClock()
        self.journal = Journal()
        self.source = FakeSource(self.clock, self.journal, self.max_records)
        self.reader = FakeLogReader(
            self.source.logs, self.clock, self.journal, self.per_read, self.read_cost_s
        )
        self.sink = RecordingSink(self.clock, self.journal, self.send_cost_s)
        self.store = MemoryStore(self.journal) if self.checkpoints else None
        self.event_log = self.tmp_path / "events.jsonl"
        self.daemon = self._build()

    def _build(self) -> Daemon:
        """A daemon process: fresh metrics, table and replayer; the store is shared."""
        self.registry = CollectorRegistry()
        metrics = StreamlearnMetrics(self.registry)
        checkpointer = Checkpointer(
            self.store,
            None,
            metrics,
            self.checkpoint_every_events,
            self.checkpoint_interval_s,
            clock=self.clock,
        )
        self.replayer = Replayer(
            lambda: self.reader, clock=self.clock, labels_topic=self.labels_topic
        )
        run_log = RunLog(self.event_log)
        rebuilder = None
        if self.rebuild_events:
            rebuilder = Rebuilder(
                self.replayer, metrics, self.rebuild_events, clock=self.clock, run_log=run_log
            )
        publisher = Publisher(self.sink, PREDICTIONS, DEAD_LETTERS)
        self.table = PartitionTable(
            self.source,
            self.new_learner,
            checkpointer,
            publisher,
            metrics,
            self.replayer,
            clock=self.clock,
            labels_topic=self.labels_topic,
            rebuilder=rebuilder,
            run_log=run_log,
        )
        labels = self.labels_topic
        return Daemon(
            self.source,
            TOPIC,
            self.table,
            publisher,
            metrics,
            run_log,
            self.timing,
            clock=self.clock,
            cycle_clock=self.clock,
            labels=None if labels is None else LabelsTopic(labels, TOPIC, self.source, metrics),
        )

    def new_learner(self, tp: TopicPartition) -> PartitionLearner:
        options = {"min_retrain_events": 50, "holdout_events": 60, **self.learner_options}
        model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
        return PartitionLearner(model, drift_action=self.drift_action, **options)  # type: ignore[arg-type]

    # driving the loop

    def start(self, *tps: TopicPartition) -> None:
        """Subscribe as ``run`` does; ``tps`` are assigned in the first poll."""
        topics = TOPIC if self.labels_topic is None else [TOPIC, self.labels_topic]
        self.source.subscribe(topics, self.daemon)
        if tps:
            self.source.assign_on_next_poll(*tps)

    def cycle(self, times: int = 1) -> None:
        for _ in range(times):
            self.daemon._cycle()

    def run(self) -> int:
        return self.daemon.run()

    def slot(self, tp: TopicPartition) -> PartitionSlot:
        return self.table.slots[tp]

    def run_log(self, kind: str) -> list[dict[str, Any]]:
        if not self.event_log.exists():
            return []
        lines = [json.loads(line) for line in self.event_log.read_text().splitlines()]
        return [line for line in lines if line["kind"] == kind]

    def sample(self, name: str, **labels: Any) -> float | None:
        return self.registry.get_sample_value(name, {k: str(v) for k, v in labels.items()})
