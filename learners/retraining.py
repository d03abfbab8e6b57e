"""A retrain: a fresh candidate trained on the new concept, promoted only if it is better.

The job is pure bookkeeping; the application feeds it. Its life:

1. *replaying* -- the events since ADWIN's estimated change point are replayed from the
   log into the candidate (``train``). Live events that arrive meanwhile are kept, in
   order, with whether the serving model got them right (``observe_live``).
2. ``replay_finished`` starts *shadowing*: the candidate predicts each kept live event
   before learning it, and then each new one, until ``holdout_events`` were scored. The
   serving model also predicted each of them before learning it, so both are scored on
   the most recent events neither had trained on. Kept events are what make a retrain
   finish while the daemon catches up on a backlog, when no event is newer than them.
3. Once ``ready``, ``decide`` says whether the candidate scored strictly better: a higher
   accuracy (:class:`RetrainJob`, classification) or a lower mean absolute error
   (:class:`RegressionRetrainJob`).

A candidate that raises on an event (while replaying or shadowing) cannot be trusted to
be whole: the job is *abandoned* (``abandoned`` says why) and is ``done`` at once; the
learner drops it and keeps its serving model.

>>> from river import linear_model
>>> job = RetrainJob(linear_model.LogisticRegression(), holdout_events=2)
>>> job.train({"x": 1.0}, True)
>>> job.observe_live({"x": 1.0}, True, serving=False)
False
>>> job.replay_finished()
>>> job.ready
False
>>> job.observe_live({"x": 1.0}, True, serving=False)
True
>>> job.decide().promoted
True
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from river import base

from learners.outcomes import ACCURACY, MAE

REPLAYING = "replaying"
SHADOWING = "shadowing"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision, with both models' scores on the holdout (accuracies, or MAEs)."""

    promoted: bool
    candidate_score: float
    serving_score: float
    trained_on: int
    evaluated_on: int
    metric: str = ACCURACY


class RetrainJob:
    """Train ``candidate`` on replayed and live events, then compare it with the serving model.

    Classification: the serving model's score of a live event is whether it was right.
    """

    #: Why the candidate was given up (it raised), else None. A class attribute too, so
    #: jobs pickled before it existed read None.
    abandoned: str | None = None

    def __init__(
        self,
        candidate: base.Classifier,
        holdout_events: int = 300,
        max_buffered: int = 20_000,
        pool: tuple[int, int] = (0, 0),
    ) -> None:
        if holdout_events < 1:
            raise ValueError(f"holdout_events must be at least 1, got {holdout_events}")
        self.candidate = candidate
        self.holdout_events = holdout_events
        self.max_buffered = max_buffered
        #: Offsets ``[start, end)`` of the partition replayed into the candidate.
        self.pool = pool
        self.state = REPLAYING
        self.trained_on = 0
        # A bounded buffer: if a replay were ever slower than the live stream, the oldest
        # live events fall out rather than memory growing without end.
        self._live: deque[tuple[dict[Any, Any], Any, Any]] = deque(maxlen=max_buffered)
        self._evaluated = 0
        self._candidate_hits = 0
        self._serving_hits = 0

    def restart(self, candidate: base.Classifier) -> None:
        """Begin the replay again with a fresh candidate (a restored checkpoint caught this
        job mid-replay); the live events kept so far stay, in order."""
        self.candidate = candidate
        self.trained_on = 0
        self.state = REPLAYING

    def train(self, x: dict[Any, Any], y: Any) -> None:
        """Learn one replayed pool event (nothing once the job is abandoned)."""
        if self.abandoned is not None:
            return
        try:
            self.candidate.learn_one(x, y)
        except Exception as exc:  # any model error: the candidate is no longer whole
            self._abandon(exc)
            return
        self.trained_on += 1

    def replay_finished(self) -> None:
        """The pool is exhausted: score and learn the live events kept meanwhile."""
        self.state = SHADOWING
        while self._live and self.abandoned is None:
            self._shadow(*self._live.popleft())

    def observe_live(self, x: dict[Any, Any], y: Any, serving: Any) -> bool:
        """Show the job one labelled live event and how the serving model's prediction of
        it scored (right or not; its absolute error for a regression); returns True once
        the job is ``done``."""
        if self.abandoned is not None:
            return True
        if self.state == REPLAYING:
            self._live.append((x, y, serving))
            return False
        self._shadow(x, y, serving)
        return self.done

    @property
    def ready(self) -> bool:
        return self._evaluated >= self.holdout_events

    @property
    def done(self) -> bool:
        """Ready to decide, or abandoned: either way the learner settles the job."""
        return self.abandoned is not None or self.ready

    def _abandon(self, exc: Exception) -> None:
        self.abandoned = f"{type(exc).__name__}: {exc}"
        self._live.clear()

    def _shadow(self, x: dict[Any, Any], y: Any, serving_hit: bool) -> None:
        if self.abandoned is not None:
            return
        if not self.ready:
            try:
                candidate_hit = self.candidate.predict_one(x) == y
            except Exception as exc:
                self._abandon(exc)
                return
            self._candidate_hits += candidate_hit
            self._serving_hits += serving_hit
            self._evaluated += 1
        self.train(x, y)

    def decide(self) -> Verdict:
        evaluated = max(self._evaluated, 1)
        candidate_accuracy = self._candidate_hits / evaluated
        serving_accuracy = self._serving_hits / evaluated
        return Verdict(
            promoted=candidate_accuracy > serving_accuracy,
            candidate_score=candidate_accuracy,
            serving_score=serving_accuracy,
            trained_on=self.trained_on - self._evaluated,
            evaluated_on=self._evaluated,
        )


class RegressionRetrainJob(RetrainJob):
    """A retrain of a regressor: the candidate is promoted only if its mean absolute error
    on the holdout is strictly lower than the serving model's.

    >>> from river import linear_model
    >>> job = RegressionRetrainJob(linear_model.LinearRegression(), holdout_events=1)
    >>> job.replay_finished()
    >>> job.observe_live({"x": 1.0}, 0.5, serving=2.0)  # untrained, it predicts 0: error 0.5
    True
    >>> verdict = job.decide()
    >>> verdict.promoted, verdict.candidate_score, verdict.serving_score, verdict.metric
    (True, 0.5, 2.0, 'mae')
    """

    #: Sums of the absolute errors on the holdout (set on the instance from the first).
    _candidate_error = 0.0
    _serving_error = 0.0

    def _shadow(self, x: dict[Any, Any], y: Any, serving_error: Any) -> None:
        if self.abandoned is not None:
            return
        if not self.ready:
            try:
                candidate_error = abs(self.candidate.predict_one(x) - y)
            except Exception as exc:
                self._abandon(exc)
                return
            self._candidate_error += candidate_error
            self._serving_error += serving_error
            self._evaluated += 1
        self.train(x, y)

    def decide(self) -> Verdict:
        evaluated = max(self._evaluated, 1)
        candidate_mae = self._candidate_error / evaluated
        serving_mae = self._serving_error / evaluated
        return Verdict(
            promoted=self._candidate_error < self._serving_error,
            candidate_score=candidate_mae,
            serving_score=serving_mae,
            trained_on=self.trained_on - self._evaluated,
            evaluated_on=self._evaluated,
            metric=MAE,
        )
