"""What a learner tells the world: plain values, turned into metrics and logs by others.

Nothing here knows about Kafka or Prometheus; ``stream`` forwards these to
``monitoring`` and to the run event log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

#: What a task's predictions are scored by (``Scores.metric``, ``RetrainDecided.metric``).
ACCURACY = "accuracy"
MAE = "mae"


class Scores(NamedTuple):
    """How a partition's predictions scored so far, read once per batch for the metrics.

    ``metric`` is ``"accuracy"`` (classification) or ``"mae"`` (regression, where the
    ``rmse_*`` fields are set too); the baseline is the no-change one
    (``learners/baseline.py``), None until it scored a label.
    """

    metric: str
    cumulative: float
    rolling: float
    baseline_cumulative: float | None = None
    baseline_rolling: float | None = None
    rmse_cumulative: float | None = None
    rmse_rolling: float | None = None


class ModelScores(NamedTuple):
    """One model's own prequential score (accuracy, or a regressor's MAE), by name, with
    ``--challenger`` (``learners/challengers.py``)."""

    name: str
    serving: bool
    cumulative: float
    rolling: float


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
    """A retrain wants the labelled events at offsets ``[start_offset, end_offset)`` replayed;
    ``warning``: it starts from the warning zone, before a drift alarm confirmed it."""

    start_offset: int
    end_offset: int
    warning: bool = False


@dataclass(frozen=True, slots=True)
class RetrainDecided:
    """A candidate was compared with the serving model on events neither had trained on;
    the scores are accuracies (``metric`` ``"accuracy"``) or mean absolute errors
    (``"mae"``). ``wins``/``losses``: events where only the candidate was right (or it
    had the smaller error) and the reverse; ``statistic`` is the paired test's z;
    ``pool`` the candidate's pool; ``reason`` why it was decided (``learners.retraining``).
    """

    offset: int
    learned: int
    promoted: bool
    candidate_score: float
    serving_score: float
    trained_on: int
    evaluated_on: int
    model_version: int
    metric: str = ACCURACY
    wins: int = 0
    losses: int = 0
    statistic: float = 0.0
    pool: str = "since-change"
    reason: str = "cap"

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


@dataclass(frozen=True, slots=True)
class ModelSwitched:
    """A challenger beat the serving model over the last ``window`` labelled events both
    predicted, and serves from now on (``learners/challengers.py``); the scores are over
    that window: accuracies, or mean absolute errors (``metric`` ``"mae"``)."""

    offset: int
    learned: int
    previous: str
    model: str
    serving_score: float
    challenger_score: float
    window: int
    model_version: int
    metric: str = ACCURACY


@dataclass(frozen=True, slots=True)
class RetrainDropped:
    """A candidate started by a drift warning saw no alarm within its bound; the serving
    model stays."""

    offset: int
    learned: int
    reason: str
    model_version: int


@dataclass(frozen=True, slots=True)
class RetrainRestarted:
    """A retrain's since-change candidate started again from a later change point (its
    own error rose, or the serving model's rose after it started: ``reason``); the fresh
    one learned the ``trained_on`` kept events since then. The job goes on."""

    offset: int
    learned: int
    pool: str
    reason: str
    trained_on: int
    model_version: int


Outcome = (
    DriftDetected
    | ModelReset
    | RetrainRequested
    | RetrainDecided
    | RetrainAbandoned
    | ModelSwitched
    | RetrainDropped
    | RetrainRestarted
)
