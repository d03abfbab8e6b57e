"""A rebuilt learner against the daemon loop that learned the same records live (stand-in
consumers: no Kafka behaviour is claimed here; tests/integration/test_rebuild.py runs the
real broker). Dead letters, unlabelled events, poison events, the feature bound, drift
and reset are stepped exactly as the loop steps them; a retrain is decided the same, and
reproduced exactly when the live replay ended before the holdout events were served."""

from __future__ import annotations

import json
import time
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry
from river import base, linear_model, preprocessing

from learners.origin import Origin
from learners.prequential import PartitionLearner
from learners.sequence import SequenceTracker
from learners.state import PartitionState
from monitoring.metrics import StreamlearnMetrics
from stream.checkpoints.checkpointer import Checkpointer
from stream.daemon.loop import Daemon, LoopTiming
from stream.daemon.memory import MemorySink
from stream.daemon.model_errors import ModelErrors
from stream.daemon.partitions import PartitionSlot, PartitionTable
from stream.daemon.publisher import Publisher
from stream.daemon.rebuild import Rebuilder, RebuildPlan, RebuildTask
from stream.daemon.replay import Replayer
from stream.daemon.run_log import RunLog
from stream.ports import Record, SourceRecord, TopicPartition
from stream.tools.generators import concept_stream

TP = TopicPartition("events", 0)
SNAPSHOT_EVERY = 50  # small, so undoing a poison event re-steps across snapshots
MAX_FEATURES = 4  # STAGGER has three features: a record naming two more is refused


class ListReader:
    """A ``LogReader`` over a list of records (offset = index)."""

    def __init__(self, records: list[SourceRecord]) -> None:
        self.records = records
        self.at = 0

    def start(self, tp: TopicPartition, offset: int) -> None:
        self.at = offset

    def read(self, tp: TopicPartition, timeout_ms: int, max_records: int) -> list[Record]:
        taken = self.records[self.at : self.at + max_records]
        self.at += len(taken)
        return list(taken)

    def position(self, tp: TopicPartition) -> int | None:
        return self.at

    def log_start(self, tp: TopicPartition) -> int | None:
        return 0  # nothing deleted by retention

    def close(self) -> None:
        pass


class StandInConsumer:
    def __init__(self) -> None:
        self.paused: set[TopicPartition] = set()
        self.seeks: list[int] = []
        self.end: int | None = None
        self.committed_offset: int | None = None

    def pause(self, tp: TopicPartition) -> None:
        self.paused.add(tp)

    def resume(self, tp: TopicPartition) -> None:
        self.paused.discard(tp)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.end

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append(offset)

    def origin(self, tp: TopicPartition) -> Origin:
        return Origin(tp.topic, tp.partition)

    def log_start(self, tp: TopicPartition) -> int | None:
        return 0

    def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offset

    def commit(self, offsets: Any, blocking: bool = True) -> None:
        pass


def _learner(drift_action: str) -> PartitionLearner:
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    model = cast(base.Classifier, model)
    return PartitionLearner(
        model, drift_action=drift_action, min_retrain_events=50, holdout_events=40
    )


def _records(count: int = 2400) -> list[SourceRecord]:
    """STAGGER with concept changes, and in it what the loop must skip or undo."""
    events = list(concept_stream("stagger", seed=5, drift_at=(600, 1200, 1800), count=count))
    records = []
    for offset, (x, y) in enumerate(events):
        features: dict[str, Any] = dict(x)
        label: Any = y
        if offset % 97 == 5:
            value = b"not json"  # a dead letter
        else:
            if offset % 131 == 7:
                features["size"] = "red"  # a poison event: the scaler raises
            if offset % 173 == 9:
                features.update(extra1=1.0, extra2=2.0)  # past the feature bound
            if offset % 11 == 3:
                label = None  # predicted only
            value = json.dumps({"features": features, "label": label, "seq": offset}).encode()
        records.append(SourceRecord(TP.topic, TP.partition, offset, value))
    return records


def _metrics() -> StreamlearnMetrics:
    return StreamlearnMetrics(CollectorRegistry())


def _live(
    records: list[SourceRecord], drift_action: str, served_during_replay: int = 0
) -> PartitionSlot:
    """The records through the daemon loop; ``served_during_replay`` live events are
    served while each retrain replays (0: the replay ends before any is)."""
    metrics, consumer = _metrics(), StandInConsumer()
    publisher = Publisher(MemorySink(), "predictions", "dead")
    replayer = Replayer(lambda: ListReader(records), give_up_after_s=0.0)
    table = PartitionTable(
        consumer,  # type: ignore[arg-type]
        lambda tp: _learner(drift_action),
        Checkpointer(None, None, metrics),
        publisher,
        metrics,
        replayer,
    )
    errors = ModelErrors(
        publisher, metrics, replayer, snapshot_every=SNAPSHOT_EVERY, max_features=MAX_FEATURES
    )
    timing = LoopTiming(live_slice_during_replay=max(served_during_replay, 1))
    daemon = Daemon(
        consumer,  # type: ignore[arg-type]
        TP.topic, table, publisher, metrics, RunLog(None), timing, model_errors=errors,
    )  # fmt: skip
    daemon.assigned([TP])
    slot = daemon.slots[TP]
    deadline = time.perf_counter() + 600
    daemon._feed(slot, records, deadline)
    while slot.backlog:
        if replayer.busy and served_during_replay:
            daemon._drain_backlog(slot, deadline)  # a slice served while the replay runs
        while replayer.busy:
            daemon._advance_retrains()
        daemon._drain_backlog(slot, deadline)
    assert slot.next_offset == len(records)
    return slot


def _rebuilt(records: list[SourceRecord], drift_action: str) -> tuple[PartitionSlot, RebuildTask]:
    metrics = _metrics()
    state = PartitionState(_learner(drift_action), SequenceTracker())
    slot = PartitionSlot(TP, state, metrics.partition(TP.topic, TP.partition))
    slot.rebuild = RebuildPlan("river_version", len(records))
    replayer = Replayer(lambda: ListReader(records), give_up_after_s=0.0)
    rebuilder = Rebuilder(
        replayer, metrics, max_events=10**6, max_features=MAX_FEATURES,
        snapshot_every=SNAPSHOT_EVERY,
    )  # fmt: skip
    done: list[RebuildTask] = []
    task = rebuilder.begin(slot, len(records), 0, done.append)
    assert task is not None
    while replayer.busy:
        replayer.advance(5.0)
    assert done == [task]
    assert (
        metrics.registry.get_sample_value("streamlearn_rebuilds_total", {"reason": "river_version"})
        == 1
    )
    return slot, task


PROBES = [{"size": a, "color": b, "shape": c} for a in range(3) for b in range(3) for c in range(3)]


def _fingerprint(slot: PartitionSlot) -> dict[str, Any]:
    learner = slot.learner
    return {
        "model_version": learner.model_version,
        "learned": learner.learned,
        "predicted": learner.predicted,
        "drifts": learner.drifts,
        "adwin_width": learner.detector.width,
        "cumulative": learner.cumulative.get(),
        "rolling": learner.rolling.get(),
        "sequence": (slot.sequence.gaps, slot.sequence.duplicates),
        "probes": [learner.predict(x) for x in PROBES],
        "skipped": sorted(slot.journal.skipped) if slot.journal else None,
    }


@pytest.mark.parametrize("drift_action", ["none", "reset"])
def test_a_rebuilt_learner_is_the_learner_the_loop_built(drift_action: str) -> None:
    records = _records()
    live = _live(records, drift_action)
    rebuilt, task = _rebuilt(records, drift_action)
    assert _fingerprint(rebuilt) == _fingerprint(live)
    assert task.dead_letters == len([r for r in records if r.value == b"not json"])
    assert task.model_errors > 0 and rebuilt.learner.drifts > 0
    if drift_action == "reset":
        assert task.resets > 0 and rebuilt.learner.model_version > 1


def test_a_retrain_is_reproduced_exactly_when_its_replay_ended_before_the_holdout() -> None:
    records = _records()
    live = _live(records, "retrain", served_during_replay=0)
    rebuilt, task = _rebuilt(records, "retrain")
    assert task.retrains > 0
    assert _fingerprint(rebuilt) == _fingerprint(live)


def test_a_retrain_decided_late_live_is_decided_the_same_but_applied_earlier() -> None:
    """Live, 200 events (> the 40 holdout events) were served during each replay: the old
    model kept serving until the replay's slice ended. The decisions are the same (the
    same promotions); the moment they took effect is not, so the learners may differ."""
    records = _records()
    live = _live(records, "retrain", served_during_replay=200)
    rebuilt, task = _rebuilt(records, "retrain")
    assert task.retrains > 0
    same = ("model_version", "learned", "predicted", "sequence", "skipped")
    live_print, rebuilt_print = _fingerprint(live), _fingerprint(rebuilt)
    assert {k: rebuilt_print[k] for k in same} == {k: live_print[k] for k in same}


def _table(max_events: int = 1000) -> tuple[PartitionTable, StandInConsumer, Replayer]:
    metrics, consumer = _metrics(), StandInConsumer()
    records = _records(3000)
    replayer = Replayer(lambda: ListReader(records), give_up_after_s=0.0)
    table = PartitionTable(
        consumer,  # type: ignore[arg-type]
        lambda tp: _learner("reset"),
        Checkpointer(None, None, metrics),
        Publisher(MemorySink(), None, None),
        metrics,
        replayer,
        rebuilder=Rebuilder(replayer, metrics, max_events=max_events),
    )
    table.assign([TP])
    return table, consumer, replayer


@pytest.mark.parametrize(
    ("recorded", "committed", "resume"),
    [
        (2500, 2000, 2500),  # an authentic refused checkpoint says where it stood
        (None, 2000, 2000),  # otherwise the group's committed offset
        (9000, 2000, 2000),  # an offset past the log's end is no position in it
        (9000, 9500, None),  # neither is: nothing to rebuild from
        (None, None, None),
    ],
)
def test_the_resume_offset_and_the_partition_held_until_the_rebuild_is_done(
    recorded: int | None, committed: int | None, resume: int | None
) -> None:
    table, consumer, replayer = _table()
    slot = table.slots[TP]
    table.rebuilder.plan(slot, "corrupt", recorded)  # type: ignore[union-attr]
    consumer.committed_offset = committed
    assert table.start_rebuilds() == set()  # no fetch answered yet: the end is unknown
    consumer.end = 3000
    started = table.start_rebuilds()
    if resume is None:
        assert started == set() and slot.rebuild is None and not replayer.busy
        return
    assert started == {TP} and consumer.seeks == [resume] and TP in consumer.paused
    assert slot.rebuild is not None and slot.next_offset is None  # nothing to checkpoint yet
    while replayer.busy:
        replayer.advance(5.0)
    assert slot.rebuild is None and slot.next_offset == resume and TP not in consumer.paused
    assert slot.learner.learned + slot.learner.predicted > 0
    assert slot.learner.last_offset == resume - 1


def test_rebuild_events_bound_the_replay_and_zero_turns_it_off() -> None:
    table, consumer, replayer = _table(max_events=300)
    consumer.end, consumer.committed_offset = 3000, 2000
    table.rebuilder.plan(table.slots[TP], "corrupt", None)  # type: ignore[union-attr]
    table.start_rebuilds()
    (task,) = replayer._tasks
    assert (task.start_offset, task.end_offset) == (1700, 2000)

    table, consumer, replayer = _table(max_events=0)
    table.rebuilder.plan(table.slots[TP], "corrupt", None)  # type: ignore[union-attr]
    assert table.slots[TP].rebuild is None


def _late_label_records(count: int = 2400, delay: int = 25) -> list[SourceRecord]:
    """STAGGER with concept changes where every third event's label comes ``delay``
    records later as a ``{"id", "label"}`` record, with poison and dead letters among them."""
    events = list(concept_stream("stagger", seed=7, drift_at=(600, 1200, 1800), count=count))
    values: list[bytes] = []
    due: dict[int, list[bytes]] = {}
    for i, (x, y) in enumerate(events):
        features: dict[str, Any] = dict(x)
        if i % 131 == 7:
            features["size"] = "red"  # a poison event: the scaler raises
        late = i % 3 == 0
        body = {"id": f"e{i}", "features": features, "label": None if late else y}
        values.append(b"not json" if i % 97 == 5 else json.dumps(body).encode())
        if late:
            due.setdefault(i + delay, []).append(json.dumps({"id": f"e{i}", "label": y}).encode())
        values.extend(due.pop(i, []))
    for rest in due.values():
        values.extend(rest)
    return [SourceRecord(TP.topic, TP.partition, o, v) for o, v in enumerate(values)]


@pytest.mark.parametrize("drift_action", ["none", "reset", "retrain"])
def test_a_rebuild_holds_and_joins_late_labels_as_the_loop_did(drift_action: str) -> None:
    records = _late_label_records()
    live = _live(records, drift_action)
    rebuilt, _ = _rebuilt(records, drift_action)
    assert live.learner.pending is not None and len(live.learner.pending) == 0
    assert _fingerprint(rebuilt) == _fingerprint(live)
    assert rebuilt.learner.learned == live.learner.learned > 2000
    assert rebuilt.learner.drifts > 0
