"""``streamlearn evaluate``: the daemon's own code, offline, on a file or a generated stream.

The events ``streamlearn produce`` would write to a one-partition topic (the same
sources, the same encoding: :func:`stream.tools.produce.encode_stream`) are run through
the real loop on in-memory ports (:mod:`stream.daemon.offline`) with the model, drift
and retrain settings of ``streamlearn run``. The figures come from what that run left:
the overall score is the learner's own (what ``streamlearn_accuracy`` or
``streamlearn_mae`` would show), drifts and retrain decisions are its run log, and the
windows after a drift or a change are computed from the predictions it published,
scored against the labels of the stream.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from stream.daemon.offline import OfflineRun, run_offline
from stream.ports import SourceRecord
from stream.settings import RunSettings
from stream.tools.produce import Outgoing, SourceOptions, encode_stream, source_events

log = logging.getLogger(__name__)

DEFAULT_WINDOWS = (1_000, 5_000)
#: Run-log fields every line has: not repeated in the printed log.
_COMMON_FIELDS = frozenset({"time", "kind", "topic", "partition", "offset", "learned"})
#: Run-log kinds printed as the decision log: drifts, resets, retrains and challengers that
#: took over (accuracy samples are for the plot).
_DECISIONS = frozenset(
    {
        "drift",
        "reset",
        "retrain",
        "retrain_abandoned",
        "retrain_dropped",
        "retrain_restarted",
        "switch",
    }
)


@dataclass(frozen=True)
class Stream:
    """The records of one partition and, per event, where it and its label are."""

    records: list[SourceRecord]
    #: Per event index: (offset of the event, offset of the record with its label or
    #: None when it has none, the label).
    events: list[tuple[int, int | None, Any]]

    def offset_of(self, index: int) -> int:
        return self.events[index][0]


def build_stream(options: SourceOptions, topic: str) -> Stream:
    """The records ``produce`` would write for ``options`` to partition 0 of ``topic``.

    A record's timestamp is its offset in milliseconds: the stream is taken to arrive at
    1,000 events per second (what ``--label-ttl`` is measured against).
    """
    records: list[SourceRecord] = []
    events: list[tuple[int, int | None, Any]] = []
    pairs = source_events(options)
    outgoing = encode_stream(
        pairs, seed=options.seed, partitions=1, label_delay=options.label_delay
    )
    for offset, record in enumerate(outgoing):
        records.append(SourceRecord(topic, 0, offset, record.value, record.key, offset))
        _note(events, record, offset)
    return Stream(records, events)


def _note(events: list[tuple[int, int | None, Any]], record: Outgoing, offset: int) -> None:
    if record.late:
        event_offset, _, _ = events[record.index]
        events[record.index] = (event_offset, offset, record.label)
    else:
        events.append((offset, offset if record.label is not None else None, record.label))


@dataclass(frozen=True)
class Window:
    """The score over up to ``size`` scored events from some point on (fewer at the end)."""

    size: int
    events: int
    value: float | None


@dataclass(frozen=True)
class Figures:
    """What ``evaluate`` reports; ``metric`` is ``accuracy`` or ``mae``."""

    source: str
    settings: dict[str, Any]
    metric: str
    events: int
    scored: int
    overall: float | None
    #: The drift and retrain log: the run log's lines of those kinds, in order.
    log: list[dict[str, Any]]
    #: Per drift (in log order): its offset and the windows after it.
    after_drifts: list[dict[str, Any]] = field(default_factory=list)
    #: Per known change point of a generator: its event index, offset and windows.
    after_changes: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Scoring:
    """The published predictions scored against the stream's labels, in scoring order
    (the offset at which each label arrived, as the learner scores them)."""

    def __init__(self, stream: Stream, predictions: Sequence[bytes], metric: str) -> None:
        predicted = {}
        for value in predictions:
            prediction = json.loads(value)
            predicted[prediction["offset"]] = prediction["prediction"]
        # (label offset, event index, error) of every event the model had a prediction for.
        self.scored: list[tuple[int, int, float]] = []
        for index, (event_offset, label_offset, label) in enumerate(stream.events):
            y_pred = predicted.get(event_offset)
            if label_offset is None or y_pred is None:
                continue  # unlabelled, or the untrained model had nothing to say: not scored
            error = abs(y_pred - label) if metric == "mae" else float(y_pred != label)
            self.scored.append((label_offset, index, error))
        self.scored.sort()
        self.metric = metric

    def value(self, errors: Sequence[float]) -> float | None:
        if not errors:
            return None
        mean = sum(errors) / len(errors)
        return mean if self.metric == "mae" else 1.0 - mean

    def after_offset(self, offset: int, size: int) -> Window:
        """The ``size`` scored events whose labels came after ``offset``."""
        errors = [e for at, _, e in self.scored if at > offset][:size]
        return Window(size, len(errors), self.value(errors))

    def from_index(self, index: int, size: int) -> Window:
        """The ``size`` scored events from event ``index`` of the stream on."""
        errors = [e for _, i, e in self.scored if i >= index][:size]
        return Window(size, len(errors), self.value(errors))


def figures_of(
    run: OfflineRun,
    stream: Stream,
    source: str,
    settings: RunSettings,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    changes: Sequence[int] = (),
) -> Figures:
    scores = run.learner.scores()
    metric = run.learner.metric
    scoring = Scoring(stream, run.predictions(), metric)
    lines = _run_log_lines(run.run_log)
    decisions = [line for line in lines if line["kind"] in _DECISIONS]
    after_drifts = [
        {
            "offset": line["offset"],
            "windows": [asdict(scoring.after_offset(line["offset"], n)) for n in windows],
        }
        for line in decisions
        if line["kind"] == "drift"
    ]
    after_changes = [
        {
            "index": index,
            "offset": stream.offset_of(index),
            "windows": [asdict(scoring.from_index(index, n)) for n in windows],
        }
        for index in changes
    ]
    return Figures(
        source=source,
        settings=_learning_settings(settings),
        metric=metric,
        events=len(stream.events),
        scored=run.learner.cumulative.total,
        overall=None if scores is None else scores.cumulative,
        log=decisions,
        after_drifts=after_drifts,
        after_changes=after_changes,
    )


def _learning_settings(settings: RunSettings) -> dict[str, Any]:
    from stream.tools.evaluate_args import OFFLINE_IGNORED

    fields = settings.model_dump(mode="json")
    shown = {k: v for k, v in fields.items() if k not in OFFLINE_IGNORED and v is not None}
    return {k: v for k, v in shown.items() if k not in ("event_log", "log_level")}


def _timing_dependent(settings: RunSettings) -> list[str]:
    """The models of ``settings`` whose fits take over when done (``sklearn(wait=False)``)."""
    from learners.challengers import model_name, parse_challengers
    from learners.spec import parse_model_spec, task_of

    serving = parse_model_spec(settings.model)
    models = [(model_name(settings.model), serving)]
    models += parse_challengers(settings.challengers, settings.model, task_of(serving))
    return [name for name, model in models if getattr(model, "wait", True) is False]


def _run_log_lines(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Evaluation:
    """One offline run and its figures."""

    run: OfflineRun
    stream: Stream
    figures: Figures


def evaluate(
    options: SourceOptions,
    settings: RunSettings,
    run_log: Path,
    windows: Sequence[int] = DEFAULT_WINDOWS,
) -> Evaluation:
    """Run ``settings``' daemon offline over the stream ``options`` describe, the run log
    written to ``run_log``; the change points of a generator get windows of their own."""
    stream = build_stream(options, settings.topic)
    run = run_offline(settings, stream.records, run_log)
    changes = () if options.file is not None else options.drift_at
    figures = figures_of(run, stream, describe_source(options), settings, windows, changes)
    return Evaluation(run, stream, figures)


def describe_source(options: SourceOptions) -> str:
    """``agrawal seed 3, 10000 events, changes at [5000]`` or the file's path.

    >>> describe_source(SourceOptions(count=10, generator="sea", seed=1, drift_at=(5,)))
    'sea seed 1, 10 events, changes at [5]'
    """
    if options.file is not None:
        return str(options.file)
    changes = f", changes at {list(options.drift_at)}" if options.drift_at else ""
    gradual = f" over {options.drift_width} events" if options.drift_width else ""
    return f"{options.generator} seed {options.seed}, {options.count} events{changes}{gradual}"


def run_evaluate(
    args: argparse.Namespace, settings: RunSettings, *, out: TextIO | None = None
) -> int:
    """Run ``streamlearn evaluate`` with parsed ``args`` and the settings built from them."""
    out = sys.stdout if out is None else out  # looked up now: it may be redirected
    from stream.tools.evaluate_args import source_options

    options = source_options(args)
    for name in _timing_dependent(settings):
        print(
            f"streamlearn evaluate: warning: {name} has wait=False: offline, events come as "
            "fast as the loop takes them, so most of its refits are passed over and its "
            "figures depend on this machine's speed; evaluate it with wait=True",
            file=sys.stderr,
        )
    if args.report is not None:
        from monitoring.report.plot import figure_class

        figure_class()  # a missing matplotlib fails now, not after the run
    with tempfile.TemporaryDirectory(prefix="streamlearn-evaluate-") as scratch:
        run_log = Path(scratch) / "run.jsonl"
        result = evaluate(options, settings, run_log, args.window or DEFAULT_WINDOWS)
        if settings.event_log is not None:
            with open(settings.event_log, "ab") as kept, open(run_log, "rb") as written:
                shutil.copyfileobj(written, kept)  # appended, as the daemon appends
        figures = result.figures
        if args.report is not None:
            _draw(run_log, args.report, f"evaluate, {figures.source}")
    if args.json:
        out.write(json.dumps(figures.as_json(), indent=2) + "\n")
    else:
        out.write(format_figures(figures))
        if args.report is not None:
            out.write(f"report written to {args.report}\n")
    return 0


def _draw(run_log: Path, path: Path, title: str) -> None:
    from dataclasses import replace

    from monitoring.report import build_report, load_event_log, render_png

    render_png(replace(build_report(load_event_log(run_log)), source=title), path)


# ----------------------------------------------------------------------------- text


def format_figures(figures: Figures) -> str:
    """The figures for a person to read."""
    metric = figures.metric
    lines = [
        f"stream: {figures.source}",
        "settings: " + ", ".join(f"{k}={v}" for k, v in figures.settings.items()),
        f"{metric} {_figure(figures.overall)} over {figures.scored:,} scored events"
        f" (of {figures.events:,})",
    ]
    for change in figures.after_changes:
        lines.append(
            f"after the change at event {change['index']:,}: {_windows(metric, change['windows'])}"
        )
    lines.append(f"drifts and decisions ({_count(figures.log)}):")
    drifts = iter(figures.after_drifts)
    for line in figures.log:
        extra = {k: v for k, v in line.items() if k not in _COMMON_FIELDS}
        fields = " ".join(f"{k}={_figure(v)}" for k, v in extra.items())
        lines.append(f"  offset {line['offset']:>8}  {line['kind']:<17} {fields}")
        if line["kind"] == "drift":
            lines.append(f"  {'':>15}  then {_windows(metric, next(drifts)['windows'])}")
    return "\n".join(lines) + "\n"


def _count(log: list[dict[str, Any]]) -> str:
    kinds = [line["kind"] for line in log]
    return ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds))) or "none"


def _windows(metric: str, windows: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{metric} {_figure(w['value'])} over the next {w['events']:,} events" for w in windows
    )


def _figure(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
