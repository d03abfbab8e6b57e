"""A retrain: a fresh candidate trained on the new concept, promoted only if it is better.

The job is pure bookkeeping; the application feeds it. Its life:

1. *replaying* -- the events since ADWIN's estimated change point are replayed from the
   log into the candidate (``train``); live events that arrive meanwhile are kept, in
   order, so the candidate misses nothing (``observe_live`` buffers them).
2. ``replay_finished`` trains the candidate on the kept live events and starts
   *shadowing*: for the next ``holdout_events`` labelled live events both models predict
   before either learns, so both are scored on events neither had trained on.
3. Then ``decide`` says whether the candidate scored strictly better.

>>> from river import linear_model
>>> job = RetrainJob(linear_model.LogisticRegression(), holdout_events=2)
>>> job.train({"x": 1.0}, True)
>>> job.replay_finished()
>>> job.observe_live({"x": 1.0}, True, serving_hit=False)
False
>>> job.observe_live({"x": 1.0}, True, serving_hit=False)
True
>>> job.decide().promoted
True
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from river import base

REPLAYING = "replaying"
SHADOWING = "shadowing"


@dataclass(frozen=True, slots=True)
class Verdict:
    promoted: bool
    candidate_accuracy: float
    serving_accuracy: float
    trained_on: int
    evaluated_on: int


class RetrainJob:
    """Train ``candidate`` on replayed and live events, then compare it with the serving model."""

    def __init__(
        self, candidate: base.Classifier, holdout_events: int = 300, max_buffered: int = 20_000
    ) -> None:
        if holdout_events < 1:
            raise ValueError(f"holdout_events must be at least 1, got {holdout_events}")
        self.candidate = candidate
        self.holdout_events = holdout_events
        self.max_buffered = max_buffered
        self.state = REPLAYING
        self.trained_on = 0
        # A bounded buffer: if a replay were ever slower than the live stream, the oldest
        # live events fall out rather than memory growing without end.
        self._live: deque[tuple[dict[str, Any], Any]] = deque(maxlen=max_buffered)
        self._evaluated = 0
        self._candidate_hits = 0
        self._serving_hits = 0

    def train(self, x: dict[str, Any], y: Any) -> None:
        """Learn one replayed pool event."""
        self.candidate.learn_one(x, y)
        self.trained_on += 1

    def replay_finished(self) -> None:
        """The pool is exhausted: catch up on the live events kept meanwhile, then shadow."""
        while self._live:
            x, y = self._live.popleft()
            self.train(x, y)
        self.state = SHADOWING

    def observe_live(self, x: dict[str, Any], y: Any, serving_hit: bool) -> bool:
        """Show the job one labelled live event; returns True when it is ready to ``decide``."""
        if self.state == REPLAYING:
            self._live.append((x, y))
            return False
        self._candidate_hits += self.candidate.predict_one(x) == y
        self._serving_hits += serving_hit
        self._evaluated += 1
        self.train(x, y)
        return self._evaluated >= self.holdout_events

    def decide(self) -> Verdict:
        evaluated = max(self._evaluated, 1)
        candidate_accuracy = self._candidate_hits / evaluated
        serving_accuracy = self._serving_hits / evaluated
        return Verdict(
            promoted=candidate_accuracy > serving_accuracy,
            candidate_accuracy=candidate_accuracy,
            serving_accuracy=serving_accuracy,
            trained_on=self.trained_on - self._evaluated,
            evaluated_on=self._evaluated,
        )
