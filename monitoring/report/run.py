"""What a run report is drawn from: per-partition series of accuracy, drifts, resets, retrains.

A :class:`RunLog` is filled either from the daemon's run event log (:mod:`.event_log`)
or by sampling its ``/metrics`` (:mod:`.scrape`); x is always "events learned".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

PartitionKey = tuple[str, int]
RETRAIN_RESULTS = ("promoted", "rejected")


@dataclass(frozen=True)
class AccuracyPoint:
    """Prequential accuracy of one partition's learner after ``learned`` events."""

    learned: int
    cumulative: float
    rolling: float
    time: float


@dataclass(frozen=True)
class DriftPoint:
    """A drift detection; the figures are ``None`` when sampled from metrics."""

    learned: int
    time: float
    offset: int | None = None
    error_before: float | None = None
    error_after: float | None = None
    width: int | None = None
    action: str | None = None


@dataclass(frozen=True)
class ResetPoint:
    """The serving model was replaced by a fresh clone."""

    learned: int
    time: float
    offset: int | None = None
    model_version: int | None = None


@dataclass(frozen=True)
class RetrainPoint:
    """A retrain decision; ``result`` is ``"promoted"`` or ``"rejected"``."""

    learned: int
    result: str
    time: float
    offset: int | None = None
    candidate_accuracy: float | None = None
    serving_accuracy: float | None = None
    trained_on: int | None = None
    evaluated_on: int | None = None
    model_version: int | None = None


@dataclass(frozen=True)
class RebuildPoint:
    """A learner rebuilt from the log after its checkpoint was refused; ``learned`` is
    what it had learned when the rebuild ended."""

    learned: int
    time: float
    offset: int | None = None
    result: str | None = None
    reason: str | None = None


@dataclass
class PartitionSeries:
    """Everything recorded about one (topic, partition), in the order it happened."""

    accuracy: list[AccuracyPoint] = field(default_factory=list)
    drifts: list[DriftPoint] = field(default_factory=list)
    resets: list[ResetPoint] = field(default_factory=list)
    retrains: list[RetrainPoint] = field(default_factory=list)
    rebuilds: list[RebuildPoint] = field(default_factory=list)
    #: What ``accuracy`` holds: ``"accuracy"``, or ``"mae"`` for a regression (its
    #: points then hold the mean absolute errors).
    metric: str = "accuracy"

    def events_learned(self) -> int:
        """The highest ``learned`` count seen in any record of this partition."""
        points: list[Iterable[Any]] = [
            self.accuracy, self.drifts, self.resets, self.retrains, self.rebuilds
        ]  # fmt: skip
        return max((p.learned for series in points for p in series), default=0)


@dataclass
class RunLog:
    """Per-(topic, partition) series of one run, and where they came from.

    >>> run = RunLog(source="example")
    >>> run.partition("events", 0).drifts.append(DriftPoint(learned=120, time=0.0))
    >>> run.partition_keys()
    [('events', 0)]
    """

    source: str
    series: dict[PartitionKey, PartitionSeries] = field(default_factory=dict)

    def partition(self, topic: str, partition: int) -> PartitionSeries:
        """The series of ``(topic, partition)``, created empty on first use."""
        return self.series.setdefault((topic, partition), PartitionSeries())

    def partition_keys(self) -> list[PartitionKey]:
        """The partitions of the run, sorted by topic then partition number."""
        return sorted(self.series)
