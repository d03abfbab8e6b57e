"""Rebuild a run by sampling a live daemon's ``/metrics`` for a while.

A drift, reset or retrain is placed at the learned count of the scrape in which its
counter went up, so its position is accurate to one sampling interval.
"""

from __future__ import annotations

import http.client
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from monitoring.exceptions import ReportError
from monitoring.report.run import (
    RETRAIN_RESULTS,
    AccuracyPoint,
    DriftPoint,
    PartitionKey,
    ResetPoint,
    RetrainPoint,
    RunLog,
)

# prequential gauge -> what PartitionSeries.metric calls it
_FIGURES = {"streamlearn_accuracy": "accuracy", "streamlearn_mae": "mae"}

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
    #: The prequential figure by window: accuracies, or MAEs for a regressor (``metric``).
    accuracy: dict[PartitionKey, dict[str, float]] = field(default_factory=dict)
    metric: dict[PartitionKey, str] = field(default_factory=dict)
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
            elif sample.name in _FIGURES:
                # A partition has one of them: its learner classifies or regresses.
                scrape.metric[key] = _FIGURES[sample.name]
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
            if key in scrape.metric:
                self.run.partition(*key).metric = scrape.metric[key]
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

    Scrapes once at the start and once at the end; every request is bounded by a
    timeout so the call returns about ``duration_s`` after it started.
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
