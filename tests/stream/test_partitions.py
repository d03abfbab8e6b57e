"""Checkpoint-then-commit ordering of the partition table, with a stand-in consumer.

The consumer here only records calls (no Kafka behaviour is claimed); the real broker
paths are covered by tests/integration/test_recovery.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from river import linear_model

from learners.checkpoint import decode_checkpoint
from learners.prequential import PartitionLearner
from monitoring.metrics import StreamlearnMetrics
from stream.checkpoints.checkpointer import Checkpointer
from stream.checkpoints.stores import LocalDirectoryStore
from stream.daemon.partitions import PartitionTable
from stream.daemon.publisher import Publisher
from stream.daemon.replay import Replayer
from stream.exceptions import PublishTimeout
from stream.ports import TopicPartition

TP = TopicPartition("events", 0)


class RecordingConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    def commit(self, offsets: dict[TopicPartition, int], blocking: bool = True) -> None:
        self.commits.append(dict(offsets))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


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


def _table(tmp_path: Path, sink: FlakySink) -> tuple[PartitionTable, RecordingConsumer]:
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
    )
    return table, consumer


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
