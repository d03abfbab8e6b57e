"""What a learner tells the world: plain values, turned into metrics and logs by others.

Nothing here knows about Kafka or Prometheus; ``stream`` forwards these to
``monitoring`` and to the run event log.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DriftDetected:
    """ADWIN fired and the error rate went up (a detection on improvement is not a drift)."""

    offset: int
    learned: int
    error_before: float
    error_after: float
    width: int
    action: str


@dataclass(frozen=True, slots=True)
class ModelReset:
    """The serving model was replaced by a fresh, untrained clone."""

    offset: int
    learned: int
    model_version: int


@dataclass(frozen=True, slots=True)
class RetrainRequested:
    """A retrain wants the labelled events at offsets ``[start_offset, end_offset)`` replayed."""

    start_offset: int
    end_offset: int


@dataclass(frozen=True, slots=True)
class RetrainDecided:
    """A candidate was compared with the serving model on events neither had trained on."""

    offset: int
    learned: int
    promoted: bool
    candidate_accuracy: float
    serving_accuracy: float
    trained_on: int
    evaluated_on: int
    model_version: int

    @property
    def result(self) -> str:
        return "promoted" if self.promoted else "rejected"


@dataclass(frozen=True, slots=True)
class RetrainAbandoned:
    """The candidate raised while it trained or was scored; the serving model stays."""

    offset: int
    learned: int
    reason: str
    model_version: int


Outcome = DriftDetected | ModelReset | RetrainRequested | RetrainDecided | RetrainAbandoned
