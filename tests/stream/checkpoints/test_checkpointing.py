"""Checkpointer.restore: what it says about where an accepted checkpoint came from."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from kafka import TopicPartition
from prometheus_client import CollectorRegistry
from river import linear_model

from learners.checkpoint import encode_checkpoint
from learners.origin import Origin
from learners.prequential import PartitionLearner
from learners.sequence import SequenceTracker
from learners.state import PartitionState
from monitoring.metrics import StreamlearnMetrics
from stream.checkpoints.checkpointer import Checkpointer
from stream.checkpoints.stores import LocalDirectoryStore

FIXTURES = Path(__file__).parents[2] / "fixtures" / "checkpoints"
TP = TopicPartition("events", 0)
NOW = Origin("events", 0, cluster_id="c1", topic_id="t1", partitions=2)


def _checkpointer(tmp_path: Path, blob: bytes) -> tuple[Checkpointer, StreamlearnMetrics]:
    store = LocalDirectoryStore(tmp_path)
    store.save(TP.topic, TP.partition, blob)
    metrics = StreamlearnMetrics(CollectorRegistry())
    return Checkpointer(store, None, metrics), metrics


def test_a_format_1_checkpoint_is_accepted_and_said_to_carry_no_identity(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpointer, _ = _checkpointer(tmp_path, (FIXTURES / "reset-lr-v1.ckpt").read_bytes())
    with caplog.at_level(logging.INFO, logger="stream.checkpoints.checkpointer"):
        restored = checkpointer.restore(TP, NOW)
    assert restored is not None and restored.next_offset == 800
    assert isinstance(restored.state, PartitionState)
    (line,) = [r for r in caplog.records if "no cluster or topic identity" in r.getMessage()]
    assert line.levelno == logging.INFO


def test_identities_the_broker_no_longer_gives_are_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = PartitionState(PartitionLearner(linear_model.LogisticRegression()), SequenceTracker())
    blob = encode_checkpoint(state, next_offset=5, key=None, origin=NOW)
    checkpointer, metrics = _checkpointer(tmp_path, blob)
    with caplog.at_level(logging.INFO, logger="stream.checkpoints.checkpointer"):
        restored = checkpointer.restore(TP, Origin("events", 0, cluster_id="c1", partitions=4))
    assert restored is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no topic id now" in w for w in warnings)
    assert any("grew from 2 to 4 partitions" in w for w in warnings)
    assert metrics.registry.get_sample_value(
        "streamlearn_checkpoint_load_failures_total", {"reason": "foreign_topic"}
    ) in (None, 0.0)
