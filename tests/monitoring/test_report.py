# Over 400 lines: one simulated daemon run feeds the tests of every report module.
"""Tests of monitoring.report: event log, /metrics sampling, report data, PNG and CLI.

The event log is produced by a real prequential River run over SEA with an abrupt
concept change, ADWIN watching the 0/1 error, so drift markers are checked against
drifts that really happened. Sampling scrapes a real prometheus_client registry
served over loopback HTTP.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from river import drift, metrics, naive_bayes, utils
from river.datasets import synth

from monitoring.exceptions import ReportError
from monitoring.report.command import add_report_arguments, run_report
from monitoring.report.event_log import load_event_log
from monitoring.report.plot import build_figure, render_png
from monitoring.report.run import AccuracyPoint, DriftPoint, RetrainPoint, RunLog
from monitoring.report.scrape import sample_metrics
from monitoring.report.summary import Report, build_report
from stream.cli import main as cli_main

TOPIC = "events"
CHANGE_AT = 2_500  # SEA variant 0 for this many events, then variant 3
EVENTS = 5_000
ACCURACY_EVERY = 100
HOLDOUT = 200
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- a real run, written as the daemon would write it ----------------------------------------


@dataclass
class Written:
    """What the simulated daemon wrote for one partition, kept independently of the parser."""

    accuracy: list[tuple[int, float, float]] = field(default_factory=list)
    drifts: list[int] = field(default_factory=list)
    resets: list[int] = field(default_factory=list)
    promoted: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)


def _sea_with_change(seed: int) -> Iterator[tuple[dict[Any, float], bool]]:
    before = itertools.islice(synth.SEA(variant=0, seed=seed), CHANGE_AT)
    after = itertools.islice(synth.SEA(variant=3, seed=seed + 1), EVENTS - CHANGE_AT)
    return itertools.chain(before, after)


class _Writer:
    def __init__(self, out: TextIO, partition: int) -> None:
        self.out, self.partition, self.clock = out, partition, 1_700_000_000.0

    def write(self, kind: str, offset: int, learned: int, **extra: Any) -> None:
        self.clock += 0.01
        record = {
            "time": self.clock,
            "kind": kind,
            "topic": TOPIC,
            "partition": self.partition,
            "offset": offset,
            "learned": learned,
            **extra,
        }
        self.out.write(json.dumps(record) + "\n")


def _retrain(model: Any, recent: collections.deque, width: int) -> tuple[Any, float, float, int]:
    """Train a fresh candidate on the drift window, judge it on the newest events it never saw."""
    pool = list(recent)[-width:]
    train, holdout = pool[:-HOLDOUT], pool[-HOLDOUT:]
    candidate = model.clone()
    for x, y, _ in train:
        candidate.learn_one(x, y)
    candidate_accuracy = sum(candidate.predict_one(x) == y for x, y, _ in holdout) / len(holdout)
    serving_accuracy = sum(correct for _, _, correct in holdout) / len(holdout)
    return candidate, candidate_accuracy, serving_accuracy, len(train)


def _simulate_partition(writer: _Writer, policy: str, seed: int) -> Written:
    written = Written()
    model: Any = naive_bayes.GaussianNB()
    adwin = drift.ADWIN()
    cumulative = metrics.Accuracy()
    rolling: Any = utils.Rolling(metrics.Accuracy, window_size=1000)
    recent: collections.deque = collections.deque(maxlen=2_000)
    version = 0
    for offset, (x, y) in enumerate(_sea_with_change(seed)):
        y_pred = model.predict_one(x)  # test, then train
        cumulative.update(y, y_pred)
        rolling.update(y, y_pred)
        recent.append((x, y, y_pred == y))
        error_before = adwin.estimation
        adwin.update(float(y_pred != y))
        model.learn_one(x, y)
        learned = offset + 1
        if adwin.drift_detected and adwin.estimation > error_before:
            writer.write(
                "drift",
                offset,
                learned,
                error_before=error_before,
                error_after=adwin.estimation,
                width=adwin.width,
                action=policy,
            )
            written.drifts.append(learned)
            if policy == "reset":
                model, version = model.clone(), version + 1
                writer.write("reset", offset, learned, model_version=version)
                written.resets.append(learned)
            elif len(recent) > HOLDOUT and adwin.width > HOLDOUT:
                candidate, cand_acc, serv_acc, trained = _retrain(model, recent, int(adwin.width))
                result = "promoted" if cand_acc > serv_acc else "rejected"
                if result == "promoted":
                    model, version = candidate, version + 1
                writer.write(
                    "retrain",
                    offset,
                    learned,
                    result=result,
                    candidate_accuracy=cand_acc,
                    serving_accuracy=serv_acc,
                    trained_on=trained,
                    evaluated_on=HOLDOUT,
                    model_version=version,
                )
                getattr(written, result).append(learned)
        if learned % ACCURACY_EVERY == 0:
            writer.write(
                "accuracy", offset, learned, cumulative=cumulative.get(), rolling=rolling.get()
            )
            written.accuracy.append((learned, cumulative.get(), rolling.get()))
    return written


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, Written]]:
    """Partition 0 resets on drift, partition 1 retrains; plus a record of a future kind."""
    path = tmp_path_factory.mktemp("run") / "events.jsonl"
    with path.open("w", encoding="utf-8") as out:
        written = {
            0: _simulate_partition(_Writer(out, 0), "reset", seed=42),
            1: _simulate_partition(_Writer(out, 1), "retrain", seed=7),
        }
        out.write(json.dumps({"time": 1.0, "kind": "checkpoint_v9", "topic": TOPIC}) + "\n")
    return path, written


def test_the_simulated_run_really_drifted(real_run: tuple[Path, dict[int, Written]]) -> None:
    # Guards the fixture itself: the assertions below mean something only if ADWIN
    # saw the concept change and both policies acted on it.
    _, written = real_run
    for partition in (0, 1):
        assert any(CHANGE_AT < x <= CHANGE_AT + 1_000 for x in written[partition].drifts)
    assert written[0].resets
    assert written[1].promoted or written[1].rejected


# --- the event log ----------------------------------------------------------------------------


def test_load_event_log_keeps_every_documented_record(
    real_run: tuple[Path, dict[int, Written]],
) -> None:
    path, written = real_run
    run = load_event_log(path)
    assert run.partition_keys() == [(TOPIC, 0), (TOPIC, 1)]
    for partition, expected in written.items():
        series = run.series[TOPIC, partition]
        assert [(p.learned, p.cumulative, p.rolling) for p in series.accuracy] == expected.accuracy
        assert [d.learned for d in series.drifts] == expected.drifts
        assert [r.learned for r in series.resets] == expected.resets
        assert [(r.learned, r.result) for r in series.retrains] == sorted(
            [(x, "promoted") for x in expected.promoted]
            + [(x, "rejected") for x in expected.rejected]
        )
    drift = run.series[TOPIC, 0].drifts[0]
    assert drift.action == "reset" and drift.width is not None and drift.offset == drift.learned - 1
    assert drift.error_after is not None and drift.error_before is not None
    assert drift.error_after > drift.error_before


def _line(kind: str, **extra: Any) -> str:
    record = {"time": 1.5, "kind": kind, "topic": TOPIC, "partition": 0, "offset": 9, "learned": 10}
    return json.dumps({**record, **extra})


GOOD = _line("accuracy", cumulative=0.5, rolling=0.6)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"time": 1.0, "topic": TOPIC}), "missing field 'kind'"),
        (_line("accuracy", cumulative=0.5), "missing field 'rolling'"),
        (_line("accuracy", cumulative="high", rolling=0.5), "field 'cumulative'"),
        (_line("accuracy", cumulative=True, rolling=0.5), "field 'cumulative'"),
        (
            _line("drift", error_before=0.1, error_after=0.2, width=10.5, action="reset"),
            "field 'width'",
        ),
        (_line("reset", model_version=1, partition="zero"), "field 'partition'"),
        (
            _line(
                "retrain",
                result="maybe",
                candidate_accuracy=0.9,
                serving_accuracy=0.8,
                trained_on=10,
                evaluated_on=5,
                model_version=2,
            ),
            "field 'result'",
        ),
    ],
)
def test_a_bad_line_is_reported_with_its_number(tmp_path: Path, bad: str, message: str) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(f"{GOOD}\n\n{bad}\n{GOOD}\n", encoding="utf-8")
    with pytest.raises(ReportError, match="line 3") as caught:
        load_event_log(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_unknown_kinds_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    future = json.dumps({"kind": "shadow_model", "whatever": [1, 2]})
    drift_line = _line("drift", error_before=0.1, error_after=0.3, width=512.0, action="none")
    path.write_text(f"{future}\n\n{GOOD}\n{drift_line}\n", encoding="utf-8")
    series = load_event_log(path).series[TOPIC, 0]
    assert series.accuracy == [AccuracyPoint(learned=10, cumulative=0.5, rolling=0.6, time=1.5)]
    assert series.drifts[0].width == 512 and series.drifts[0].action == "none"


def test_a_regressors_log_reads_with_its_maes_and_decisions(tmp_path: Path) -> None:
    """A regressor writes `mae` samples (drawn where accuracy is) and retrain decisions
    with MAEs in place of accuracies."""
    path = tmp_path / "log.jsonl"
    mae = _line("mae", cumulative=2.5, rolling=3.0)
    decision = _line(
        "retrain",
        result="promoted",
        candidate_mae=1.5,
        serving_mae=2.5,
        trained_on=10,
        evaluated_on=5,
        model_version=2,
    )
    path.write_text(f"{mae}\n{decision}\n", encoding="utf-8")
    series = load_event_log(path).series[TOPIC, 0]
    assert series.metric == "mae"
    assert [(p.cumulative, p.rolling) for p in series.accuracy] == [(2.5, 3.0)]
    (retrain,) = series.retrains
    assert retrain.result == "promoted" and retrain.model_version == 2
    assert retrain.candidate_accuracy is None and retrain.serving_accuracy is None


def test_a_regression_run_draws_its_mae_panel(tmp_path: Path) -> None:
    path, png = tmp_path / "log.jsonl", tmp_path / "report.png"
    lines = [
        _line("mae", partition=p, learned=n, cumulative=c, rolling=r)
        for p in (0, 1)
        for n, c, r in ((100, 4.0, 3.5), (200, 3.0, 2.0), (300, 2.5, 6.0))
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = build_report(load_event_log(path))
    figure = build_figure(report)
    for ax, partition in zip(figure.get_axes(), (0, 1), strict=True):
        assert ax.get_title() == f"{TOPIC} / partition {partition}: MAE"
        assert ax.get_ylabel() == "MAE"
        drawn = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
        assert drawn == {"rolling MAE": [3.5, 2.0, 6.0], "cumulative MAE": [4.0, 3.0, 2.5]}
        assert ax.get_ylim()[0] == 0.0 and ax.get_ylim()[1] >= 6.0
    render_png(report, png)
    assert png.read_bytes()[:8] == PNG_MAGIC
    text = report.summary_text()
    assert "final MAE          cumulative 2.5000, rolling 6.0000" in text
    assert "max rolling        6.0000 at 300 events learned" in text


def test_a_missing_log_is_a_report_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="cannot read event log"):
        load_event_log(tmp_path / "nope.jsonl")


# --- the report ---------------------------------------------------------------------------------


def test_report_puts_markers_where_the_drifts_were_written(
    real_run: tuple[Path, dict[int, Written]],
) -> None:
    path, written = real_run
    report = build_report(load_event_log(path))
    assert [(p.topic, p.partition) for p in report.partitions] == [(TOPIC, 0), (TOPIC, 1)]
    for part, expected in zip(report.partitions, (written[0], written[1]), strict=True):
        assert part.drifts == expected.drifts
        assert part.resets == expected.resets
        assert part.promoted == expected.promoted
        assert part.rejected == expected.rejected
        assert part.learned == [x for x, _, _ in expected.accuracy]
        assert part.cumulative == [c for _, c, _ in expected.accuracy]
        assert part.rolling == [r for _, _, r in expected.accuracy]
        assert part.events_learned == EVENTS


def _markers(axes: Any, gid: str) -> list[float]:
    return [float(line.get_xdata()[0]) for line in axes.get_lines() if line.get_gid() == gid]


def test_the_figure_draws_the_markers_of_the_report(
    real_run: tuple[Path, dict[int, Written]],
) -> None:
    path, written = real_run
    figure = build_figure(build_report(load_event_log(path)))
    axes = figure.get_axes()
    assert len(axes) == 2
    for ax, expected in zip(axes, (written[0], written[1]), strict=True):
        assert _markers(ax, "drifts") == expected.drifts
        assert _markers(ax, "resets") == expected.resets
        assert _markers(ax, "promoted") == expected.promoted
        assert _markers(ax, "rejected") == expected.rejected
        rolling = next(line for line in ax.get_lines() if line.get_label() == "rolling accuracy")
        assert list(rolling.get_xdata()) == [x for x, _, _ in expected.accuracy]
        assert ax.get_xlabel() == "events learned" and ax.get_ylabel() == "accuracy"
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "drift" in legend and "rolling accuracy" in legend


def test_render_png_writes_a_real_png(
    real_run: tuple[Path, dict[int, Written]], tmp_path: Path
) -> None:
    path, _ = real_run
    out = tmp_path / "report.png"
    render_png(build_report(load_event_log(path)), out)
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 20_000
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1100, 740)  # 11 x (1 + 3.2 per partition) inches at 100 dpi


def test_render_png_to_a_missing_directory_is_a_report_error(tmp_path: Path) -> None:
    run = RunLog(source="x")
    run.partition(TOPIC, 0).accuracy.append(AccuracyPoint(1, 1.0, 1.0, 0.0))
    with pytest.raises(ReportError, match="cannot write"):
        render_png(build_report(run), tmp_path / "no" / "such" / "dir.png")


def _block(report: Report, partition: int) -> str:
    blocks = report.summary_text().split(f"{TOPIC} / partition ")
    return next(b for b in blocks[1:] if b.startswith(f"{partition}\n"))


def test_summary_text_figures_match_the_log(real_run: tuple[Path, dict[int, Written]]) -> None:
    path, written = real_run
    report = build_report(load_event_log(path))
    text = report.summary_text()
    assert text.startswith(f"streamlearn run report ({path}): 2 partition(s), {2 * EVENTS} events")
    for partition, expected in written.items():
        block = _block(report, partition)
        _, cumulative, rolling = expected.accuracy[-1]
        low_x, _, low = min(expected.accuracy, key=lambda point: point[2])
        assert f"events learned     {EVENTS}\n" in block
        assert f"cumulative {cumulative:.4f}, rolling {rolling:.4f}" in block
        assert f"min rolling        {low:.4f} at {low_x} events learned" in block
        assert f"drifts             {len(expected.drifts)} (at {expected.drifts[0]}" in block
        assert f"resets             {len(expected.resets)}" in block
        assert (
            f"retrains           {len(expected.promoted)} promoted, "
            f"{len(expected.rejected)} rejected"
        ) in block


def test_summary_of_a_partition_without_accuracy_samples() -> None:
    run = RunLog(source="x")
    run.partition(TOPIC, 3).retrains.append(RetrainPoint(learned=70, result="rejected", time=0.0))
    text = build_report(run).summary_text()
    assert "no accuracy samples" in text and "0 promoted, 1 rejected" in text
    assert "events learned     70" in text


def test_an_empty_run_cannot_be_reported(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(ReportError, match="nothing to report"):
        build_report(load_event_log(path))


# --- sampling a real /metrics endpoint ----------------------------------------------------------


class _ScriptedDaemon:
    """A real prometheus_client registry served on loopback, advanced step by step.

    A thread applies step k only after scrape k was served, and scrape k+1 waits for
    it, so which scrape sees which state is fixed no matter how fast each side runs.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["topic", "partition"]
        self.events = Counter(
            "streamlearn_events", "records handled", [*labels, "outcome"], registry=self.registry
        )
        self.accuracy = Gauge(
            "streamlearn_accuracy", "accuracy", [*labels, "window"], registry=self.registry
        )
        self.mae = Gauge("streamlearn_mae", "mae", [*labels, "window"], registry=self.registry)
        self.drifts = Counter("streamlearn_drifts", "drifts", labels, registry=self.registry)
        self.resets = Counter("streamlearn_model_resets", "resets", labels, registry=self.registry)
        self.retrains = Counter(
            "streamlearn_retrains", "retrains", [*labels, "result"], registry=self.registry
        )
        Gauge("streamlearn_ready", "ready", registry=self.registry).set(1)
        self.condition = threading.Condition()
        self.served = self.applied = 0
        self.steps: list[Callable[[], None]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    def learn(
        self, partition: int, count: int, cumulative: float, rolling: float, regress: bool = False
    ) -> None:
        self.events.labels(TOPIC, str(partition), "learned").inc(count)
        self.events.labels(TOPIC, str(partition), "predicted").inc(count + 5)
        figure = self.mae if regress else self.accuracy
        figure.labels(TOPIC, str(partition), "cumulative").set(cumulative)
        figure.labels(TOPIC, str(partition), "rolling").set(rolling)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        daemon = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                with daemon.condition:
                    due = min(daemon.served, len(daemon.steps))
                    daemon.condition.wait_for(lambda: daemon.applied >= due, timeout=5)
                    body = generate_latest(daemon.registry)
                    daemon.served += 1
                    daemon.condition.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def _served_beyond(self, count: int) -> bool:
        return self.served > count

    def _advance(self) -> None:
        for k, step in enumerate(self.steps):
            with self.condition:
                if not self.condition.wait_for(partial(self._served_beyond, k), timeout=5):
                    return
                step()
                self.applied += 1
                self.condition.notify_all()

    def __enter__(self) -> _ScriptedDaemon:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        threading.Thread(target=self._advance, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[_ScriptedDaemon]:
    daemon = _ScriptedDaemon()
    p0 = "0"
    # Before sampling starts: counts that must not be drawn.
    daemon.learn(0, 1000, 0.90, 0.92)
    daemon.drifts.labels(TOPIC, p0).inc(2)
    daemon.resets.labels(TOPIC, p0).inc()

    def drift_and_reset() -> None:
        daemon.learn(0, 100, 0.89, 0.70)
        daemon.drifts.labels(TOPIC, p0).inc()
        daemon.resets.labels(TOPIC, p0).inc()

    def promote_and_new_partition() -> None:
        daemon.learn(0, 100, 0.88, 0.80)
        daemon.retrains.labels(TOPIC, p0, "promoted").inc()
        daemon.learn(1, 50, 0.60, 0.60)  # partition 1 assigned mid-run

    def two_rejections() -> None:
        daemon.learn(0, 100, 0.89, 0.90)
        daemon.retrains.labels(TOPIC, p0, "rejected").inc(2)

    def first_drift_of_partition_1() -> None:
        daemon.learn(1, 100, 0.55, 0.50)
        daemon.drifts.labels(TOPIC, "1").inc()  # a child created by its first increment

    daemon.steps = [
        lambda: daemon.learn(0, 100, 0.91, 0.93),
        drift_and_reset,
        promote_and_new_partition,
        two_rejections,
        first_drift_of_partition_1,
        lambda: None,  # an idle interval: nothing learned, no new point
    ]
    with daemon:
        yield daemon


def test_sample_metrics_rebuilds_the_run_from_counters(scripted: _ScriptedDaemon) -> None:
    # The base address, without /metrics, as people paste it.
    run = sample_metrics(scripted.url, duration_s=1.5, interval_s=0.02)
    assert scripted.served > len(scripted.steps), "the script did not finish within the duration"
    assert run.source == scripted.url + "/metrics"
    assert run.partition_keys() == [(TOPIC, 0), (TOPIC, 1)]
    p0, p1 = run.series[TOPIC, 0], run.series[TOPIC, 1]
    assert [(a.learned, a.cumulative, a.rolling) for a in p0.accuracy] == [
        (1000, 0.90, 0.92),
        (1100, 0.91, 0.93),
        (1200, 0.89, 0.70),
        (1300, 0.88, 0.80),
        (1400, 0.89, 0.90),
    ]
    assert [d.learned for d in p0.drifts] == [1200]
    assert [r.learned for r in p0.resets] == [1200]
    assert [(r.learned, r.result) for r in p0.retrains] == [
        (1300, "promoted"),
        (1400, "rejected"),
        (1400, "rejected"),
    ]
    assert [(a.learned, a.rolling) for a in p1.accuracy] == [(50, 0.60), (150, 0.50)]
    assert p1.drifts == [DriftPoint(learned=150, time=p1.drifts[0].time)]
    assert p1.resets == [] and p1.retrains == []
    report = build_report(run)
    assert report.partitions[0].drifts == [1200]
    assert report.partitions[0].rejected == [1400, 1400]


def test_sample_metrics_with_zero_duration_scrapes_once(scripted: _ScriptedDaemon) -> None:
    run = sample_metrics(scripted.url + "/metrics", duration_s=0, interval_s=1)
    assert scripted.served == 1
    series = run.series[TOPIC, 0]
    assert [a.learned for a in series.accuracy] == [1000]
    assert series.drifts == [] and series.resets == []


def test_sample_metrics_draws_a_regressor_by_its_mae() -> None:
    daemon = _ScriptedDaemon()
    daemon.learn(0, 500, 0.40, 0.35)
    daemon.learn(2, 500, 1.5, 1.25, regress=True)  # a regressor's partition: MAE, no accuracy
    daemon.steps = [lambda: daemon.learn(2, 100, 1.4, 0.9, regress=True)]
    with daemon:
        run = sample_metrics(daemon.url, duration_s=0.5, interval_s=0.02)
    classifier, regressor = run.series[TOPIC, 0], run.series[TOPIC, 2]
    assert (classifier.metric, regressor.metric) == ("accuracy", "mae")
    assert [(a.learned, a.cumulative, a.rolling) for a in regressor.accuracy] == [
        (500, 1.5, 1.25),
        (600, 1.4, 0.9),
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_sample_metrics_names_the_url_it_cannot_reach() -> None:
    url = f"http://127.0.0.1:{_free_port()}/metrics"
    with pytest.raises(ReportError, match="cannot scrape") as caught:
        sample_metrics(url, duration_s=5, interval_s=1)
    assert url in str(caught.value)


def test_sample_metrics_refuses_a_wrong_path(scripted: _ScriptedDaemon) -> None:
    with pytest.raises(ReportError, match=f"{scripted.url}/elsewhere"):
        sample_metrics(scripted.url + "/elsewhere", duration_s=1, interval_s=0.1)


@pytest.mark.parametrize(
    ("url", "duration", "interval"),
    [
        ("ftp://127.0.0.1/metrics", 1, 1),
        ("http://127.0.0.1:1", -1, 1),
        ("http://127.0.0.1:1", 1, 0),
    ],
)
def test_sample_metrics_refuses_bad_arguments(url: str, duration: float, interval: float) -> None:
    with pytest.raises(ReportError):
        sample_metrics(url, duration, interval)


# --- the command-line hook ----------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="streamlearn report")
    add_report_arguments(parser)
    return parser.parse_args(argv)


def test_cli_defaults() -> None:
    args = _parse(["--metrics-url", "http://127.0.0.1:9100"])
    assert (args.duration, args.interval) == (60.0, 1.0)
    assert args.output == "streamlearn-report.png" and args.summary is None


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--event-log", "a", "--metrics-url", "http://x"],
        ["--event-log", "a", "--duration", "-1"],
        ["--metrics-url", "http://x", "--interval", "soon"],
    ],
)
def test_cli_refuses_bad_options(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(argv)


def test_cli_from_an_event_log(
    real_run: tuple[Path, dict[int, Written]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = real_run
    png, summary = tmp_path / "r.png", tmp_path / "summary.txt"
    args = _parse(["--event-log", str(path), "--output", str(png), "--summary", str(summary)])
    assert run_report(args) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC
    expected = build_report(load_event_log(path)).summary_text()
    assert summary.read_text(encoding="utf-8") == expected
    assert capsys.readouterr().out == expected + f"plot written to {png}\n"


def test_cli_from_metrics(
    scripted: _ScriptedDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "m.png"
    args = _parse(
        [
            "--metrics-url",
            scripted.url,
            "--duration",
            "0.5",
            "--interval",
            "0.02",
            "--output",
            str(png),
        ]
    )
    assert run_report(args) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC
    out = capsys.readouterr().out
    assert "events / partition 0" in out and "events / partition 1" in out


def test_cli_reports_a_bad_log_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{GOOD}\n{{oops\n", encoding="utf-8")
    png = tmp_path / "never.png"
    assert run_report(_parse(["--event-log", str(path), "--output", str(png)])) == 1
    assert "line 2" in capsys.readouterr().err
    assert not png.exists()


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Imports of matplotlib fail, as where the report extra is not installed."""
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.usefixtures("no_matplotlib")
def test_report_without_matplotlib_names_the_extra_to_install(
    real_run: tuple[Path, dict[int, Written]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = real_run
    png = tmp_path / "never.png"
    assert cli_main(["report", "--event-log", str(path), "--output", str(png)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("streamlearn report: error: drawing a report needs matplotlib")
    assert "pip install 'streamlearn[report]'" in err
    assert not png.exists()


@pytest.mark.usefixtures("no_matplotlib")
def test_report_without_matplotlib_fails_before_sampling(
    scripted: _ScriptedDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--metrics-url", scripted.url, "--duration", "30", "--output", str(tmp_path / "x")]
    assert run_report(_parse(argv)) == 1
    assert scripted.served == 0, "a missing extra must be told before a minute of sampling"
    assert "streamlearn[report]" in capsys.readouterr().err


@pytest.mark.usefixtures("no_matplotlib")
def test_drawing_without_matplotlib_is_a_report_error(tmp_path: Path) -> None:
    run = RunLog(source="x")
    run.partition(TOPIC, 0).accuracy.append(AccuracyPoint(1, 1.0, 1.0, 0.0))
    with pytest.raises(ReportError, match=r"streamlearn\[report\]"):
        render_png(build_report(run), tmp_path / "r.png")
