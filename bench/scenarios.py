"""The daemon end to end: throughput, latency at half load, memory, scale-out, retrain pause."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.contenders import RUN_TIMEOUT_S, Throughput
from bench.daemon import DaemonProcess
from bench.timeline import Learned, learned_times, longest_gap, percentile, throughput
from bench.workload import Context, Stream, produce_stream, read_topic


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _learned(bootstrap: str, predictions_topic: str, count: int) -> list[Learned]:
    return learned_times(read_topic(bootstrap, predictions_topic, count))


def run_streamlearn(
    ctx: Context,
    stream: Stream,
    spec: str,
    profile_to: Path | None = None,
    options: dict[str, Any] | None = None,
) -> Throughput:
    """One daemon from the first to the last learned event of the pre-produced topic;
    ``options`` are more settings (e.g. challengers)."""
    predictions = f"{stream.topic}.sl-{_tag()}"
    with DaemonProcess(
        ctx,
        stream.topic,
        spec,
        group=f"sl-{_tag()}",
        options=options,
        predictions_topic=predictions,
        profile_to=profile_to,
    ) as daemon:
        daemon.wait_learned(stream.count, RUN_TIMEOUT_S)
    return throughput(_learned(stream.bootstrap, predictions, stream.count))


@dataclass(frozen=True)
class Latency:
    rate: float
    events: int
    p50_s: float
    p99_s: float
    max_s: float


def run_latency(ctx: Context, spec: str, rate: float, seconds: float) -> Latency:
    """Event timestamp to learned, for events produced at a steady ``rate`` to a live daemon.

    A warm-up burst first proves the daemon joined its group and is consuming; only the
    paced events after it count. Event timestamps are set by the producer when it encodes
    the event (so its batching is included), the learned time is the prediction's
    timestamp; both are this machine's clock.
    """
    bootstrap = ctx.bootstrap
    topic, predictions, warmup = f"lat-{_tag()}", f"lat-{_tag()}.predictions", 2000
    paced = max(int(rate * seconds), 100)
    produce_stream(bootstrap, topic, warmup, seed=11, drift_at=())
    with DaemonProcess(
        ctx, topic, spec, group=f"lat-{_tag()}", predictions_topic=predictions
    ) as daemon:
        daemon.wait_learned(warmup, RUN_TIMEOUT_S)
        produce_stream(bootstrap, topic, paced, seed=12, rate=rate)
        daemon.wait_learned(warmup + paced, RUN_TIMEOUT_S)
    produced = {
        r.offset: json.loads(r.value)["timestamp"]
        for r in read_topic(bootstrap, topic, warmup + paced)
    }
    delays = [
        item.at - produced[item.offset]
        for item in _learned(bootstrap, predictions, warmup + paced)
        if item.offset >= warmup
    ]
    return Latency(rate, len(delays), percentile(delays, 50), percentile(delays, 99), max(delays))


@dataclass(frozen=True)
class Memory:
    early_events: int
    late_events: int
    early_rss: int
    late_rss: int

    @property
    def growth(self) -> float:
        return self.late_rss / self.early_rss - 1.0


def run_memory(ctx: Context, spec: str, early: int, late: int) -> Memory:
    """VmRSS of the daemon once it learned ``early`` events and once it learned ``late``."""
    topic = f"rss-{_tag()}"
    produce_stream(ctx.bootstrap, topic, late, seed=13)
    with DaemonProcess(
        ctx, topic, spec, group=f"rss-{_tag()}", predictions_topic=f"{topic}.predictions"
    ) as daemon:
        daemon.wait_learned(early, RUN_TIMEOUT_S)
        early_rss = daemon.rss_bytes()
        daemon.wait_learned(late, RUN_TIMEOUT_S * 4)
        late_rss = daemon.rss_bytes()
    return Memory(early, late, early_rss, late_rss)


@dataclass(frozen=True)
class ScaleOut:
    one: Throughput
    two: Throughput

    @property
    def ratio(self) -> float:
        return self.two.rate / self.one.rate if self.one.rate else 0.0


def run_group(ctx: Context, stream: Stream, spec: str, processes: int) -> Throughput:
    """``processes`` daemons in one group on the topic, started together; first to last event
    learned by any of them (a late rebalance would show up as lost time, honestly)."""
    predictions, group = f"{stream.topic}.g{processes}-{_tag()}", f"g{processes}-{_tag()}"
    daemons = [
        DaemonProcess(ctx, stream.topic, spec, group=group, predictions_topic=predictions)
        for _ in range(processes)
    ]
    try:
        for daemon in daemons:
            daemon.start()
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while sum(d.learned() for d in daemons) < stream.count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{processes} daemons did not learn {stream.count} in time")
            time.sleep(0.05)
    finally:
        for daemon in daemons:
            daemon.stop()
    return throughput(_learned(stream.bootstrap, predictions, stream.count))


@dataclass(frozen=True)
class RetrainPause:
    longest_pause_s: float
    baseline_gap_s: float
    retrains: int
    trained_on: int
    window_s: float


def run_retrain_pause(
    ctx: Context, spec: str, stationary: int, after: int, replay: int
) -> RetrainPause:
    """The longest gap between consecutive learned events while a retrain replays.

    A long stationary concept, then an abrupt change. ``--min-retrain-events`` and
    ``--max-retrain-events`` are both ``replay``, so the retrain replays exactly that many
    events whatever ADWIN's width is at detection. The window is from the drift line to
    the decision line of the event log; the baseline is the longest gap before the drift.
    """
    bootstrap = ctx.bootstrap
    topic, event_log = f"rt-{_tag()}", ctx.workdir / f"rt-{_tag()}.jsonl"
    count = stationary + after
    produce_stream(bootstrap, topic, count, seed=5, drift_at=(stationary,))
    # The decision must fall inside the stream: a candidate that is never clearly better
    # or worse is decided at the cap, so the cap is at most half the events after the change.
    cap = min(3000, max(300, after // 2))
    options = {
        "drift_action": "retrain",
        "max_retrain_events": replay,
        "min_retrain_events": replay,
        "retrain_max_holdout_events": cap,
        "event_log": event_log,
    }
    with DaemonProcess(
        ctx,
        topic,
        spec,
        group=f"rt-{_tag()}",
        predictions_topic=f"{topic}.predictions",
        options=options,
    ) as daemon:
        daemon.wait_learned(count, RUN_TIMEOUT_S)
    times = _learned(bootstrap, f"{topic}.predictions", count)
    lines = [json.loads(line) for line in event_log.read_text().splitlines()]
    drifts = [line for line in lines if line["kind"] == "drift" and line["action"] == "retrain"]
    decisions = [line for line in lines if line["kind"] == "retrain"]
    if not drifts or not decisions:
        raise RuntimeError(f"no retrain ran (drifts {len(drifts)}, decisions {len(decisions)})")
    windows = [
        (d["time"], next(r["time"] for r in decisions if r["time"] >= d["time"]))
        for d in drifts
        if any(r["time"] >= d["time"] for r in decisions)
    ]
    pause = max(longest_gap(times, start, end) for start, end in windows)
    # Skip the first second: the first fetches after the join are not steady state.
    baseline = longest_gap(times, times[0].at + 1.0, drifts[0]["time"] - 0.5)
    return RetrainPause(
        pause,
        baseline,
        len(decisions),
        max(r["trained_on"] for r in decisions),
        max(end - start for start, end in windows),
    )
