"""Checkpoint-then-commit ordering of the partition table, with a stand-in consumer.

The consumer here only records calls (no Kafka behaviour is claimed); the real broker
paths are covered by tests/integration/test_recovery.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from river import datasets, linear_model

from learners.checkpoint import decode_checkpoint
from learners.origin import Origin
from learners.prequential import PartitionLearner
from monitoring.metrics import StreamlearnMetrics
from stream.checkpoints.checkpointer import Checkpointer
from stream.checkpoints.stores import LocalDirectoryStore
from stream.daemon.partitions import PartitionTable, show_state
from stream.daemon.publisher import Publisher
from stream.daemon.replay import Replayer
from stream.exceptions import PublishTimeout
from stream.ports import TopicPartition

TP = TopicPartition("events", 0)


class RecordingConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int | str]] = []
        self.highwaters: dict[TopicPartition, int] = {}
        self.committed_offset: int | None = None

    def commit(self, offsets: dict[TopicPartition, int], blocking: bool = True) -> None:
        self.commits.append(dict(offsets))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def reset_position(self, tp: TopicPartition) -> str:
        self.seeks.append((tp, "beginning"))
        return "the start of the log (auto_offset_reset=earliest)"

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)

    def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offset


class FlakySink:
    """Confirms sends only when told to, like a producer during a broker outage."""

    def __init__(self) -> None:
        self.confirm = False

    def send(self, topic: str, value: bytes, key: bytes | None, headers: Any) -> None:
        pass

    def ship(self) -> None:
        pass

    def flush(self, timeout_s: float = 30.0) -> None:
        if not self.confirm:
            raise PublishTimeout("not confirmed")

    def close(self) -> None:
        pass


HERE = Origin("events", 0, cluster_id="c1", topic_id="t1", partitions=1)


def _table(
    tmp_path: Path, sink: FlakySink, origin: Origin = HERE
) -> tuple[PartitionTable, RecordingConsumer]:
    consumer = RecordingConsumer()
    metrics = StreamlearnMetrics(CollectorRegistry())
    checkpointer = Checkpointer(LocalDirectoryStore(tmp_path), None, metrics)
    table = PartitionTable(
        consumer,  # type: ignore[arg-type]
        lambda tp: PartitionLearner(linear_model.LogisticRegression()),
        checkpointer,
        Publisher(sink, "predictions", None),
        metrics,
        Replayer(lambda: None),
        identify=lambda tp: origin,
    )
    return table, consumer


def _value(table: PartitionTable, name: str, **labels: str) -> float | None:
    return table.metrics.registry.get_sample_value(
        name, {"topic": "events", "partition": "0", **labels}
    )


def _checkpointed_after_learning(tmp_path: Path, events: int = 200) -> dict[str, float | None]:
    """Learn ``events`` events, checkpoint at offset ``events``; return the gauges then."""
    sink = FlakySink()
    sink.confirm = True
    table, _ = _table(tmp_path, sink)
    table.assign([TP])
    slot = table.slots[TP]
    for offset, (x, y) in enumerate(itertools.islice(datasets.Phishing(), events)):
        slot.learner.step(x, y, offset)
    slot.next_offset = events
    show_state(slot)
    table.checkpoint(slot)
    return _gauges(table)


GAUGES: dict[str, tuple[str, dict[str, str]]] = {
    "cumulative": ("streamlearn_accuracy", {"window": "cumulative"}),
    "rolling": ("streamlearn_accuracy", {"window": "rolling"}),
    "adwin": ("streamlearn_adwin_width", {}),
    "version": ("streamlearn_model_version", {}),
    "learned": ("streamlearn_learned_events", {}),
}


def _gauges(table: PartitionTable) -> dict[str, float | None]:
    return {key: _value(table, name, **labels) for key, (name, labels) in GAUGES.items()}


def test_unconfirmed_outputs_postpone_the_checkpoint_and_the_commit(tmp_path: Path) -> None:
    sink = FlakySink()
    table, consumer = _table(tmp_path, sink)
    table.assign([TP])
    slot = table.slots[TP]
    slot.next_offset = 42

    table.checkpoint(slot)
    assert LocalDirectoryStore(tmp_path).load("events", 0) is None
    assert consumer.commits == []

    sink.confirm = True
    table.checkpoint(slot)
    blob = LocalDirectoryStore(tmp_path).load("events", 0)
    assert blob is not None and decode_checkpoint(blob, key=None).next_offset == 42
    assert [offsets[TP] for offsets in consumer.commits] == [42]


def test_a_restored_partition_seeks_to_its_checkpoint(tmp_path: Path) -> None:
    sink = FlakySink()
    sink.confirm = True
    table, _ = _table(tmp_path, sink)
    table.assign([TP])
    table.slots[TP].next_offset = 7
    table.checkpoint(table.slots[TP])

    again, consumer = _table(tmp_path, sink)
    again.assign([TP])
    assert consumer.seeks == [(TP, 7)]
    assert again.slots[TP].checkpointed_offset == 7


def test_a_checkpoint_exports_the_size_of_the_stored_learner(tmp_path: Path) -> None:
    sink = FlakySink()
    sink.confirm = True
    table, _ = _table(tmp_path, sink)
    table.assign([TP])
    slot = table.slots[TP]
    labels = {"topic": "events", "partition": "0"}
    registry = table.metrics.registry
    assert registry.get_sample_value("streamlearn_model_bytes", labels) is None
    for offset in range(50):  # a new feature name each: the size is the model's, not fixed
        slot.learner.step({f"f{offset}": 1.0}, offset % 2 == 0, offset)
    slot.next_offset = 50
    table.checkpoint(slot)
    blob = LocalDirectoryStore(tmp_path).load("events", 0)
    assert blob is not None
    assert registry.get_sample_value("streamlearn_model_bytes", labels) == len(blob)


def test_a_restored_partition_shows_its_gauges_before_any_event(tmp_path: Path) -> None:
    before = _checkpointed_after_learning(tmp_path)
    assert before["learned"] == 200
    assert before["version"] == 1
    assert all(before[w] is not None and before[w] > 0.5 for w in ("cumulative", "rolling"))
    assert before["adwin"] is not None and before["adwin"] > 100

    again, _ = _table(tmp_path, FlakySink())
    again.assign([TP])  # no event handled after the restore
    assert _gauges(again) == before


def test_a_checkpoint_from_another_cluster_is_refused_at_assignment(tmp_path: Path) -> None:
    _checkpointed_after_learning(tmp_path)
    elsewhere = Origin("events", 0, cluster_id="c2", topic_id="t1", partitions=1)
    again, consumer = _table(tmp_path, FlakySink(), origin=elsewhere)
    again.assign([TP])
    assert again.slots[TP].learner.learned == 0
    assert consumer.seeks == []  # the group's committed offset (or the reset policy) rules
    refusals = again.metrics.checkpoint_load_failures
    assert refusals.labels("foreign_cluster")._value.get() == 1
    assert _value(again, "streamlearn_learned_events") == 0
    assert _value(again, "streamlearn_model_version") == 1


def test_a_restored_offset_past_the_end_of_the_log_is_refused(tmp_path: Path) -> None:
    _checkpointed_after_learning(tmp_path)  # checkpoint at offset 200
    again, consumer = _table(tmp_path, FlakySink())
    again.assign([TP])
    assert again.verify_ends() == set()  # no fetch answered yet: nothing known, nothing polled
    assert again.slots[TP].learner.learned == 200

    consumer.highwaters[TP] = 50  # the log now ends at 50: truncated or replaced
    consumer.committed_offset = 180  # past the end as well: the reset policy decides
    assert again.verify_ends() == {TP}
    slot = again.slots[TP]
    assert (slot.learner.learned, slot.next_offset, slot.checkpointed_offset) == (0, None, None)
    assert consumer.seeks == [(TP, 200), (TP, "beginning")]
    failures = again.metrics.checkpoint_load_failures.labels("offset_out_of_range")
    assert failures._value.get() == 1
    assert _value(again, "streamlearn_learned_events") == 0
    assert _value(again, "streamlearn_accuracy", window="cumulative") is None
    assert again.verify_ends() == set()  # checked once


def test_a_restored_offset_at_the_end_of_the_log_is_kept(tmp_path: Path) -> None:
    _checkpointed_after_learning(tmp_path)
    again, consumer = _table(tmp_path, FlakySink())
    again.assign([TP])
    consumer.highwaters[TP] = 200
    assert again.verify_ends() == set()
    assert again.slots[TP].learner.learned == 200
    assert again.metrics.checkpoint_load_failures.labels("offset_out_of_range")._value.get() == 0
