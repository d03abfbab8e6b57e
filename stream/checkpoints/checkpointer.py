"""When and how a partition's state is checkpointed and restored.

A checkpoint holds the learner (model, detector, accuracy, counters), the sequence
tracker, the next offset of the partition and where it was taken (cluster, topic id,
partition count), written atomically by the store. Order on every checkpoint: flush the
producer (outputs of the covered events are out), save, then commit that offset to
Kafka. On assignment the partition's checkpoint is restored and the consumer seeks to
*its* offset, so state and position always agree. State from another cluster or an
earlier incarnation of the topic is refused, counted and logged with both identities.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from learners.checkpoint import (
    REFUSAL_REASONS,
    Keys,
    decode_checkpoint,
    encode_checkpoint,
    key_ring,
)
from learners.exceptions import CheckpointError
from learners.origin import Origin, unverified
from learners.state import PartitionState
from monitoring.metrics import StreamlearnMetrics
from stream.checkpoints.stores import CheckpointStore
from stream.ports import TopicPartition

__all__ = ["CHECKPOINT_REFUSALS", "Checkpointer", "PartitionState", "Refused", "Restored"]

log = logging.getLogger(__name__)

#: Reasons a checkpoint is refused: the codec's, a payload of the wrong type, and an
#: offset past the end of the log (known once the partition's first fetch answered).
CHECKPOINT_REFUSALS = (*REFUSAL_REASONS, "bad_state", "offset_out_of_range")


@dataclass(frozen=True)
class Restored:
    state: PartitionState
    next_offset: int


@dataclass(frozen=True)
class Refused:
    """A checkpoint that was there but is not applied (counted and logged already)."""

    reason: str
    #: Where the refused state stood in this partition's log, when its header is
    #: authentic and names this partition; else None (see ``CheckpointError``).
    next_offset: int | None = None


class Checkpointer:
    """Saves and restores partition states through a store; ``store=None`` disables it.

    ``key`` is the signing key, or a ring of keys: checkpoints are signed with the first
    and accepted when signed with any of them (key rotation).
    """

    def __init__(
        self,
        store: CheckpointStore | None,
        key: Keys,
        metrics: StreamlearnMetrics,
        every_events: int = 10_000,
        interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.keys = key_ring(key)
        self.metrics = metrics
        self.every_events = every_events
        self.interval_s = interval_s
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def restore(
        self, tp: TopicPartition, origin: Origin | None = None
    ) -> Restored | Refused | None:
        """The partition's checkpoint, :class:`Refused` when it is not applied, or None
        when there is none.

        ``origin`` is the partition as the broker describes it now; a checkpoint that
        records another one is refused before it is unpickled.
        """
        if self.store is None:
            return None
        blob = self.store.load(tp.topic, tp.partition)
        if blob is None:
            return None
        try:
            checkpoint = decode_checkpoint(blob, key=self.keys, origin=origin)
        except CheckpointError as exc:
            self.refused(tp, exc.reason, str(exc))
            return Refused(exc.reason, exc.next_offset)
        state = checkpoint.state
        if not isinstance(state, PartitionState):
            kind = type(state).__name__
            self.refused(tp, "bad_state", f"it holds a {kind}, not a partition state")
            return Refused("bad_state", checkpoint.next_offset)
        _log_identity(tp, checkpoint.origin, origin)
        return Restored(state, checkpoint.next_offset)

    def refused(self, tp: TopicPartition, reason: str, detail: str) -> None:
        """Count and log a checkpoint that is not applied; the partition starts afresh."""
        self.metrics.checkpoint_load_failures.labels(reason).inc()
        log.error(
            "checkpoint of %s[%d] REFUSED (%s): %s; the partition starts a fresh model "
            "(rebuilt from the log when --rebuild-events allows)",
            tp.topic,
            tp.partition,
            reason,
            detail,
        )

    def due(self, events_since: int, last_at: float) -> bool:
        return (
            self.enabled
            and events_since > 0
            and (events_since >= self.every_events or self.clock() - last_at >= self.interval_s)
        )

    def save(
        self,
        tp: TopicPartition,
        state: PartitionState,
        next_offset: int,
        origin: Origin | None = None,
    ) -> int:
        """Write the checkpoint and return its size in bytes (the model size metric);
        raises CheckpointStoreError when the store failed."""
        assert self.store is not None
        signing_key = self.keys[0] if self.keys else None
        blob = encode_checkpoint(state, next_offset=next_offset, key=signing_key, origin=origin)
        self.store.save(tp.topic, tp.partition, blob)
        return len(blob)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _log_identity(tp: TopicPartition, recorded: Origin | None, current: Origin | None) -> None:
    """Say what could not be checked about where an accepted checkpoint came from."""
    where = f"checkpoint of {tp.topic}[{tp.partition}]"
    if recorded is None:
        log.info(
            "%s records no cluster or topic identity (written before format 2): accepted "
            "without checking where it came from",
            where,
        )
        return
    if current is None:
        return
    missing = unverified(recorded, current)
    if missing:
        log.warning(
            "%s: the broker gives no %s now, so it was not compared (checkpoint from %s)",
            where,
            " or ".join(missing),
            recorded.describe(),
        )
    then, now = recorded.partitions, current.partitions
    if then is not None and now is not None and then < now:
        log.warning(
            "%s: the topic grew from %d to %d partitions since; keyed events may now "
            "reach other partitions",
            where,
            then,
            now,
        )
