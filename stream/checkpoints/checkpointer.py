"""When and how a partition's state is checkpointed and restored.

A checkpoint holds the learner (model, detector, accuracy, counters), the sequence
tracker and the next offset of the partition, written atomically by the store. Order
on every checkpoint: flush the producer (outputs of the covered events are out), save,
then commit that offset to Kafka. On assignment the partition's checkpoint is restored
and the consumer seeks to *its* offset, so state and position always agree.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from learners.checkpoint import REFUSAL_REASONS, decode_checkpoint, encode_checkpoint
from learners.exceptions import CheckpointError
from learners.prequential import PartitionLearner
from learners.sequence import SequenceTracker
from monitoring.metrics import StreamlearnMetrics
from stream.checkpoints.stores import CheckpointStore
from stream.ports import TopicPartition

log = logging.getLogger(__name__)

#: Reasons a checkpoint is refused on load: the codec's, plus a payload of the wrong type.
CHECKPOINT_REFUSALS = (*REFUSAL_REASONS, "bad_state")


@dataclass
class PartitionState:
    """What a checkpoint carries besides the offset."""

    learner: PartitionLearner
    sequence: SequenceTracker


@dataclass(frozen=True)
class Restored:
    state: PartitionState
    next_offset: int


class Checkpointer:
    """Saves and restores partition states through a store; ``store=None`` disables it."""

    def __init__(
        self,
        store: CheckpointStore | None,
        key: bytes | None,
        metrics: StreamlearnMetrics,
        every_events: int = 10_000,
        interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.key = key
        self.metrics = metrics
        self.every_events = every_events
        self.interval_s = interval_s
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def restore(self, tp: TopicPartition) -> Restored | None:
        """The partition's checkpoint, or None when there is none or it was refused."""
        if self.store is None:
            return None
        blob = self.store.load(tp.topic, tp.partition)
        if blob is None:
            return None
        try:
            checkpoint = decode_checkpoint(blob, key=self.key)
        except CheckpointError as exc:
            self.metrics.checkpoint_load_failures.labels(exc.reason).inc()
            log.error(
                "checkpoint of %s[%d] REFUSED (%s): %s; starting a fresh model at the "
                "group's committed offset",
                tp.topic,
                tp.partition,
                exc.reason,
                exc,
            )
            return None
        state = checkpoint.state
        if not isinstance(state, PartitionState):
            self.metrics.checkpoint_load_failures.labels("bad_state").inc()
            log.error(
                "checkpoint of %s[%d] holds a %s, not a partition state; ignored",
                tp.topic,
                tp.partition,
                type(state).__name__,
            )
            return None
        return Restored(state, checkpoint.next_offset)

    def due(self, events_since: int, last_at: float) -> bool:
        return (
            self.enabled
            and events_since > 0
            and (events_since >= self.every_events or self.clock() - last_at >= self.interval_s)
        )

    def save(self, tp: TopicPartition, state: PartitionState, next_offset: int) -> int:
        """Write the checkpoint and return its size in bytes (the model size metric);
        raises CheckpointStoreError when the store failed."""
        assert self.store is not None
        blob = encode_checkpoint(state, next_offset=next_offset, key=self.key)
        self.store.save(tp.topic, tp.partition, blob)
        return len(blob)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
