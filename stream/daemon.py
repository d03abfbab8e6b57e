"""The daemon loop: poll, test-then-train each partition's batch, publish, commit.

One :class:`PartitionLearner` per assigned partition. The loop polls big batches, hands
each partition's records to its learner, publishes predictions and dead letters, updates
metrics once per batch, feeds a running retrain for a bounded slice of time, and commits
offsets (after a producer flush) for what it handled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from learners.outcomes import DriftDetected, ModelReset, Outcome, RetrainDecided, RetrainRequested
from learners.prequential import PartitionLearner
from learners.retraining import REPLAYING
from monitoring.metrics import PartitionMetrics, StreamlearnMetrics
from stream.event_log import EventLog
from stream.events import DeadLetter, decode
from stream.publisher import Publisher
from stream.replay import Replayer

log = logging.getLogger(__name__)

LearnerFactory = Callable[[TopicPartition], PartitionLearner]


@dataclass
class PartitionSlot:
    """A partition's learner with its bound metrics and the next offset to handle."""

    tp: TopicPartition
    learner: PartitionLearner
    metrics: PartitionMetrics
    next_offset: int | None = None
    committed_offset: int | None = None
    # Learner counts already added to the metric counters.
    reported_learned: int = 0
    reported_predicted: int = 0
    # Records polled but held back while the partition's retrain replays.
    backlog: list[ConsumerRecord] = field(default_factory=list)


@dataclass(frozen=True)
class LoopTiming:
    poll_timeout_s: float = 0.5
    commit_interval_s: float = 1.0
    status_interval_s: float = 10.0
    accuracy_log_interval_s: float = 2.0
    retrain_budget_s: float = 0.1
    live_slice_during_replay: int = 1000
    stop_after_idle_s: float | None = None


class Daemon:
    """Runs until stopped, idle for ``stop_after_idle_s``, or a send fails."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        topic: str,
        learner_factory: LearnerFactory,
        publisher: Publisher,
        metrics: StreamlearnMetrics,
        replayer: Replayer,
        event_log: EventLog,
        timing: LoopTiming,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.learner_factory = learner_factory
        self.publisher = publisher
        self.metrics = metrics
        self.replayer = replayer
        self.event_log = event_log
        self.timing = timing
        self.clock = clock
        self.slots: dict[TopicPartition, PartitionSlot] = {}
        self._stopping = False
        # None until the first assignment: joining a group can take longer than the idle limit.
        self._last_record_at: float | None = None
        self._last_commit_at = clock()
        self._last_status_at = clock()
        self._last_accuracy_at = clock()
        self._status_handled = 0

    # -- lifecycle --------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its batch, flush, commit and return (signal-safe)."""
        self._stopping = True

    def ready(self) -> tuple[bool, str]:
        if self._stopping:
            return False, "stopping"
        return True, f"consuming {len(self.slots)} partition(s) of {self.topic}"

    def run(self) -> int:
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        self.metrics.ready.set(1)
        log.info("consuming %s", self.topic)
        try:
            while not self._stopping:
                self._cycle()
                if self._idle_too_long():
                    log.info("no new records for %.1f s; stopping", self.timing.stop_after_idle_s)
                    break
            self._stopping = True
            self._commit()
        finally:
            self.metrics.ready.set(0)
            self.event_log.close()
        return 0

    def _idle_too_long(self) -> bool:
        idle, last = self.timing.stop_after_idle_s, self._last_record_at
        return idle is not None and last is not None and self.clock() - last >= idle

    def _cycle(self) -> None:
        batches = self.consumer.poll(timeout_ms=int(self.timing.poll_timeout_s * 1000))
        if batches:
            self._last_record_at = self.clock()
        for tp, records in batches.items():
            slot = self.slots.get(tp)
            if slot is not None:
                self._feed(slot, records)
        if self.replayer.busy:
            self._advance_retrains()
        for slot in list(self.slots.values()):
            if slot.backlog:
                self._drain_backlog(slot)
        now = self.clock()
        if now - self._last_commit_at >= self.timing.commit_interval_s:
            self._commit()
        if now - self._last_accuracy_at >= self.timing.accuracy_log_interval_s:
            self._log_accuracy()
        if now - self._last_status_at >= self.timing.status_interval_s:
            self._log_status(now - self._last_status_at)

    # -- the hot path -----------------------------------------------------------------

    def _feed(self, slot: PartitionSlot, records: list[ConsumerRecord]) -> None:
        """Handle records in order; while the partition's retrain replays, hold them back."""
        while records:
            if _replaying(slot):
                self._hold(slot, records)
                return
            done = self._handle(slot, records)
            records = records[done:]

    def _hold(self, slot: PartitionSlot, records: list[ConsumerRecord]) -> None:
        # Pausing the partition bounds the backlog to one poll's worth of records.
        slot.backlog.extend(records)
        self.consumer.pause(slot.tp)

    def _drain_backlog(self, slot: PartitionSlot) -> None:
        """While a replay runs, serve a slice per cycle (consumption goes on, but does not
        outrun the candidate); once it is done, serve the rest and resume the partition."""
        limit = self.timing.live_slice_during_replay if _replaying(slot) else len(slot.backlog)
        records = slot.backlog[:limit]
        del slot.backlog[:limit]
        while records:
            records = records[self._handle(slot, records):]
            if records and _replaying(slot):
                slot.backlog[:0] = records
                break
        if not slot.backlog:
            self.consumer.resume(slot.tp)

    def _handle(self, slot: PartitionSlot, records: list[ConsumerRecord]) -> int:
        """Test-then-train ``records`` in order; stop early, after the record at which the
        learner had something to report (a drift may need the rest held back)."""
        started = time.perf_counter()
        learner, publisher = slot.learner, self.publisher
        step = learner.step
        publish = publisher.predictions_topic is not None
        dead = handled = 0
        newest_timestamp = None
        for record in records:
            handled += 1
            event = decode(record.value)
            if type(event) is DeadLetter:
                publisher.dead_letter(record, event)
                self.metrics.dead_letters.labels(event.reason).inc()
                dead += 1
                continue
            y_pred, proba = step(event.features, event.label, record.offset)  # type: ignore[union-attr]
            if publish:
                publisher.prediction(record, event, y_pred, proba, learner.model_version)  # type: ignore[arg-type]
            newest_timestamp = event.timestamp  # type: ignore[union-attr]
            if learner.outcomes:
                break
        slot.next_offset = records[handled - 1].offset + 1
        self._record_batch(slot, handled, dead, started, newest_timestamp)
        outcomes = learner.drain_outcomes()
        if outcomes:
            self._on_outcomes(slot, outcomes)
        return handled

    def _record_batch(
        self, slot: PartitionSlot, count: int, dead: int, started: float, newest: float | None
    ) -> None:
        m, learner = slot.metrics, slot.learner
        m.learned.inc(learner.learned - slot.reported_learned)
        m.predicted.inc(learner.predicted - slot.reported_predicted)
        slot.reported_learned, slot.reported_predicted = learner.learned, learner.predicted
        if dead:
            m.dead_lettered.inc(dead)
        if learner.cumulative.total:
            m.set_accuracy(learner.cumulative.get(), learner.rolling.get())
        m.adwin_width.set(learner.detector.width)
        m.model_version.set(learner.model_version)
        m.processing.observe((time.perf_counter() - started) / count)
        if newest is not None:
            m.latency.observe(max(time.time() - newest, 0.0))
        highwater = self.consumer.highwater(slot.tp)
        if highwater is not None and slot.next_offset is not None:
            m.lag.set(max(highwater - slot.next_offset, 0))

    def _on_outcomes(self, slot: PartitionSlot, outcomes: list[Outcome]) -> None:
        slot.metrics.record_outcomes(outcomes)
        tp = slot.tp
        for outcome in outcomes:
            self.event_log.outcome(tp.topic, tp.partition, outcome)
            _log_outcome(tp, outcome)
            if isinstance(outcome, RetrainRequested) and slot.learner.retrain is not None:
                self.replayer.submit(tp, outcome.start_offset, outcome.end_offset,
                                     slot.learner.retrain)

    def _advance_retrains(self) -> None:
        self.replayer.advance(self.timing.retrain_budget_s)
        for slot in self.slots.values():
            if slot.learner.retrain is not None:
                slot.learner.settle_retrain()
                outcomes = slot.learner.drain_outcomes()
                if outcomes:
                    self._on_outcomes(slot, outcomes)

    # -- offsets ----------------------------------------------------------------------

    def _commit(self, only: list[TopicPartition] | None = None) -> None:
        """Flush the producer, then commit what was handled: nothing unpublished is committed."""
        self._last_commit_at = self.clock()
        offsets = {
            tp: OffsetAndMetadata(slot.next_offset, "", -1)
            for tp, slot in self.slots.items()
            if slot.next_offset is not None
            and slot.next_offset != slot.committed_offset
            and (only is None or tp in only)
        }
        if not offsets:
            return
        self.publisher.flush()
        self.consumer.commit(offsets)
        for tp, meta in offsets.items():
            self.slots[tp].committed_offset = meta.offset

    # -- partitions come and go ---------------------------------------------------------

    def assign(self, partitions: list[TopicPartition]) -> None:
        # Idle time counts from when there is something to consume, not from the join.
        self._last_record_at = self.clock()
        for tp in partitions:
            if tp in self.slots:
                continue
            self.slots[tp] = PartitionSlot(
                tp, self.learner_factory(tp), self.metrics.partition(tp.topic, tp.partition)
            )
            log.info("assigned %s[%d]: new learner", tp.topic, tp.partition)

    def revoke(self, partitions: list[TopicPartition]) -> None:
        owned = [tp for tp in partitions if tp in self.slots]
        try:
            self._commit(only=owned)
        except Exception:  # the commit may fail mid-rebalance; the learner still goes
            log.exception("commit on revoke failed for %s", owned)
        for tp in owned:
            self.replayer.cancel(tp)
            del self.slots[tp]
            # At shutdown the last values stay for the final scrape; in a rebalance they
            # go, so the instance that takes the partition over is the only one exporting it.
            if not self._stopping:
                self.metrics.forget_partition(tp.topic, tp.partition)
            log.info("revoked %s[%d]", tp.topic, tp.partition)

    # -- what a person reads ------------------------------------------------------------

    def _log_accuracy(self) -> None:
        self._last_accuracy_at = self.clock()
        for tp, slot in self.slots.items():
            learner = slot.learner
            if slot.next_offset is not None:
                self.event_log.write("accuracy", tp.topic, tp.partition, slot.next_offset - 1,
                                     learner.learned, cumulative=learner.cumulative.get(),
                                     rolling=learner.rolling.get())

    def _log_status(self, elapsed: float) -> None:
        """One line a person can read: throughput, accuracy, drifts and decisions."""
        self._last_status_at = self.clock()
        slots = sorted(self.slots.values(), key=lambda slot: slot.tp.partition)
        handled = sum(slot.learner.learned + slot.learner.predicted for slot in slots)
        rate = (handled - self._status_handled) / elapsed if elapsed > 0 else 0.0
        self._status_handled = handled
        accuracy = " ".join(
            f"p{slot.tp.partition}={slot.learner.rolling.get():.3f}" for slot in slots
        )
        log.info(
            "status: %.0f events/s, %d partition(s), rolling accuracy %s, drifts %d, "
            "model versions %s",
            rate, len(slots), accuracy or "-", sum(slot.learner.drifts for slot in slots),
            ",".join(str(slot.learner.model_version) for slot in slots) or "-",
        )


def _replaying(slot: PartitionSlot) -> bool:
    job = slot.learner.retrain
    return job is not None and job.state == REPLAYING


def _log_outcome(tp: TopicPartition, outcome: Outcome) -> None:
    where = f"{tp.topic}[{tp.partition}]@{getattr(outcome, 'offset', '?')}"
    if isinstance(outcome, DriftDetected):
        log.warning("drift at %s: error %.3f -> %.3f over the last %d events; action %s",
                    where, outcome.error_before, outcome.error_after, outcome.width,
                    outcome.action)
    elif isinstance(outcome, ModelReset):
        log.warning("model reset at %s: now v%d", where, outcome.model_version)
    elif isinstance(outcome, RetrainRequested):
        log.info("retrain of %s[%d]: replaying offsets %d..%d", tp.topic, tp.partition,
                 outcome.start_offset, outcome.end_offset - 1)
    elif isinstance(outcome, RetrainDecided):
        log.warning("retrain %s at %s: candidate %.3f vs serving %.3f on %d held-out events "
                    "(candidate trained on %d); model v%d", outcome.result.upper(), where,
                    outcome.candidate_accuracy, outcome.serving_accuracy, outcome.evaluated_on,
                    outcome.trained_on, outcome.model_version)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.daemon.revoke(list(revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.daemon.assign(list(assigned))
