"""Run reports: accuracy over events learned, with drifts, resets and retrains marked.

A report is built from a :class:`RunLog`, which comes either from the daemon's
JSON-lines run event log (:func:`load_event_log`) or from sampling its Prometheus
``/metrics`` endpoint for a while (:func:`sample_metrics`). :func:`build_report`
turns the run into plot data and a text summary; :func:`render_png` draws it.

The x axis is always "events learned" rather than wall-clock time, so a drift
marker lands where the stream changed no matter how fast the daemon ran.

matplotlib is imported inside :func:`render_png` only, so importing
:mod:`monitoring` stays cheap for the daemon.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitoring.exceptions import ReportError

__all__ = [
    "AccuracyPoint",
    "DriftPoint",
    "PartitionReport",
    "PartitionSeries",
    "Report",
    "ResetPoint",
    "RetrainPoint",
    "RunLog",
    "add_report_arguments",
    "build_figure",
    "build_report",
    "load_event_log",
    "render_png",
    "run_report",
    "sample_metrics",
]

PartitionKey = tuple[str, int]
RETRAIN_RESULTS = ("promoted", "rejected")


# --- the run --------------------------------------------------------------------------------


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


@dataclass
class PartitionSeries:
    """Everything recorded about one (topic, partition), in the order it happened."""

    accuracy: list[AccuracyPoint] = field(default_factory=list)
    drifts: list[DriftPoint] = field(default_factory=list)
    resets: list[ResetPoint] = field(default_factory=list)
    retrains: list[RetrainPoint] = field(default_factory=list)

    def events_learned(self) -> int:
        """The highest ``learned`` count seen in any record of this partition."""
        points: list[Iterable[Any]] = [self.accuracy, self.drifts, self.resets, self.retrains]
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


# --- reading the run event log ----------------------------------------------------------------


class _BadRecord(ValueError):
    """One line of the event log does not follow the documented format."""


def _number(value: Any) -> float:
    # bool is an int subclass in Python; true/false is never a figure here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadRecord(f"expected a number, got {value!r}")
    return float(value)


def _integer(value: Any) -> int:
    # Writers may emit counts as floats (ADWIN's width is a float in River); accept 512.0.
    number = _number(value)
    if not number.is_integer():
        raise _BadRecord(f"expected an integer, got {value!r}")
    return int(number)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _BadRecord(f"expected a string, got {value!r}")
    return value


def _get(record: dict[str, Any], name: str, convert: Callable[[Any], Any]) -> Any:
    if name not in record:
        raise _BadRecord(f"missing field {name!r}")
    try:
        return convert(record[name])
    except _BadRecord as error:
        raise _BadRecord(f"field {name!r}: {error}") from None


def _add_accuracy(series: PartitionSeries, record: dict[str, Any], base: dict[str, Any]) -> None:
    series.accuracy.append(
        AccuracyPoint(
            learned=base["learned"],
            time=base["time"],
            cumulative=_get(record, "cumulative", _number),
            rolling=_get(record, "rolling", _number),
        )
    )


def _add_drift(series: PartitionSeries, record: dict[str, Any], base: dict[str, Any]) -> None:
    series.drifts.append(
        DriftPoint(
            **base,
            error_before=_get(record, "error_before", _number),
            error_after=_get(record, "error_after", _number),
            width=_get(record, "width", _integer),
            action=_get(record, "action", _text),
        )
    )


def _add_reset(series: PartitionSeries, record: dict[str, Any], base: dict[str, Any]) -> None:
    series.resets.append(ResetPoint(**base, model_version=_get(record, "model_version", _integer)))


def _add_retrain(series: PartitionSeries, record: dict[str, Any], base: dict[str, Any]) -> None:
    result = _get(record, "result", _text)
    if result not in RETRAIN_RESULTS:
        raise _BadRecord(f"field 'result': expected one of {RETRAIN_RESULTS}, got {result!r}")
    series.retrains.append(
        RetrainPoint(
            **base,
            result=result,
            candidate_accuracy=_get(record, "candidate_accuracy", _number),
            serving_accuracy=_get(record, "serving_accuracy", _number),
            trained_on=_get(record, "trained_on", _integer),
            evaluated_on=_get(record, "evaluated_on", _integer),
            model_version=_get(record, "model_version", _integer),
        )
    )


_KINDS = {
    "accuracy": _add_accuracy,
    "drift": _add_drift,
    "reset": _add_reset,
    "retrain": _add_retrain,
}


def _add_line(run: RunLog, line: str) -> None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise _BadRecord(f"not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise _BadRecord("expected a JSON object")
    add = _KINDS.get(_get(record, "kind", _text))
    if add is None:
        return  # a kind from a newer daemon: skip it so old reports keep working
    topic, partition = _get(record, "topic", _text), _get(record, "partition", _integer)
    base = {
        "learned": _get(record, "learned", _integer),
        "time": _get(record, "time", _number),
        "offset": _get(record, "offset", _integer),
    }
    add(run.partition(topic, partition), record, base)


def load_event_log(path: str | Path) -> RunLog:
    """Read a JSON-lines run event log (see docs/architecture.md, "Run event log").

    Blank lines and records of unknown ``kind`` are skipped; any other line that
    does not follow the format raises :class:`ReportError` naming its line number.
    """
    run = RunLog(source=str(path))
    try:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    _add_line(run, line)
                except _BadRecord as error:
                    raise ReportError(f"{path}, line {number}: {error}") from None
    except OSError as error:
        raise ReportError(f"cannot read event log {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ReportError(f"event log {path} is not UTF-8 text: {error}") from None
    return run


# --- sampling /metrics ------------------------------------------------------------------------

# counter sample name -> the kind of point an increase of it records.
_COUNTERS = {
    "streamlearn_drifts_total": "drift",
    "streamlearn_model_resets_total": "reset",
    "streamlearn_retrains_total": "retrain",
}


@dataclass
class _Scrape:
    """The figures of one ``/metrics`` response that a run report needs."""

    learned: dict[PartitionKey, int] = field(default_factory=dict)
    accuracy: dict[PartitionKey, dict[str, float]] = field(default_factory=dict)
    # (kind, key, result or "") -> counter value
    counters: dict[tuple[str, PartitionKey, str], float] = field(default_factory=dict)


def _parse_scrape(text: str) -> _Scrape:
    from prometheus_client.parser import text_string_to_metric_families

    scrape = _Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if "topic" not in labels or "partition" not in labels:
                continue
            key = (labels["topic"], int(labels["partition"]))
            if sample.name == "streamlearn_events_total" and labels.get("outcome") == "learned":
                scrape.learned[key] = int(sample.value)
            elif sample.name == "streamlearn_accuracy":
                scrape.accuracy.setdefault(key, {})[labels.get("window", "")] = sample.value
            elif sample.name in _COUNTERS:
                kind = _COUNTERS[sample.name]
                scrape.counters[kind, key, labels.get("result", "")] = sample.value
    return scrape


def _metrics_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ReportError(f"metrics URL must be http(s)://host:port[/metrics], got {url!r}")
    # People paste the exporter's address; the exposition lives on /metrics.
    return url.rstrip("/") + "/metrics" if parts.path in ("", "/") else url


def _fetch(url: str, timeout: float) -> _Scrape:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read().decode("utf-8")
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise ReportError(f"cannot scrape {url}: {reason}") from None
    try:
        return _parse_scrape(body)
    except (ValueError, KeyError) as error:
        raise ReportError(f"{url} did not answer Prometheus text: {error}") from None


class _MetricsRecorder:
    """Turns successive scrapes into a RunLog.

    The first scrape is the baseline: counts already there happened before sampling
    and are not drawn. A labelled child that appears later was created by its first
    increment, so its baseline is 0.
    """

    def __init__(self, run: RunLog) -> None:
        self.run = run
        self.previous: dict[tuple[str, PartitionKey, str], float] | None = None
        self.last_learned: dict[PartitionKey, int] = {}

    def observe(self, scrape: _Scrape, now: float) -> None:
        self.last_learned.update(scrape.learned)
        for key, learned in scrape.learned.items():
            self._record_accuracy(key, learned, scrape.accuracy.get(key, {}), now)
        if self.previous is not None:
            for counter, value in scrape.counters.items():
                before = self.previous.get(counter, 0.0)
                # A drop means the daemon restarted; like PromQL's increase(), count from 0.
                increase = value - before if value >= before else value
                self._record_events(counter, round(increase), now)
        self.previous = dict(scrape.counters)

    def _record_accuracy(
        self, key: PartitionKey, learned: int, windows: dict[str, float], now: float
    ) -> None:
        if "cumulative" not in windows or "rolling" not in windows:
            return
        series = self.run.partition(*key)
        if series.accuracy and series.accuracy[-1].learned == learned:
            return  # nothing learned since the last sample: one point is enough
        point = AccuracyPoint(learned, windows["cumulative"], windows["rolling"], now)
        series.accuracy.append(point)

    def _record_events(
        self, counter: tuple[str, PartitionKey, str], count: int, now: float
    ) -> None:
        kind, key, result = counter
        series = self.run.partition(*key)
        learned = self.last_learned.get(key, 0)
        for _ in range(count):
            if kind == "drift":
                series.drifts.append(DriftPoint(learned=learned, time=now))
            elif kind == "reset":
                series.resets.append(ResetPoint(learned=learned, time=now))
            elif result in RETRAIN_RESULTS:
                series.retrains.append(RetrainPoint(learned=learned, result=result, time=now))


def sample_metrics(url: str, duration_s: float, interval_s: float) -> RunLog:
    """Scrape the daemon's ``/metrics`` every ``interval_s`` for ``duration_s`` seconds.

    A drift, reset or retrain is placed at the learned count of the scrape in
    which its counter went up, so its position is accurate to one interval.
    Scrapes once at the start and once at the end; every request is bounded by
    a timeout so the call returns about ``duration_s`` after it started.
    """
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ReportError(f"duration must be a non-negative number of seconds, got {duration_s}")
    if not math.isfinite(interval_s) or interval_s <= 0:
        raise ReportError(f"interval must be a positive number of seconds, got {interval_s}")
    url = _metrics_url(url)
    run = RunLog(source=url)
    recorder = _MetricsRecorder(run)
    deadline = time.monotonic() + duration_s
    while True:
        remaining = deadline - time.monotonic()
        recorder.observe(_fetch(url, timeout=min(max(remaining, 1.0), 10.0)), time.time())
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return run
        time.sleep(min(interval_s, remaining))


# --- the report -------------------------------------------------------------------------------


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

    @property
    def title(self) -> str:
        return f"{self.topic} / partition {self.partition}"

    def min_rolling(self) -> tuple[float, int] | None:
        """The lowest rolling accuracy and the learned count where it was seen."""
        if not self.rolling:
            return None
        low = min(range(len(self.rolling)), key=self.rolling.__getitem__)
        return self.rolling[low], self.learned[low]

    def summary_lines(self) -> list[str]:
        lines = [self.title, f"  events learned     {self.events_learned}"]
        if self.learned:
            lines.append(
                f"  final accuracy     cumulative {self.cumulative[-1]:.4f}, "
                f"rolling {self.rolling[-1]:.4f}"
            )
            low = self.min_rolling()
            assert low is not None
            lines.append(f"  min rolling        {low[0]:.4f} at {low[1]} events learned")
        else:
            lines.append("  final accuracy     no accuracy samples")
        lines.append(f"  drifts             {len(self.drifts)}{_positions(self.drifts)}")
        lines.append(f"  resets             {len(self.resets)}{_positions(self.resets)}")
        lines.append(
            f"  retrains           {len(self.promoted)} promoted, {len(self.rejected)} rejected"
        )
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
    )


def build_report(run: RunLog) -> Report:
    """Turn a run into plot data and a summary.

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


# --- drawing ----------------------------------------------------------------------------------

# kind -> (attribute of PartitionReport, legend label, axvline style). Drifts span the
# whole height on top; resets and retrains span a band each (axes fraction), so a
# reset or retrain decided at the very event of its drift stays visible beside it.
_MARKERS: list[tuple[str, str, dict[str, Any]]] = [
    ("drifts", "drift", {"color": "tab:red", "linestyle": "--", "linewidth": 1.3, "zorder": 4}),
    ("resets", "reset", {"color": "tab:purple", "linewidth": 3, "ymin": 0.0, "ymax": 0.3}),
    ("promoted", "retrain promoted", {"color": "tab:green", "linewidth": 3, "ymin": 0.7}),
    ("rejected", "retrain rejected", {"color": "grey", "linewidth": 3, "ymin": 0.7}),
]


def _lower_limit(part: PartitionReport) -> float:
    # Accuracy usually lives in 0.8..1.0; a fixed 0..1 axis would flatten the dips
    # people look for, so start a little below the lowest point, on a 0.1 step.
    lowest = min(part.rolling + part.cumulative, default=0.0)
    return max(0.0, math.floor((lowest - 0.02) * 10) / 10)


def _draw_partition(axes: Any, part: PartitionReport) -> None:
    axes.plot(part.learned, part.rolling, color="tab:blue", label="rolling accuracy")
    axes.plot(part.learned, part.cumulative, color="black", alpha=0.6, label="cumulative accuracy")
    for attribute, label, style in _MARKERS:
        for i, x in enumerate(getattr(part, attribute)):
            # Label only the first line of a kind so the legend lists each kind once;
            # gid names the kind, so tests can read the markers back off the figure.
            axes.axvline(x, label=label if i == 0 else "_nolegend_", gid=attribute, **style)
    axes.set_title(part.title)
    axes.set_xlabel("events learned")
    axes.set_ylabel("accuracy")
    axes.set_ylim(_lower_limit(part), 1.01)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")


def build_figure(report: Report) -> Any:
    """A matplotlib ``Figure`` with one subplot per partition, in report order.

    Each marker line's ``gid`` is the :class:`PartitionReport` field it was drawn
    from (``"drifts"``, ``"resets"``, ``"promoted"``, ``"rejected"``).
    """
    # The Figure API with no pyplot: no global backend switch, no GUI, safe in a daemon.
    from matplotlib.figure import Figure

    count = len(report.partitions)
    figure = Figure(figsize=(11, 1.0 + 3.2 * count), layout="constrained")
    subplots = figure.subplots(count, 1, squeeze=False)
    for row, part in enumerate(report.partitions):
        _draw_partition(subplots[row][0], part)
    figure.suptitle(f"streamlearn run report: {report.source}")
    return figure


def render_png(report: Report, path: str | Path) -> None:
    """Draw the report (see :func:`build_figure`) into a PNG at ``path``."""
    try:
        build_figure(report).savefig(path, format="png", dpi=100)
    except OSError as error:
        raise ReportError(f"cannot write {path}: {error.strerror or error}") from None


# --- command line -----------------------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number of seconds: {text!r}")
    return value


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``streamlearn report`` to ``parser``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--event-log", metavar="PATH", help="a run event log (JSON lines)")
    source.add_argument(
        "--metrics-url", metavar="URL", help="sample a running daemon's /metrics endpoint"
    )
    parser.add_argument(
        "--duration",
        metavar="SECONDS",
        type=_seconds,
        default=60.0,
        help="how long to sample --metrics-url (default: 60)",
    )
    parser.add_argument(
        "--interval",
        metavar="SECONDS",
        type=_seconds,
        default=1.0,
        help="seconds between scrapes of --metrics-url (default: 1)",
    )
    parser.add_argument(
        "--output",
        metavar="PNG",
        default="streamlearn-report.png",
        help="where to write the plot (default: streamlearn-report.png)",
    )
    parser.add_argument("--summary", metavar="PATH", help="also write the text summary here")


def run_report(args: argparse.Namespace) -> int:
    """Produce the report the parsed ``args`` ask for; print the summary. Returns 0 or 1."""
    try:
        if args.event_log is not None:
            run = load_event_log(args.event_log)
        else:
            print(f"sampling {args.metrics_url} for {args.duration:g} s", file=sys.stderr)
            run = sample_metrics(args.metrics_url, args.duration, args.interval)
        report = build_report(run)
        render_png(report, args.output)
        text = report.summary_text()
        if args.summary is not None:
            _write_text(args.summary, text)
    except ReportError as error:
        print(f"streamlearn report: error: {error}", file=sys.stderr)
        return 1
    print(text, end="")
    print(f"plot written to {args.output}")
    return 0


def _write_text(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as error:
        raise ReportError(f"cannot write {path}: {error.strerror or error}") from None
