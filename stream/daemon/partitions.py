"""The partitions this instance owns: their learners, offsets, checkpoints and commits.

Partitions arrive and leave with rebalances. On arrival a partition's checkpoint is
restored and the consumer seeks to the checkpoint's offset (not the group's committed
one), so model and position always agree; on departure it is checkpointed before the
partition is released. Offsets are committed only after the checkpoint that covers
them, and only after the producer flushed the outputs of those events.

kafka-python 3 runs rebalance listeners on the consumer's IO thread, where no blocking
consumer call may be made: there the table only seeks and commits asynchronously (the
checkpoint store and the producer have clients of their own). Checks that need a
broker round trip (did the log expire under us?) wait for the first batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from learners.journal import Journal
from learners.prequential import PartitionLearner
from learners.retraining import REPLAYING
from learners.sequence import SequenceTracker
from monitoring.metrics import PartitionMetrics, StreamlearnMetrics
from stream.checkpoints.checkpointer import Checkpointer, PartitionState
from stream.daemon.publisher import Publisher
from stream.daemon.replay import Replayer
from stream.exceptions import BrokerUnavailable, CommitRefused, PublishTimeout
from stream.ports import Record, Source, TopicPartition

log = logging.getLogger(__name__)

LearnerFactory = Callable[[TopicPartition], PartitionLearner]


@dataclass
class PartitionSlot:
    """A partition's state with its bound metrics and where it stands in the log."""

    tp: TopicPartition
    state: PartitionState
    metrics: PartitionMetrics
    #: The next offset to handle (everything before it was handled).
    next_offset: int | None = None
    committed_offset: int | None = None
    checkpointed_offset: int | None = None
    events_since_checkpoint: int = 0
    start_verified: bool = False
    last_checkpoint_at: float = 0.0
    # Counts already added to the metric counters.
    reported: dict[str, int] = field(default_factory=dict)
    # Records polled but held back while the partition's retrain replays.
    backlog: list[Record] = field(default_factory=list)
    # The learner's snapshot and events since, to undo a poison event (daemon/model_errors.py).
    journal: Journal | None = None
    # Why the partition is no longer handled (too many model errors in a row), else None.
    halted: str | None = None

    @property
    def learner(self) -> PartitionLearner:
        return self.state.learner

    @property
    def sequence(self) -> SequenceTracker:
        return self.state.sequence

    @property
    def replaying(self) -> bool:
        job = self.state.learner.retrain
        return job is not None and job.state == REPLAYING


class PartitionTable:
    """Creates, restores, checkpoints, commits and drops partition slots."""

    def __init__(
        self,
        consumer: Source,
        learner_factory: LearnerFactory,
        checkpointer: Checkpointer,
        publisher: Publisher,
        metrics: StreamlearnMetrics,
        replayer: Replayer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.learner_factory = learner_factory
        self.checkpointer = checkpointer
        self.publisher = publisher
        self.metrics = metrics
        self.replayer = replayer
        self.clock = clock
        self.slots: dict[TopicPartition, PartitionSlot] = {}

    # -- arrival ----------------------------------------------------------------------

    def assign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp not in self.slots:
                self.slots[tp] = self._open(tp)

    def _open(self, tp: TopicPartition) -> PartitionSlot:
        metrics = self.metrics.partition(tp.topic, tp.partition)
        restored = self.checkpointer.restore(tp)
        if restored is None:
            state = PartitionState(self.learner_factory(tp), SequenceTracker())
            slot = PartitionSlot(tp, state, metrics, last_checkpoint_at=self.clock())
            log.info("assigned %s[%d]: new learner", tp.topic, tp.partition)
            return slot
        slot = PartitionSlot(
            tp,
            restored.state,
            metrics,
            next_offset=restored.next_offset,
            checkpointed_offset=restored.next_offset,
            last_checkpoint_at=self.clock(),
        )
        # Counters restored with the state were reported by an earlier process.
        slot.reported = _counts(slot)
        offset = restored.next_offset
        self.consumer.seek(tp, offset)
        self._resume_retrain(slot)
        log.info(
            "assigned %s[%d]: restored checkpoint (model v%d, %d learned), from offset %d",
            tp.topic,
            tp.partition,
            slot.learner.model_version,
            slot.learner.learned,
            offset,
        )
        return slot

    def verify_start(self, slot: PartitionSlot, first_offset: int) -> None:
        """On a partition's first batch: did events expire before we could learn them?

        The consumer silently resets an offset below the log's start to the start; the
        first record then lies past where this partition's state says it stands.
        """
        slot.start_verified = True
        expected = slot.next_offset if slot.next_offset is not None else self._committed(slot.tp)
        if expected is None or first_offset <= expected:
            return
        start = self.consumer.log_start(slot.tp)
        if start is not None and expected < start:
            lost = start - expected
            slot.metrics.offsets_expired.inc(lost)
            log.error(
                "%s[%d]: offset %d is below the log start %d: %d events EXPIRED before they "
                "were learned; continuing from %d",
                slot.tp.topic,
                slot.tp.partition,
                expected,
                start,
                lost,
                first_offset,
            )

    def _committed(self, tp: TopicPartition) -> int | None:
        return self.consumer.committed(tp)

    def _resume_retrain(self, slot: PartitionSlot) -> None:
        job = slot.learner.retrain
        if job is not None and job.state == REPLAYING:
            # The replay did not survive the restart; run it again from the start.
            job.restart(slot.learner.fresh_model())
            self.replayer.submit(slot.tp, job.pool[0], job.pool[1], job)

    # -- checkpoints and commits ------------------------------------------------------

    def checkpoint_due(self) -> None:
        for slot in self.slots.values():
            if self.checkpointer.due(slot.events_since_checkpoint, slot.last_checkpoint_at):
                self.checkpoint(slot)

    def checkpoint(self, slot: PartitionSlot, blocking: bool = True) -> None:
        """Flush outputs, save the state at ``next_offset``, then commit that offset."""
        slot.last_checkpoint_at = self.clock()
        slot.events_since_checkpoint = 0
        if not self.checkpointer.enabled or slot.next_offset is None:
            return
        if slot.next_offset == slot.checkpointed_offset:
            return
        if not self._outputs_confirmed():
            return
        size = self.checkpointer.save(slot.tp, slot.state, slot.next_offset)
        slot.metrics.model_size.observe(size)
        slot.checkpointed_offset = slot.next_offset
        slot.metrics.checkpoints.inc()
        slot.metrics.last_checkpoint.set(time.time())
        self.commit([slot.tp], blocking)

    def commit(self, only: list[TopicPartition] | None = None, blocking: bool = True) -> None:
        """Commit what is safe: checkpointed offsets, or (without checkpoints) handled ones.

        Inside a rebalance listener the commit must not block (``blocking=False``).
        """
        offsets = {}
        for tp, slot in self.slots.items():
            safe = slot.checkpointed_offset if self.checkpointer.enabled else slot.next_offset
            if safe is not None and safe != slot.committed_offset and (only is None or tp in only):
                offsets[tp] = safe
        if not offsets or not self._outputs_confirmed():
            return
        try:
            self.consumer.commit(offsets, blocking)
        except CommitRefused as exc:
            # A rebalance took the partitions; their checkpoints, not commits, say where
            # the next owner starts.
            log.warning("commit refused after a rebalance: %s", exc)
            return
        except BrokerUnavailable as exc:
            # The broker did not answer in time (an outage): commits only feed lag
            # monitoring, so retry on a later cycle; the outage timeout decides when
            # to give up, not the first commit that happens to be in flight.
            log.warning("commit failed (%s); retrying later", exc)
            return
        for tp, offset in offsets.items():
            self.slots[tp].committed_offset = offset

    def _outputs_confirmed(self) -> bool:
        """Flush the outputs; False (try later) when the broker did not confirm in time.

        A send that *failed* raises: its offset must never be covered by a checkpoint.
        """
        try:
            self.publisher.flush()
        except PublishTimeout as exc:
            log.warning("outputs not confirmed yet (%s); checkpoint and commit postponed", exc)
            return False
        return True

    # -- departure --------------------------------------------------------------------

    def revoke(self, partitions: list[TopicPartition], keep_metrics: bool) -> None:
        owned = [tp for tp in partitions if tp in self.slots]
        for tp in owned:
            try:
                self.checkpoint(self.slots[tp], blocking=False)
            except Exception:  # the partition goes anyway; the next owner re-reads more
                log.exception("checkpoint on revoke failed for %s[%d]", tp.topic, tp.partition)
        try:
            self.commit(owned, blocking=False)
        except Exception:  # the partitions go anyway; their checkpoints say where to start
            log.exception("commit on revoke failed for %s", owned)
        for tp in owned:
            self.replayer.cancel(tp)
            del self.slots[tp]
            # At shutdown the last values stay for the final scrape; in a rebalance they
            # go, so the instance taking the partition over is the only one exporting it.
            if not keep_metrics:
                self.metrics.forget_partition(tp.topic, tp.partition)
            log.info("revoked %s[%d]", tp.topic, tp.partition)


def _counts(slot: PartitionSlot) -> dict[str, int]:
    learner, sequence = slot.learner, slot.sequence
    return {
        "learned": learner.learned,
        "predicted": learner.predicted,
        "gaps": sequence.gaps,
        "duplicates": sequence.duplicates,
    }


def report_counts(slot: PartitionSlot) -> None:
    """Add what the learner counted since the last report to the metric counters."""
    now, before, m = _counts(slot), slot.reported, slot.metrics
    m.learned.inc(now["learned"] - before.get("learned", 0))
    m.predicted.inc(now["predicted"] - before.get("predicted", 0))
    if now["gaps"] != before.get("gaps", 0):
        m.sequence_gaps.inc(now["gaps"] - before.get("gaps", 0))
    if now["duplicates"] != before.get("duplicates", 0):
        m.sequence_duplicates.inc(now["duplicates"] - before.get("duplicates", 0))
    slot.reported = now
