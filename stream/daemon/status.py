"""What a person reads: one log line per decision, and a periodic status line."""

from __future__ import annotations

import logging
from typing import assert_never

from learners.outcomes import (
    DriftDetected,
    ModelReset,
    ModelSwitched,
    Outcome,
    RetrainAbandoned,
    RetrainDecided,
    RetrainDropped,
    RetrainRequested,
    RetrainRestarted,
)
from stream.daemon.partitions import PartitionSlot
from stream.ports import TopicPartition

log = logging.getLogger("stream.daemon.loop")


def log_outcome(tp: TopicPartition, outcome: Outcome) -> None:
    where = f"{tp.topic}[{tp.partition}]@{getattr(outcome, 'offset', '?')}"
    match outcome:
        case DriftDetected():
            log.warning(
                "drift at %s: error %.3f -> %.3f over the last %d events; action %s",
                where,
                outcome.error_before,
                outcome.error_after,
                outcome.width,
                outcome.action,
            )
        case ModelReset():
            log.warning("model reset at %s: now v%d", where, outcome.model_version)
        case RetrainRequested():
            log.info(
                "retrain of %s[%d]%s: replaying offsets %d..%d",
                tp.topic,
                tp.partition,
                " on a drift warning" if outcome.warning else "",
                outcome.start_offset,
                outcome.end_offset - 1,
            )
        case RetrainDecided():
            log.warning(
                "retrain %s at %s (%s): candidate %s %.3f vs serving %.3f on %d events, "
                "%d won / %d lost, z %.2f (%s candidate trained on %d); model v%d",
                outcome.result.upper(),
                where,
                outcome.reason,
                outcome.metric,
                outcome.candidate_score,
                outcome.serving_score,
                outcome.evaluated_on,
                outcome.wins,
                outcome.losses,
                outcome.statistic,
                outcome.pool,
                outcome.trained_on,
                outcome.model_version,
            )
        case RetrainAbandoned():
            log.warning(
                "retrain ABANDONED at %s: the candidate raised (%s); model v%d serves on",
                where,
                outcome.reason,
                outcome.model_version,
            )
        case ModelSwitched():
            log.warning(
                "model SWITCHED at %s: challenger %r %s %.3f vs serving %r %.3f over the last "
                "%d labelled events; it serves as model v%d",
                where,
                outcome.model,
                outcome.metric,
                outcome.challenger_score,
                outcome.previous,
                outcome.serving_score,
                outcome.window,
                outcome.model_version,
            )
        case RetrainDropped():
            log.info("retrain DROPPED at %s: %s; model v%d serves on", where, outcome.reason,
                     outcome.model_version)  # fmt: skip
        case RetrainRestarted():
            log.info("retrain candidate RESTARTED at %s (%s): the %s candidate learns again "
                     "from the %d events since; model v%d serves on", where, outcome.reason,
                     outcome.pool, outcome.trained_on, outcome.model_version)  # fmt: skip
        case _:
            assert_never(outcome)


class StatusLine:
    """Throughput, accuracy, drifts and model versions, every ``interval_s``."""

    def __init__(self) -> None:
        self._handled = 0

    def log(self, slots: list[PartitionSlot], elapsed_s: float) -> None:
        slots = sorted(slots, key=lambda slot: slot.tp.partition)
        handled = sum(slot.learner.learned + slot.learner.predicted for slot in slots)
        rate = (handled - self._handled) / elapsed_s if elapsed_s > 0 else 0.0
        self._handled = handled
        scores = " ".join(
            f"p{s.tp.partition}={s.learner.metric}:{s.learner.rolling.get():.3f}" for s in slots
        )
        log.info(
            "status: %.0f events/s, %d partition(s), rolling scores %s, drifts %d, "
            "model versions %s",
            rate,
            len(slots),
            scores or "-",
            sum(s.learner.drifts for s in slots),
            ",".join(str(s.learner.model_version) for s in slots) or "-",
        )
