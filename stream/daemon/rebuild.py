"""Rebuild a partition's learner from the log when its checkpoint cannot be used.

A refused checkpoint (another River or Python version, corrupt, foreign, a signature
that does not verify, a forbidden class...) used to cost the partition everything it
had learned. The log still holds the events, so the learner is rebuilt instead: a fresh
learner steps the events before the partition's *resume offset* — at most
``--rebuild-events`` of them — exactly as the loop steps live events (same decode, dead
letters skipped silently, same ``PartitionLearner.step`` with drift detection and reset,
model errors undone through a journal), then live processing of the partition resumes
at that offset. Nothing is published while rebuilding: those events' outputs went out
when they were first handled.

The resume offset is decided on the main thread once the partition's first fetch
answered (``PartitionTable.start_rebuilds``): the refused checkpoint's own offset when
its header is authentic and names this partition (a version, class or unpickling
refusal), else the group's committed offset; never past the log's end.

The replay reads the log through the :class:`~stream.daemon.replay.Replayer` in slices
between polls, as a retrain replay does: the group consumer keeps polling while the
partition is paused and its records held back, so a rebuild of 100,000 events never
costs the group membership.

A drift with ``--drift-action retrain`` during the rebuild is retrained at once: the
candidate trains on the same pool (kept in memory from the events just stepped) and is
judged on the same holdout events as it was live, so the decision is the same. What
cannot be reproduced is *when* the live daemon applied it: live, the serving model keeps
predicting until the replay slice that ends the replay, so when more than
``--retrain-holdout-events`` live events were held back meanwhile, the old model served
(and its ADWIN and accuracy counted) a few events that the rebuilt learner gives to the
new one (``docs/reliability.md``).

With a labels topic the labels partition is replayed too, up to the labels offset the
partition resumes at, merged with the events by record time as the live loop merged them
(``daemon/labels_replay.py``): each label is joined to the prediction it joined live.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from learners.exceptions import FeatureBudgetExceeded
from learners.journal import Journal
from learners.outcomes import (
    DriftDetected,
    ModelReset,
    RetrainAbandoned,
    RetrainDecided,
    RetrainDropped,
    RetrainRequested,
)
from learners.prequential import PartitionLearner
from learners.retraining import REPLAYING
from monitoring.metrics import StreamlearnMetrics
from stream.daemon.labels_replay import LabelsRange
from stream.daemon.replay import Replayer
from stream.daemon.run_log import RunLog
from stream.events import DeadLetter, Decoder, Event, LateLabel, decode
from stream.ports import Record, TopicPartition

if TYPE_CHECKING:
    from stream.daemon.partitions import PartitionSlot

log = logging.getLogger(__name__)


@dataclass
class RebuildPlan:
    """A partition whose checkpoint was refused and whose learner is to be rebuilt."""

    reason: str
    #: The refused checkpoint's offset when it is a position in this log, else None.
    offset: int | None = None
    started: bool = False


@dataclass(eq=False)
class RebuildTask:
    """Steps the events of ``[start_offset, end_offset)`` into the slot's fresh learner."""

    tp: TopicPartition
    start_offset: int
    end_offset: int
    slot: PartitionSlot
    reason: str
    journal: Journal
    on_done: Callable[[RebuildTask], None]
    metrics: StreamlearnMetrics
    clock: Callable[[], float] = time.monotonic
    started: bool = False
    deadline: float = 0.0
    pending: list[Record] = field(default_factory=list)
    stepped: int = 0
    dead_letters: int = 0
    model_errors: int = 0
    drifts: int = 0
    resets: int = 0
    retrains: int = 0
    last_offset: int = -1
    began_at: float = 0.0
    #: Labelled events learned (features, label, event offset, label offset), for a
    #: retrain's pool (``--drift-action retrain`` only).
    recent: deque[tuple[dict[Any, Any], Any, int, int]] | None = None
    #: Unlabelled events held, by id, with their offsets (``--drift-action retrain`` only).
    held: dict[str, tuple[dict[Any, Any], int]] = field(default_factory=dict)
    #: Reads the records as the loop does (number labels for a regression).
    read: Decoder = decode
    #: ``--labels-topic``: the labels partition up to where it resumes.
    labels: LabelsRange | None = None
    #: Label records of the labels topic stepped.
    labels_stepped: int = 0
    #: ``--event-log``: where the rebuild's end is written (``rebuild`` lines).
    run_log: RunLog = field(default_factory=lambda: RunLog(None))

    def __post_init__(self) -> None:
        self.began_at = self.clock()
        learner = self.slot.learner
        if learner.drift_action == "retrain":
            self.recent = deque(maxlen=learner.max_retrain_events)

    def take(self, records: list[Record]) -> bool:
        for record in records:
            if record.offset >= self.end_offset:
                return True
            self._step(record)
        return records[-1].offset + 1 >= self.end_offset

    def _step(self, record: Record) -> None:
        """One record, as ``Daemon._handle`` takes it (a labelled event, an unlabelled
        one held for its label, or a late label joined), minus the outputs."""
        self.last_offset = record.offset
        event = self.read(record.value)
        kind = type(event)
        if kind is DeadLetter:
            self.dead_letters += 1  # dead-lettered when it was first handled
            return
        slot, journal, learner = self.slot, self.journal, self.slot.learner
        at = record.timestamp * 0.001
        try:
            if kind is LateLabel:
                late = cast(LateLabel, event)
                journal.kept.append((None, late.id, late.label, at, record.offset))
                if learner.join(late.id, late.label, at, record.offset):
                    self._remember_joined(late.id, late.label, record.offset)
            else:
                full = cast(Event, event)
                if full.seq is not None:
                    slot.sequence.observe(full.seq)
                if full.label is None and full.id is not None:
                    held = (full.features, full.id, at, record.offset)
                    journal.kept.append(held)
                    learner.hold(*held)
                    if self.recent is not None:
                        self.held[full.id] = (full.features, record.offset)
                else:
                    x, y = full.features, full.label
                    journal.kept.append((x, y, record.offset))
                    learner.stepper()(x, y, record.offset)
                    if self.recent is not None and y is not None:
                        self.recent.append((x, y, record.offset, record.offset))
        except Exception as exc:
            self._undo(exc)
            return
        self.stepped += 1
        self._stepped(learner)

    def _stepped(self, learner: PartitionLearner) -> None:
        journal = self.journal
        if learner.outcomes:
            self._settle(learner)
            journal.snapshot(learner)  # as the loop: no undo ever crosses an outcome
        elif journal.due:
            journal.snapshot(learner)

    def take_labels(self, records: list[Record]) -> bool:
        """Label records of the labels topic, as ``labels_topic.join_labels`` takes them:
        joined at the events position (the last event stepped), minus the outputs."""
        at_event = self.last_offset
        for record in records:
            self.labels_stepped += 1
            label = self.read(record.value)
            if type(label) is not LateLabel:
                self.dead_letters += 1  # dead-lettered when it was first handled
                continue
            late, learner = label, self.slot.learner
            at = record.timestamp * 0.001
            self.journal.kept.append((None, late.id, late.label, at, at_event))
            try:
                if learner.join(late.id, late.label, at, at_event):
                    self._remember_joined(late.id, late.label, at_event)
            except Exception as exc:
                self._undo(exc)
                continue
            self._stepped(learner)
        return False

    def _remember_joined(self, event_id: str, label: Any, label_offset: int) -> None:
        """A joined event joins a retrain's pool as the live replay reads it: when both
        the event and its label lie in the pool's range, in the order of the labels."""
        held = self.held.pop(event_id, None)
        if self.recent is not None and held is not None:
            features, event_offset = held
            self.recent.append((features, label, event_offset, label_offset))

    def _undo(self, exc: Exception) -> None:
        """The model raised: the live daemon dead-lettered the event and undid it."""
        self.model_errors += 1
        if isinstance(exc, FeatureBudgetExceeded):
            self.journal.refuse_last()
            return
        self.slot.state.learner = self.journal.undo_last(self.slot.learner).learner

    def _settle(self, learner: PartitionLearner) -> None:
        """Count what the learner reported (it was reported live already) and run a
        requested retrain to its end now."""
        while learner.outcomes:  # a retrain run now may decide at once: more outcomes
            for outcome in learner.drain_outcomes():
                self.drifts += isinstance(outcome, DriftDetected)
                self.resets += isinstance(outcome, ModelReset)
                self.retrains += isinstance(
                    outcome, RetrainDecided | RetrainAbandoned | RetrainDropped
                )
                if isinstance(outcome, RetrainRequested):
                    self._retrain_now(learner)

    def _retrain_now(self, learner: PartitionLearner) -> None:
        """Train the candidate on its pool, as the replay would have, then let it shadow."""
        job = learner.retrain
        if job is None or job.state != REPLAYING or self.recent is None:
            return
        start, end = job.pool
        skipped = self.journal.skipped
        for x, y, offset, label_offset in self.recent:
            if start <= offset and label_offset < end and offset not in skipped:
                job.train(x, y, offset)
                if job.abandoned is not None:
                    break
        job.replay_finished()
        learner.settle_retrain()

    def finish(self) -> None:
        seconds = self.clock() - self.began_at
        if self.labels is not None:  # live labels resume there
            self.slot.state.labels_offset = self.labels.end
        self.slot.journal = self.journal  # the loop goes on with it (and its skipped offsets)
        self.metrics.rebuilds.labels(self.reason).inc()
        self.metrics.rebuild_seconds.observe(seconds)
        self.metrics.rebuild_events.inc(self.stepped + self.dead_letters + self.model_errors)
        tp, learner = self.tp, self.slot.learner
        log.info(
            "%s[%d]: learner REBUILT from the log (checkpoint refused: %s): offsets %d..%d in "
            "%.1f s, %d events stepped (%d learned in all), %d dead letters and %d model "
            "errors skipped, %d drifts, %d resets, %d retrains re-derived; model v%d; "
            "resuming at offset %d (%d records of the labels topic stepped)",
            tp.topic,
            tp.partition,
            self.reason,
            self.start_offset,
            self.end_offset - 1,
            seconds,
            self.stepped,
            learner.learned,
            self.dead_letters,
            self.model_errors,
            self.drifts,
            self.resets,
            self.retrains,
            learner.model_version,
            self.end_offset,
            self.labels_stepped,
        )
        complete = self.last_offset + 1 >= self.end_offset
        self._log_end("finished" if complete else "incomplete")
        if not complete:
            log.warning(
                "%s[%d]: the rebuild read only up to offset %d of %d..%d (the log gave no "
                "more in time); the learner misses the rest",
                tp.topic,
                tp.partition,
                self.last_offset,
                self.start_offset,
                self.end_offset - 1,
            )
        self.on_done(self)

    def cancelled(self) -> None:
        """The partition was revoked mid-rebuild: its next owner rebuilds it."""
        self._log_end("revoked")

    def _log_end(self, result: str) -> None:
        tp, learner = self.tp, self.slot.learner
        self.run_log.write(
            "rebuild",
            tp.topic,
            tp.partition,
            self.last_offset,
            learner.learned,
            phase="end",
            result=result,
            reason=self.reason,
            from_offset=self.start_offset,
            to_offset=self.end_offset - 1,
            replayed=self.stepped + self.dead_letters + self.model_errors,
            labels_replayed=self.labels_stepped,
            drifts=self.drifts,
            resets=self.resets,
            retrains=self.retrains,
            model_version=learner.model_version,
            seconds=round(self.clock() - self.began_at, 3),
        )


class Rebuilder:
    """Plans and starts rebuilds; ``max_events`` 0 turns them off."""

    def __init__(
        self,
        replayer: Replayer,
        metrics: StreamlearnMetrics,
        max_events: int = 100_000,
        max_features: int | None = None,
        snapshot_every: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        decode: Decoder = decode,
        run_log: RunLog | None = None,
    ) -> None:
        """``decode`` reads the records as the loop reads them (number labels for a
        regression); ``run_log`` is told when a rebuild starts and ends."""
        self.replayer = replayer
        self.metrics = metrics
        self.max_events = max_events
        self.max_features = max_features
        self.snapshot_every = snapshot_every
        self.clock = clock
        self.decode = decode
        self.run_log = run_log or RunLog(None)

    def plan(self, slot: PartitionSlot, reason: str, offset: int | None) -> None:
        """Mark ``slot`` (fresh, its checkpoint refused) for a rebuild; safe in a
        rebalance listener: nothing here talks to the broker."""
        if self.max_events > 0:
            slot.rebuild = RebuildPlan(reason, offset)

    def begin(
        self,
        slot: PartitionSlot,
        resume: int,
        log_start: int | None,
        on_done: Callable[[RebuildTask], None],
        labels_end: int | None = None,
    ) -> RebuildTask | None:
        """Queue the replay of the events before ``resume`` (with a labels topic, and the
        labels before ``labels_end``, where its labels resume); None when the log holds
        no event before ``resume``."""
        plan = slot.rebuild
        assert plan is not None
        start = max(resume - self.max_events, log_start or 0)
        if start >= resume:
            return None
        # The loop would have done this before the partition's first event.
        slot.learner.limit_features(self.max_features)
        journal = Journal(slot.learner, self.snapshot_every)
        task = RebuildTask(
            slot.tp, start, resume, slot, plan.reason, journal, on_done, self.metrics, self.clock,
            read=self.decode, labels=self.replayer.labels_range(slot.tp, labels_end),
            run_log=self.run_log,
        )  # fmt: skip
        self.replayer.add(task)
        plan.started = True
        self.run_log.write(
            "rebuild", slot.tp.topic, slot.tp.partition, start, slot.learner.learned,
            phase="start", reason=plan.reason, from_offset=start, to_offset=resume - 1,
        )  # fmt: skip
        log.info(
            "%s[%d]: rebuilding the learner from offsets %d..%d of the log before live "
            "processing resumes (checkpoint refused: %s)",
            slot.tp.topic,
            slot.tp.partition,
            start,
            resume - 1,
            plan.reason,
        )
        return task
