"""The daemon loop: poll, test-then-train each partition's batch, publish, checkpoint, commit.

One learner per assigned partition (``stream/daemon/partitions.py``). The loop polls big
batches, hands each partition's records to its learner, publishes predictions and dead
letters, updates metrics once per batch, feeds a running retrain for a bounded slice of
time, and checkpoints and commits what it handled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from learners.outcomes import Outcome, RetrainRequested
from learners.screening import drain_screened
from monitoring.metrics import StreamlearnMetrics
from stream.daemon.labels_topic import LabelsTopic, caught_up, co_partitioned, join_labels
from stream.daemon.model_errors import ModelErrors
from stream.daemon.partitions import PartitionSlot, PartitionTable, report_counts
from stream.daemon.publisher import Publisher
from stream.daemon.run_log import RunLog
from stream.daemon.status import StatusLine, log_outcome
from stream.events import DeadLetter, Decoder, Event, LateLabel, decode
from stream.exceptions import StreamError
from stream.ports import Record, Source, TopicPartition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopTiming:
    poll_timeout_s: float = 0.5
    commit_interval_s: float = 1.0
    status_interval_s: float = 10.0
    accuracy_log_interval_s: float = 2.0
    retrain_budget_s: float = 0.1
    live_slice_during_replay: int = 1000
    #: Longest a cycle handles records before it polls again (a quarter of
    #: max.poll.interval.ms at most), so a slow model never costs the group membership.
    cycle_budget_s: float = 1.0
    stop_after_idle_s: float | None = None
    outage_timeout_s: float = 300.0
    join_settle_s: float = 15.0


class Daemon:
    """Runs until stopped, idle for ``stop_after_idle_s``, or the broker is gone too long."""

    def __init__(
        self,
        consumer: Source,
        topic: str,
        partitions: PartitionTable,
        publisher: Publisher,
        metrics: StreamlearnMetrics,
        run_log: RunLog,
        timing: LoopTiming,
        clock: Callable[[], float] = time.monotonic,
        model_errors: ModelErrors | None = None,
        cycle_clock: Callable[[], float] = time.perf_counter,
        decode: Decoder = decode,
        labels: LabelsTopic | None = None,
    ) -> None:
        """``clock`` times intervals (commits, idle, outage); ``cycle_clock`` the cycle
        budget and processing times. Tests pass fakes of both. ``decode`` is the task's
        (``stream.events.decoder_for``: a regression's labels are numbers). ``labels``:
        late labels also come on a labels topic (``daemon/labels_topic.py``)."""
        self.decode = decode
        self.labels = labels
        #: Why the group's assignment is not co-partitioned, if it is not.
        self._not_co_partitioned: str | None = None
        self.consumer = consumer
        self.topic = topic
        self.partitions = partitions
        self.publisher = publisher
        self.metrics = metrics
        self.replayer = partitions.replayer
        self.model_errors = model_errors or ModelErrors(publisher, metrics, self.replayer)
        self.run_log = run_log
        self.timing = timing
        self.clock = clock
        # Bound once: read per batch and every 64 records, as cheap as time.perf_counter.
        self._cycle_clock = cycle_clock
        self._stopping = False
        # None until the first assignment: joining a group can take longer than the idle limit.
        self._last_record_at: float | None = None
        self._unreachable_since: float | None = None
        self._last_commit_at = self._last_status_at = self._last_accuracy_at = clock()
        self._status = StatusLine()

    @property
    def slots(self) -> dict[TopicPartition, PartitionSlot]:
        return self.partitions.slots

    # -- lifecycle --------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its batch, checkpoint, commit and return (signal-safe)."""
        self._stopping = True

    def ready(self) -> tuple[bool, str]:
        if self._stopping:
            return False, "stopping"
        if self._unreachable_since is not None:
            return False, f"broker unreachable for {self.clock() - self._unreachable_since:.0f} s"
        halted = self._halted()
        if halted:
            return False, halted
        return True, f"consuming {len(self.slots)} partition(s) of {self.topic}"

    def _halted(self) -> str | None:
        """Why a partition is halted, if one is (it needs a person: readiness says so)."""
        for slot in list(self.slots.values()):  # list(): called from the HTTP thread too
            if slot.halted is not None:
                return f"{slot.tp.topic}[{slot.tp.partition}] halted: {slot.halted}"
        return None

    def run(self) -> int:
        topics = [self.topic] if self.labels is None else [self.topic, self.labels.topic]
        self.consumer.subscribe(topics if self.labels else self.topic, self)
        log.info("consuming %s", " and ".join(topics))
        try:
            while not self._stopping:
                self._cycle()
                if self._idle_too_long():
                    log.info("no new records for %.1f s; stopping", self.timing.stop_after_idle_s)
                    break
            self._stopping = True
            self._finish_join()
            for slot in list(self.slots.values()):
                self.partitions.checkpoint(slot)
            self.partitions.commit()
        finally:
            self.metrics.ready.set(0)
            self.run_log.close()
        return 0

    def _finish_join(self) -> None:
        """Let a group join in flight complete (bounded) before the consumer leaves.

        The embedded broker (Tansu 0.6) mishandles a member that leaves in the middle
        of its join: it keeps it as the group's leader, and no member of the group is
        ever assigned a partition again. Records polled meanwhile are dropped unhandled;
        no checkpoint or commit goes past them.
        """
        deadline = self.clock() + self.timing.join_settle_s
        while self.consumer.joining() and self.clock() < deadline:
            self.consumer.settle()

    def _idle_too_long(self) -> bool:
        idle, last = self.timing.stop_after_idle_s, self._last_record_at
        if idle is None or last is None or self._busy() or self._waiting_for_labels():
            return False  # held-back records or a replay are work, not idleness
        return self.clock() - last >= idle

    def _busy(self) -> bool:
        """Work to do without polling (not events waiting for labels: a poll brings those)."""
        return self.replayer.busy or any(
            slot.backlog and not self._waits_for_labels(slot) for slot in self.slots.values()
        )

    def _waits_for_labels(self, slot: PartitionSlot) -> bool:
        return self.labels is not None and self.labels.waiting(slot.tp)

    def _waiting_for_labels(self) -> bool:
        return any(self._waits_for_labels(slot) for slot in self.slots.values())

    def _cycle(self) -> None:
        # With a retrain replaying or records held back there is work without new data:
        # a poll must not wait for records that a paused partition cannot bring.
        timeout_s = 0.0 if self._busy() else self.timing.poll_timeout_s
        batches = self.consumer.poll(timeout_ms=int(timeout_s * 1000))
        if self._not_co_partitioned is not None:
            raise StreamError(
                f"the group's assignment is not co-partitioned ({self._not_co_partitioned}): "
                "every member must subscribe to both topics with the range assignor"
            )
        if batches:
            self._last_record_at = self.clock()
        self._watch_broker(bool(batches))
        if self.labels is not None:
            batches = self.labels.take(batches)
        # Records of a partition whose restored offset proved past the log's end came
        # from the wrong place; it starts afresh and reads them again from there.
        refused = self.partitions.verify_ends()
        # A rebuild sends its partition back to the resume offset: what was polled goes.
        refused |= self.partitions.start_rebuilds()
        if self.labels is not None:
            for tp in refused:
                self.labels.drop(tp.partition)
        deadline = self._cycle_clock() + self.timing.cycle_budget_s
        for tp, records in batches.items():
            slot = self.slots.get(tp)
            if slot is not None and tp not in refused:
                if not slot.start_verified:
                    self.partitions.verify_start(slot, records[0].offset)
                self._feed(slot, records, deadline)
        if self.replayer.busy:
            self._advance_retrains()
        for slot in list(self.slots.values()):
            if slot.backlog:
                self._drain_backlog(slot, deadline)
        if self.labels is not None:
            self._join_caught_up(self.labels)
        self.partitions.checkpoint_due()
        now = self.clock()
        if now - self._last_commit_at >= self.timing.commit_interval_s:
            self._last_commit_at = now
            self.partitions.commit()
        if now - self._last_accuracy_at >= self.timing.accuracy_log_interval_s:
            self._log_accuracy()
        if now - self._last_status_at >= self.timing.status_interval_s:
            self._status.log(list(self.slots.values()), now - self._last_status_at)
            self._last_status_at = now

    def _watch_broker(self, got_records: bool) -> None:
        """Not ready while no broker answers; give up after ``outage_timeout_s``."""
        if got_records or self.consumer.reachable():
            if self._unreachable_since is not None:
                log.warning(
                    "broker reachable again after %.1f s", self.clock() - self._unreachable_since
                )
            self._unreachable_since = None
            self.metrics.ready.set(0 if self._halted() else 1)
            return
        now = self.clock()
        if self._unreachable_since is None:
            self._unreachable_since = now
            self.metrics.ready.set(0)
            log.warning(
                "broker unreachable; retrying (giving up after %.0f s)",
                self.timing.outage_timeout_s,
            )
        elif now - self._unreachable_since > self.timing.outage_timeout_s:
            raise StreamError(f"broker unreachable for {now - self._unreachable_since:.0f} s")

    # -- the hot path -----------------------------------------------------------------

    def _feed(self, slot: PartitionSlot, records: Sequence[Record], deadline: float) -> None:
        """Handle records in order until ``deadline``; hold the rest back (and while the
        partition's retrain replays or its learner is rebuilt, hold everything back)."""
        while records and slot.halted is None:  # a halted partition's records stay unhandled
            # Records behind a backlog join it: order within a partition is the contract.
            held = slot.replaying or slot.rebuild is not None
            handled = 0
            if not (held or slot.backlog or self._cycle_clock() > deadline):
                handled = self._handle_in_order(slot, records, deadline)
            if not handled:  # held, late, or waiting for labels (--labels-topic)
                # Pausing the partition bounds the backlog to one poll's worth of records.
                slot.backlog.extend(records)
                self.consumer.pause(slot.tp)
                return
            records = records[handled:]

    def _drain_backlog(self, slot: PartitionSlot, deadline: float) -> None:
        """Serve held-back records until ``deadline``; while a replay runs, at most a slice
        per cycle (consumption goes on, but does not outrun the candidate). Once the
        backlog is empty the partition is resumed. Nothing is served while the learner is
        rebuilt: it must learn the past first."""
        if slot.rebuild is not None:
            return
        limit = self.timing.live_slice_during_replay if slot.replaying else len(slot.backlog)
        records = slot.backlog[:limit]
        del slot.backlog[:limit]
        while records and self._cycle_clock() <= deadline:
            handled = self._handle_in_order(slot, records, deadline)
            records = records[handled:]
            if slot.replaying or not handled:  # not handled: waiting for labels
                break  # one slice per cycle while the candidate catches up
        slot.backlog[:0] = records
        if slot.halted is not None:
            slot.backlog.clear()  # never handled, never committed; the partition stays paused
        elif not slot.backlog:
            self.consumer.resume(slot.tp)
            # A paused partition could bring nothing: idleness counts from its resumption.
            self._last_record_at = self.clock()

    def _handle_in_order(
        self, slot: PartitionSlot, records: Sequence[Record], deadline: float
    ) -> int:
        """``_handle`` the events, with the queued labels of a labels topic in between,
        in record-time order (``daemon/labels_topic.py``); 0 when the events wait for
        labels not fetched yet."""
        labels = self.labels
        if labels is None:
            return self._handle(slot, records, deadline)
        ready = labels.ready(slot.tp, records, self.clock())
        if not ready:
            return 0
        if not labels.queued(slot.tp):
            return self._handle(slot, records[:ready], deadline)
        join_labels(self, slot, labels.before(slot.tp, records[0].timestamp))
        if slot.halted is not None:
            return len(records)  # never handled: a halted partition's records stay so
        if slot.replaying:  # a label asked for a retrain: the events wait for its replay
            return 0
        count = min(ready, labels.prefix(slot.tp, records))
        return self._handle(slot, records[:count], deadline)

    def _join_caught_up(self, labels: LabelsTopic) -> None:
        """Labels queued for a partition whose events are all handled go in now."""
        for slot in list(self.slots.values()):
            busy = slot.backlog or slot.rebuild is not None or slot.replaying
            if labels.queued(slot.tp) and not busy and caught_up(self.consumer, slot):
                join_labels(self, slot, labels.all(slot.tp))

    def _handle(self, slot: PartitionSlot, records: Sequence[Record], deadline: float) -> int:
        """Test-then-train ``records`` in order; stop early after the record at which the
        learner had something to report (a drift may need the rest held back), or once
        ``deadline`` passed (a slow model must not keep the loop from polling).

        An event the model raises on is dead-lettered and undone (``model_errors.py``):
        the try costs nothing while nothing raises, the journal one append per event."""
        now = self._cycle_clock
        started = now()
        journal = slot.journal or self.model_errors.open(slot)
        keep = journal.kept.append
        learner, sequence, publisher = slot.learner, slot.sequence, self.publisher
        decode = self.decode
        step = learner.stepper()
        publish = publisher.predictions_topic is not None
        # The model that predicts, for the whole batch: it changes only with an outcome,
        # which ends the batch after the event that caused it (predicted by this one).
        version, model = learner.model_version, learner.model_name
        dead = handled = 0
        newest_timestamp = None
        for record in records:
            handled += 1
            event = decode(record.value)
            if type(event) is not Event:  # a dead letter, or the label of an earlier event
                if type(event) is DeadLetter:
                    publisher.dead_letter(record, event)
                    self.metrics.dead_letters.labels(event.reason).inc()
                    dead += 1
                    continue
                late = cast(LateLabel, event)
                at = record.timestamp * 0.001
                keep((None, late.id, late.label, at, record.offset))
                try:
                    learner.join(late.id, late.label, at, record.offset)
                except Exception as exc:  # the model raised on the features it predicted on
                    dead += 1
                    if self._undone_halted(slot, record, exc):
                        break
                    learner = slot.learner  # rebuilt
                    step = learner.stepper()
                    continue
                if learner.outcomes or (handled & 63 == 0 and now() > deadline):
                    break
                continue
            if event.seq is not None:
                sequence.observe(event.seq)
            try:
                if event.label is None and event.id is not None:
                    # Its label comes later: predict now, keep what the label will need.
                    held = (event.features, event.id, record.timestamp * 0.001, record.offset)
                    keep(held)
                    y_pred, proba = learner.hold(*held)
                else:
                    keep((event.features, event.label, record.offset))
                    y_pred, proba = step(event.features, event.label, record.offset)
            except Exception as exc:
                dead += 1
                if self._undone_halted(slot, record, exc):
                    break
                learner = slot.learner  # rebuilt
                step = learner.stepper()
                continue
            if publish:
                publisher.prediction(record, event, y_pred, proba, version, model)
            newest_timestamp = event.timestamp
            if learner.outcomes or (handled & 63 == 0 and now() > deadline):
                break
        publisher.ship()
        slot.next_offset = records[handled - 1].offset + 1
        slot.events_since_checkpoint += handled
        self._record_batch(slot, handled, dead, started, newest_timestamp)
        outcomes = learner.drain_outcomes()
        if outcomes:
            self._on_outcomes(slot, outcomes)
        elif journal.due:
            journal.snapshot(learner)
        return handled

    def _undone_halted(self, slot: PartitionSlot, record: Record, exc: Exception) -> bool:
        """The model raised on ``record``: dead-letter and undo it; True when that halted
        the partition (it is paused, the batch ends)."""
        self.model_errors.on_error(slot, record, exc)
        if slot.halted is None:
            return False
        self.consumer.pause(slot.tp)
        return True

    def _record_batch(
        self, slot: PartitionSlot, count: int, dead: int, started: float, newest: float | None
    ) -> None:
        m, learner = slot.metrics, slot.learner
        report_counts(slot)
        if dead:
            m.dead_lettered.inc(dead)
        if screened := drain_screened(learner):  # --screen-pool's refits
            m.screened(screened)
        scores = learner.scores()
        if scores is not None:
            m.show_scores(scores)
        if learner.challengers is not None:
            m.show_models(learner.metric, learner.challengers.scores())
        m.adwin_width.set(learner.detector.width)
        m.model_version.set(learner.model_version)
        pending = learner.pending
        if pending is not None:
            m.show_pending(len(pending), pending.drain_delays())
        m.processing.observe((self._cycle_clock() - started) / count)
        if newest is not None:
            m.latency.observe(max(time.time() - newest, 0.0))
        highwater = self.consumer.highwater(slot.tp)
        if highwater is not None and slot.next_offset is not None:
            m.lag.set(max(highwater - slot.next_offset, 0))

    def _on_outcomes(self, slot: PartitionSlot, outcomes: list[Outcome]) -> None:
        slot.metrics.record_outcomes(outcomes)
        tp = slot.tp
        for outcome in outcomes:
            self.run_log.outcome(tp.topic, tp.partition, outcome)
            log_outcome(tp, outcome)
            if isinstance(outcome, RetrainRequested) and slot.learner.retrain is not None:
                start, end = outcome.start_offset, outcome.end_offset
                skip = self.model_errors.skipped_within(slot, start, end)
                # With a labels topic, the labels handled so far end its labels range.
                labels_end = slot.state.labels_offset
                self.replayer.submit(tp, start, end, slot.learner.retrain, skip, labels_end)
        if slot.journal is not None:
            # A rebuild must never cross a drift, reset or decision: it would re-decide.
            slot.journal.snapshot(slot.learner)

    def _advance_retrains(self) -> None:
        self.replayer.advance(self.timing.retrain_budget_s)
        if not self.replayer.busy:
            # A rebuilt partition was paused until now: idleness counts from its resumption.
            self._last_record_at = self.clock()
        for slot in self.slots.values():
            if slot.learner.retrain is not None:
                slot.learner.settle_retrain()
                outcomes = slot.learner.drain_outcomes()
                if outcomes:
                    self._on_outcomes(slot, outcomes)

    # -- partitions come and go ---------------------------------------------------------

    def assigned(self, partitions: list[TopicPartition]) -> None:
        if self.labels is not None:
            partitions, labels = self.labels.split(partitions)
            self._not_co_partitioned = co_partitioned(partitions, labels)
            if self._not_co_partitioned is not None:
                log.error("assignment not co-partitioned: %s", self._not_co_partitioned)
        new = [tp for tp in partitions if tp not in self.slots]
        self.partitions.assign(partitions)
        for tp in new:
            slot = self.slots[tp]
            self._log_partition("assigned", slot, restored=slot.checkpointed_offset is not None)
        # Idle time counts from when there is something to consume: after the join and
        # after the restores, which read the checkpoint store and may take seconds.
        self._last_record_at = self.clock()

    def revoked(self, partitions: list[TopicPartition]) -> None:
        if self.labels is not None:
            partitions, labels = self.labels.split(partitions)
            for number in labels:
                self.labels.drop(number)
        for tp in partitions:
            if tp in self.slots:
                self._log_partition("revoked", self.slots[tp])
        self.partitions.revoke(partitions, keep_metrics=self._stopping)

    def _log_partition(self, kind: str, slot: PartitionSlot, **fields: object) -> None:
        """A partition arrived or left; ``offset`` is the last one its state covers."""
        last = -1 if slot.next_offset is None else slot.next_offset - 1
        tp = slot.tp
        self.run_log.write(kind, tp.topic, tp.partition, last, slot.learner.learned, **fields)

    def _log_accuracy(self) -> None:
        self._last_accuracy_at = self.clock()
        for tp, slot in self.slots.items():
            learner = slot.learner
            if slot.next_offset is not None:
                self.run_log.write(
                    learner.metric,  # "accuracy", or "mae" for a regression
                    tp.topic,
                    tp.partition,
                    slot.next_offset - 1,
                    learner.learned,
                    cumulative=learner.cumulative.get(),
                    rolling=learner.rolling.get(),
                )
