"""What the daemon does when a partition's model raises on an event, or would outgrow its
feature budget.

A valid event the model cannot take (a string where the scaler wants a number, a class
the model cannot handle) is a poison event: it is dead-lettered with reason
``model_error`` (the exception's type and message in ``streamlearn.detail``) and the
partition's learner is rebuilt as if it had never seen it (``learners/journal.py``); the
daemon goes on. After ``max_consecutive`` such errors with no event learned between them
the partition is *halted*: paused, its remaining records left unhandled (their offsets
are never committed), reported in the log, on ``streamlearn_partition_halted`` and by
``/healthz``. An event that would take the model past ``--max-features`` distinct names
is dead-lettered with reason ``too_many_features`` before the model sees it.
"""

from __future__ import annotations

import logging

from learners.exceptions import FeatureBudgetExceeded
from learners.journal import Journal, Rebuilt
from monitoring.metrics import StreamlearnMetrics
from stream.daemon.partitions import PartitionSlot, lifetime_counts
from stream.daemon.publisher import Publisher
from stream.daemon.replay import Replayer
from stream.events import DeadLetter
from stream.ports import Record

log = logging.getLogger(__name__)

#: Longest exception message put in a dead letter's detail header.
MAX_DETAIL_CHARS = 500


class ModelErrors:
    """Dead-letters what a model cannot take, undoes it, and halts a hopeless partition."""

    def __init__(
        self,
        publisher: Publisher,
        metrics: StreamlearnMetrics,
        replayer: Replayer,
        max_consecutive: int = 100,
        snapshot_every: int = 10_000,
        max_features: int | None = None,
        max_pending: int = 100_000,
        label_ttl_s: float = 86_400.0,
    ) -> None:
        self.publisher = publisher
        self.metrics = metrics
        self.replayer = replayer
        self.max_consecutive = max_consecutive
        self.snapshot_every = snapshot_every
        self.max_features = max_features
        self.max_pending = max_pending
        self.label_ttl_s = label_ttl_s

    def open(self, slot: PartitionSlot) -> Journal:
        """Before a partition's first event (fresh or restored): apply the bounds of this
        run (features, predictions waiting for labels) and take the first snapshot."""
        slot.learner.limit_features(self.max_features)
        slot.learner.bound_pending(self.max_pending, self.label_ttl_s)
        slot.journal = Journal(slot.learner, self.snapshot_every)
        return slot.journal

    def on_error(self, slot: PartitionSlot, record: Record, exc: Exception) -> None:
        """The step of ``record`` (the journal's last kept event) raised ``exc``."""
        journal = slot.journal
        assert journal is not None
        if isinstance(exc, FeatureBudgetExceeded):
            journal.refuse_last()  # refused before the model saw anything
            self._dead_letter(record, "too_many_features", str(exc))
            return
        detail = f"{type(exc).__name__}: {exc}"[:MAX_DETAIL_CHARS]
        rebuilt = journal.undo_last(slot.learner)  # a retrain replaying carries on as it is
        slot.state.learner = rebuilt.learner
        self._dead_letter(record, "model_error", detail)
        _forget_reported(slot)
        self._report(slot, record, rebuilt, detail)
        if rebuilt.consecutive_errors >= self.max_consecutive:
            self._halt(slot, record, detail)

    def skipped_within(self, slot: PartitionSlot, start: int, end: int) -> frozenset[int]:
        """Offsets in ``[start, end)`` the learner never saw: a retrain replay skips them."""
        skipped = slot.journal.skipped if slot.journal is not None else ()
        return frozenset(offset for offset in skipped if start <= offset < end)

    def _dead_letter(self, record: Record, reason: str, detail: str) -> None:
        self.publisher.dead_letter(record, DeadLetter(reason, detail))
        self.metrics.dead_letters.labels(reason).inc()

    def _report(self, slot: PartitionSlot, record: Record, rebuilt: Rebuilt, detail: str) -> None:
        # One line per run of errors, not per event: a model failing on a whole stream
        # must not flood the log (each event is in the dead-letter topic anyway).
        level = logging.WARNING if rebuilt.consecutive_errors == 1 else logging.DEBUG
        log.log(
            level,
            "model error at %s[%d]@%d, event dead-lettered and undone (model rebuilt from "
            "its snapshot, %d events stepped again): %s",
            record.topic,
            record.partition,
            record.offset,
            rebuilt.replayed,
            detail,
        )
        if rebuilt.lost:
            log.error(
                "%s[%d]: %d event(s) that the model took before raised when stepped again "
                "(the model is not deterministic); left out of the model: offsets %s",
                record.topic,
                record.partition,
                len(rebuilt.lost),
                list(rebuilt.lost[:10]),
            )

    def _halt(self, slot: PartitionSlot, record: Record, detail: str) -> None:
        slot.halted = (
            f"{self.max_consecutive} consecutive model errors, the last at offset "
            f"{record.offset}: {detail}"
        )
        slot.metrics.halted.set(1)
        self.replayer.cancel(slot.tp)
        log.error(
            "%s[%d] HALTED: %s; its records are no longer handled (nothing past offset %d "
            "is committed) until the partition is reassigned or the daemon restarted",
            record.topic,
            record.partition,
            slot.halted,
            record.offset,
        )


def _forget_reported(slot: PartitionSlot) -> None:
    """A rebuild can only lower the learner's counts (events it lost again); the metric
    counters never go down, so what was reported is lowered to match."""
    reported = slot.reported
    for name, now in lifetime_counts(slot).items():
        if reported.get(name, 0) > now:
            reported[name] = now
