"""Turn a :class:`RunLog` into plot data and a short text summary, one block per partition."""

from __future__ import annotations

from dataclasses import dataclass, field

from monitoring.exceptions import ReportError
from monitoring.report.run import PartitionKey, PartitionSeries, RunLog


@dataclass(frozen=True)
class PartitionReport:
    """Plot data and summary figures of one partition; x is always events learned."""

    topic: str
    partition: int
    learned: list[int]
    rolling: list[float]
    cumulative: list[float]
    drifts: list[int]
    resets: list[int]
    promoted: list[int]
    rejected: list[int]
    events_learned: int
    #: ``"accuracy"``, or ``"mae"`` for a regression (lower is better).
    metric: str = "accuracy"
    #: Where learners rebuilt from the log after a refused checkpoint ended their rebuild.
    rebuilds: list[int] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.topic} / partition {self.partition}"

    @property
    def metric_name(self) -> str:
        return "MAE" if self.metric == "mae" else "accuracy"

    def min_rolling(self) -> tuple[float, int] | None:
        """The worst rolling score (the lowest accuracy, the highest MAE) and the learned
        count where it was seen."""
        if not self.rolling:
            return None
        pick = max if self.metric == "mae" else min
        low = pick(range(len(self.rolling)), key=self.rolling.__getitem__)
        return self.rolling[low], self.learned[low]

    def summary_lines(self) -> list[str]:
        lines = [self.title, f"  events learned     {self.events_learned}"]
        name = f"final {self.metric_name}".ljust(18)
        if self.learned:
            lines.append(
                f"  {name} cumulative {self.cumulative[-1]:.4f}, rolling {self.rolling[-1]:.4f}"
            )
            low = self.min_rolling()
            assert low is not None
            worst = "max rolling" if self.metric == "mae" else "min rolling"
            lines.append(f"  {worst:<18} {low[0]:.4f} at {low[1]} events learned")
        else:
            lines.append(f"  {name} no {self.metric_name} samples")
        lines.append(f"  drifts             {len(self.drifts)}{_positions(self.drifts)}")
        lines.append(f"  resets             {len(self.resets)}{_positions(self.resets)}")
        lines.append(
            f"  retrains           {len(self.promoted)} promoted, {len(self.rejected)} rejected"
        )
        if self.rebuilds:  # a checkpoint was refused: the learner was rebuilt from the log
            lines.append(f"  rebuilds           {len(self.rebuilds)}{_positions(self.rebuilds)}")
        return lines


def _positions(xs: list[int], limit: int = 8) -> str:
    if not xs:
        return ""
    shown = ", ".join(str(x) for x in xs[:limit])
    more = f", ... ({len(xs) - limit} more)" if len(xs) > limit else ""
    return f" (at {shown}{more} events learned)"


@dataclass(frozen=True)
class Report:
    """A run report: one :class:`PartitionReport` per partition, sorted."""

    source: str
    partitions: list[PartitionReport]

    def summary_text(self) -> str:
        """A short multi-line summary, one block per partition."""
        total = sum(p.events_learned for p in self.partitions)
        header = (
            f"streamlearn run report ({self.source}): "
            f"{len(self.partitions)} partition(s), {total} events learned"
        )
        blocks = [header] + ["\n".join(p.summary_lines()) for p in self.partitions]
        return "\n".join(blocks) + "\n"


def _partition_report(key: PartitionKey, series: PartitionSeries) -> PartitionReport:
    return PartitionReport(
        topic=key[0],
        partition=key[1],
        learned=[p.learned for p in series.accuracy],
        rolling=[p.rolling for p in series.accuracy],
        cumulative=[p.cumulative for p in series.accuracy],
        drifts=[d.learned for d in series.drifts],
        resets=[r.learned for r in series.resets],
        promoted=[r.learned for r in series.retrains if r.result == "promoted"],
        rejected=[r.learned for r in series.retrains if r.result == "rejected"],
        events_learned=series.events_learned(),
        metric=series.metric,
        rebuilds=[r.learned for r in series.rebuilds],
    )


def build_report(run: RunLog) -> Report:
    """Turn a run into plot data and a summary.

    >>> from monitoring.report.run import AccuracyPoint, DriftPoint
    >>> run = RunLog(source="example")
    >>> series = run.partition("events", 0)
    >>> series.accuracy += [AccuracyPoint(100, 0.9, 0.9, 0.0), AccuracyPoint(200, 0.8, 0.7, 1.0)]
    >>> series.drifts.append(DriftPoint(learned=180, time=0.9))
    >>> report = build_report(run)
    >>> report.partitions[0].drifts, report.partitions[0].min_rolling()
    ([180], (0.7, 200))
    """
    if not run.series:
        raise ReportError(f"no partition data in {run.source}: nothing to report")
    return Report(
        source=run.source,
        partitions=[_partition_report(key, run.series[key]) for key in run.partition_keys()],
    )
