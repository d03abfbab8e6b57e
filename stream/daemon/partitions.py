"""The partitions this instance owns: their learners, offsets, checkpoints and commits.

Partitions arrive and leave with rebalances. On arrival a partition's checkpoint is
restored and the consumer seeks to the checkpoint's offset (not the group's committed
one), so model and position always agree; on departure it is checkpointed before the
partition is released. Offsets are committed only after the checkpoint that covers
them, and only after the producer flushed the outputs of those events.

kafka-python 3 runs rebalance listeners on the consumer's IO thread, where no blocking
consumer call may be made: there the table only seeks and commits asynchronously (the
checkpoint store and the producer have clients of their own), and checks a checkpoint's
cluster and topic identity against the consumer's cached metadata. Checks that need the
log's bounds wait for the main thread: a restored offset past the end of the log (known
from the first fetch's high watermark) refuses the checkpoint; events that expired
before they were learned are reported on the first batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from learners.journal import Journal
from learners.origin import Origin
from learners.pending import LABEL_OUTCOMES
from learners.prequential import PartitionLearner
from learners.retraining import REPLAYING
from learners.sequence import SequenceTracker
from learners.state import PartitionState
from monitoring.metrics import PartitionMetrics, StreamlearnMetrics
from stream.checkpoints.checkpointer import Checkpointer, Refused
from stream.daemon.publisher import Publisher
from stream.daemon.rebuild import Rebuilder, RebuildPlan, RebuildTask
from stream.daemon.replay import Replayer
from stream.daemon.run_log import RunLog
from stream.exceptions import BrokerUnavailable, CommitRefused, PublishTimeout
from stream.ports import Record, Source, TopicPartition

log = logging.getLogger(__name__)

LearnerFactory = Callable[[TopicPartition], PartitionLearner]
#: Applies this run's settings to a restored learner (its challengers, ``daemon/app.py``).
Adopt = Callable[[TopicPartition, PartitionLearner], None]
Identify = Callable[[TopicPartition], Origin]


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
    #: False while a restored offset still has to be checked against the log's end.
    end_verified: bool = True
    #: The partition as the broker described it on assignment; checkpoints record it.
    origin: Origin | None = None
    last_checkpoint_at: float = 0.0
    # Counts already added to the metric counters.
    reported: dict[str, int] = field(default_factory=dict)
    # Records polled but held back while the partition's retrain replays.
    backlog: list[Record] = field(default_factory=list)
    # The learner's snapshot and events since, to undo a poison event (daemon/model_errors.py).
    journal: Journal | None = None
    # Why the partition is no longer handled (too many model errors in a row), else None.
    halted: str | None = None
    # Set while the learner is to be, or is being, rebuilt from the log (daemon/rebuild.py):
    # the partition's records are held back until it is done.
    rebuild: RebuildPlan | None = None
    # --labels-topic: the labels offset the last checkpoint and commit covered (the next
    # one to handle is ``state.labels_offset``).
    labels_checkpointed: int | None = None
    labels_committed: int | None = None

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
        identify: Identify | None = None,
        rebuilder: Rebuilder | None = None,
        labels_topic: str | None = None,
        adopt: Adopt | None = None,
        run_log: RunLog | None = None,
    ) -> None:
        """``labels_topic``: late labels also come on that topic, co-partitioned; its
        offsets are checkpointed, restored and committed with the events offsets.
        ``run_log`` is told of the checkpoints refused."""
        self.consumer = consumer
        self.labels_topic = labels_topic
        self.adopt = adopt
        self.learner_factory = learner_factory
        self.checkpointer = checkpointer
        self.publisher = publisher
        self.metrics = metrics
        self.replayer = replayer
        self.clock = clock
        self.identify = identify or consumer.origin
        self.rebuilder = rebuilder
        self.run_log = run_log or RunLog(None)
        self.slots: dict[TopicPartition, PartitionSlot] = {}

    # -- arrival ----------------------------------------------------------------------

    def assign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp not in self.slots:
                self.slots[tp] = self._open(tp)

    def _open(self, tp: TopicPartition) -> PartitionSlot:
        origin = self.identify(tp)
        restored = self.checkpointer.restore(tp, origin)
        if restored is None or isinstance(restored, Refused):
            slot = self._fresh(tp, origin)
            if isinstance(restored, Refused):
                self._log_refused(tp, restored.reason, restored.next_offset)
                if self.rebuilder is not None:
                    self.rebuilder.plan(slot, restored.reason, restored.next_offset)
            log.info("assigned %s[%d]: new learner", tp.topic, tp.partition)
            return slot
        slot = PartitionSlot(
            tp,
            restored.state,
            self.metrics.partition(tp.topic, tp.partition),
            next_offset=restored.next_offset,
            checkpointed_offset=restored.next_offset,
            end_verified=False,
            origin=origin,
            last_checkpoint_at=self.clock(),
        )
        if self.adopt is not None:
            self.adopt(tp, slot.learner)
        # Counters restored with the state were reported by an earlier process.
        slot.reported = lifetime_counts(slot)
        offset = restored.next_offset
        self.consumer.seek(tp, offset)
        self._seek_labels(slot)
        self._resume_retrain(slot)
        show_state(slot)
        log.info(
            "assigned %s[%d]: restored checkpoint (model v%d, %d learned), from offset %d",
            tp.topic,
            tp.partition,
            slot.learner.model_version,
            slot.learner.learned,
            offset,
        )
        return slot

    def _seek_labels(self, slot: PartitionSlot) -> None:
        """Read the labels partition from where the restored state stands (a state from
        before the labels topic starts where the group committed)."""
        offset = slot.labels_checkpointed = slot.state.labels_offset
        if self.labels_topic is not None and offset is not None:
            self.consumer.seek(TopicPartition(self.labels_topic, slot.tp.partition), offset)

    def _fresh(self, tp: TopicPartition, origin: Origin | None) -> PartitionSlot:
        state = PartitionState(self.learner_factory(tp), SequenceTracker())
        metrics = self.metrics.partition(tp.topic, tp.partition)
        slot = PartitionSlot(tp, state, metrics, origin=origin, last_checkpoint_at=self.clock())
        show_state(slot)
        return slot

    def verify_ends(self) -> set[TopicPartition]:
        """Main thread, each cycle: refuse restored checkpoints whose offset lies past the
        end of the log; returns their partitions, whose polled records must be dropped.

        The end is the high watermark of the partition's first fetch (``end_offsets`` is
        not the high watermark on every broker). Past it, the checkpoint belongs to a log
        that was truncated or replaced: the consumer would wait there (or be reset to
        where the policy says) with a model that never saw this log.
        """
        refused = set()
        for slot in list(self.slots.values()):
            if slot.end_verified:
                continue
            end = self.consumer.highwater(slot.tp)
            if end is None:
                continue  # no fetch answered yet, so nothing was polled for it either
            slot.end_verified = True
            offset = slot.checkpointed_offset
            if offset is not None and offset > end:
                self._refuse_restored(slot, offset, end)
                refused.add(slot.tp)
        return refused

    def _refuse_restored(self, slot: PartitionSlot, offset: int, end: int) -> None:
        tp = slot.tp
        self.checkpointer.refused(
            tp,
            "offset_out_of_range",
            f"its offset {offset} is past the end of the log ({end}): the log was truncated "
            f"or replaced since",
        )
        self._log_refused(tp, "offset_out_of_range", offset, log_end=end)
        self.replayer.cancel(tp)
        # Its gauges showed the refused state; the fresh slot binds and sets new ones.
        self.metrics.forget_partition(tp.topic, tp.partition)
        self.slots[tp] = fresh = self._fresh(tp, slot.origin)
        if self.rebuilder is not None:  # from the committed offset (start_rebuilds)
            self.rebuilder.plan(fresh, "offset_out_of_range", None)
        committed = self._committed(tp)
        if committed is not None and committed <= end:
            self.consumer.seek(tp, committed)
            start_at = f"the group's committed offset {committed}"
        else:
            start_at = self.consumer.reset_position(tp)
        if self.labels_topic is not None:  # labels from the group's offset too
            labels = TopicPartition(self.labels_topic, tp.partition)
            committed = self._committed(labels)
            if committed is not None:
                self.consumer.seek(labels, committed)
            else:
                self.consumer.reset_position(labels)
        log.warning("%s[%d]: new learner, from %s", tp.topic, tp.partition, start_at)

    def _log_refused(
        self, tp: TopicPartition, reason: str, offset: int | None, **fields: int
    ) -> None:
        """A ``refused`` run-log line: ``offset`` is the checkpoint's, -1 when it names no
        position in this log."""
        claimed = -1 if offset is None else offset
        self.run_log.write("refused", tp.topic, tp.partition, claimed, 0, reason=reason, **fields)

    def start_rebuilds(self) -> set[TopicPartition]:
        """Main thread, each cycle: start the planned rebuilds whose partition's log end
        is known (its first fetch answered); returns their partitions, whose polled
        records must be dropped (the consumer is sent to the resume offset)."""
        started = set()
        for slot in list(self.slots.values()):
            plan = slot.rebuild
            if plan is None or plan.started:
                continue
            end = self.consumer.highwater(slot.tp)
            if end is None:
                continue
            if self._begin_rebuild(slot, plan, end):
                started.add(slot.tp)
            else:
                slot.rebuild = None
        return started

    def _begin_rebuild(self, slot: PartitionSlot, plan: RebuildPlan, end: int) -> bool:
        assert self.rebuilder is not None
        tp = slot.tp
        resume = self._resume_offset(tp, plan, end)
        labels_end = self._labels_resume(tp)
        task = None
        if resume is not None:
            task = self.rebuilder.begin(
                slot, resume, self.consumer.log_start(tp), self._rebuilt, labels_end
            )
        if resume is None or task is None:
            log.warning(
                "%s[%d]: nothing to rebuild the learner from (%s); it starts afresh",
                tp.topic,
                tp.partition,
                "no committed offset" if resume is None else f"no event before offset {resume}",
            )
            return False
        slot.backlog.clear()
        self.consumer.seek(tp, resume)
        self.consumer.pause(tp)
        if self.labels_topic is not None:  # labels polled meanwhile are dropped: read again
            labels = TopicPartition(self.labels_topic, tp.partition)
            if labels_end is not None:
                self.consumer.seek(labels, labels_end)
            else:
                self.consumer.reset_position(labels)
        return True

    def _labels_resume(self, tp: TopicPartition) -> int | None:
        """With a labels topic, where its partition resumes after a rebuild: the group's
        committed offset, committed with the events offset the rebuild resumes at. None
        (no labels replayed, the labels partition read from where the consumer stands)
        without a labels topic or a committed offset."""
        if self.labels_topic is None:
            return None
        return self._committed(TopicPartition(self.labels_topic, tp.partition))

    def _resume_offset(self, tp: TopicPartition, plan: RebuildPlan, end: int) -> int | None:
        """Where the partition resumes: the refused checkpoint's offset when it is a
        position in this log, else the group's committed offset; never past ``end``."""
        if plan.offset is not None:
            if plan.offset <= end:
                return plan.offset
            log.warning(
                "%s[%d]: the refused checkpoint's offset %d is past the end of the log (%d); "
                "rebuilding up to the group's committed offset instead",
                tp.topic,
                tp.partition,
                plan.offset,
                end,
            )
        committed = self._committed(tp)
        return committed if committed is not None and committed <= end else None

    def _rebuilt(self, task: RebuildTask) -> None:
        """The rebuild is done: the learner has learned everything before the resume
        offset; checkpoint it there (a restart need not rebuild again) and go live."""
        slot = task.slot
        if self.slots.get(slot.tp) is not slot:
            return  # revoked or replaced meanwhile
        slot.rebuild = None
        slot.next_offset = task.end_offset
        slot.reported = lifetime_counts(slot)  # counted by the process that first handled them
        show_state(slot)
        self.checkpoint(slot)
        if not slot.backlog:
            self.consumer.resume(slot.tp)

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
            self.replayer.submit(slot.tp, job.pool[0], job.pool[1], job, labels_end=job.labels_end)

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
        labels = slot.state.labels_offset
        if slot.next_offset == slot.checkpointed_offset and labels == slot.labels_checkpointed:
            return
        if not self._outputs_confirmed():
            return
        size = self.checkpointer.save(slot.tp, slot.state, slot.next_offset, slot.origin)
        slot.metrics.model_size.observe(size)
        slot.checkpointed_offset = slot.next_offset
        slot.labels_checkpointed = labels
        slot.metrics.checkpoints.inc()
        slot.metrics.last_checkpoint.set(time.time())
        self.commit([slot.tp], blocking)

    def commit(self, only: list[TopicPartition] | None = None, blocking: bool = True) -> None:
        """Commit what is safe: checkpointed offsets, or (without checkpoints) handled ones.

        Inside a rebalance listener the commit must not block (``blocking=False``).
        """
        offsets: dict[TopicPartition, int] = {}
        labels_of: dict[int, PartitionSlot] = {}
        for tp, slot in self.slots.items():
            enabled = self.checkpointer.enabled
            safe = slot.checkpointed_offset if enabled else slot.next_offset
            if safe is not None and safe != slot.committed_offset and (only is None or tp in only):
                offsets[tp] = safe
            if self.labels_topic is not None and (only is None or tp in only):
                labels = slot.labels_checkpointed if enabled else slot.state.labels_offset
                if labels is not None and labels != slot.labels_committed:
                    offsets[TopicPartition(self.labels_topic, tp.partition)] = labels
                    labels_of[tp.partition] = slot
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
            if tp in self.slots:
                self.slots[tp].committed_offset = offset
            else:  # the labels partition of the slot with its number
                labels_of[tp.partition].labels_committed = offset

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


def lifetime_counts(slot: PartitionSlot) -> dict[str, int]:
    """The counts a partition's state keeps over its life (restored with a checkpoint)."""
    learner, sequence = slot.learner, slot.sequence
    counts = {
        "learned": learner.learned,
        "predicted": learner.predicted,
        "gaps": sequence.gaps,
        "duplicates": sequence.duplicates,
    }
    pending = learner.pending
    if pending is not None:
        for outcome in LABEL_OUTCOMES:
            counts[outcome] = getattr(pending, outcome)
    return counts


def show_state(slot: PartitionSlot) -> None:
    """Set the partition's gauges from its learner: a restored partition shows its restored
    values before any new event arrives, a fresh one its model version 1."""
    m, learner = slot.metrics, slot.learner
    scores = learner.scores()
    if scores is not None:
        m.show_scores(scores)
    if learner.challengers is not None:
        m.show_models(learner.metric, learner.challengers.scores())
    m.adwin_width.set(learner.detector.width)
    m.model_version.set(learner.model_version)
    m.learned_events.set(learner.learned)
    if learner.pending is not None:
        m.show_pending(len(learner.pending), ())


def report_counts(slot: PartitionSlot) -> None:
    """Add what the learner counted since the last report to the metric counters."""
    now, before, m = lifetime_counts(slot), slot.reported, slot.metrics
    m.learned.inc(now["learned"] - before.get("learned", 0))
    m.learned_events.set(now["learned"])
    m.predicted.inc(now["predicted"] - before.get("predicted", 0))
    if now["gaps"] != before.get("gaps", 0):
        m.sequence_gaps.inc(now["gaps"] - before.get("gaps", 0))
    if now["duplicates"] != before.get("duplicates", 0):
        m.sequence_duplicates.inc(now["duplicates"] - before.get("duplicates", 0))
    for outcome, counter in m.labels.items():
        if now.get(outcome, 0) != before.get(outcome, 0):
            counter.inc(now.get(outcome, 0) - before.get(outcome, 0))
    slot.reported = now
