"""Run the benchmark's sections against a broker (Tansu, Apache Kafka, or each in turn)
and collect the table's rows."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench import anatomy, contenders, scenarios, split_probe
from bench.contenders import Throughput
from bench.daemon import checkpoint_options
from bench.report import Row, machine_line, rates_text, render, render_side_by_side, tansu_name
from bench.workload import MODELS, Context, Stream, prepare

CONTENDERS = ("limit", "naive", "peer", "streamlearn")
# Memory last but one: its 1,000,000 events stay in the in-memory broker and slow the
# sections after it.
SECTIONS = (
    "throughput",
    "challengers",
    "latency",
    "scaling",
    "retrain",
    "anatomy",
    "split",
    "memory",
    "profile",
)
#: Challengers of the ``challengers`` section: copies of the LR model under other names,
#: so a row's cost is that of running the serving model's equal in shadow.
CHALLENGER_COUNTS = (1, 3)
DEFAULT_OUTPUT = Path(__file__).parent / "results" / "latest.md"


@dataclass(frozen=True)
class Plan:
    """How big each section is; ``quick`` is a smoke test, not a measurement."""

    events: int = 100_000
    runs: int = 3
    memory_early: int = 200_000
    memory_late: int = 1_000_000
    latency_seconds: float = 30.0
    retrain_stationary: int = 60_000
    retrain_after: int = 30_000
    retrain_replay: int = 20_000
    contenders: tuple[str, ...] = CONTENDERS
    sections: tuple[str, ...] = SECTIONS

    @classmethod
    def quick(cls, events: int = 3000) -> Plan:
        return cls(
            events=events,
            runs=1,
            memory_early=events,
            memory_late=3 * events,
            latency_seconds=2.0,
            retrain_stationary=3 * events,
            retrain_after=events,
            retrain_replay=events,
        )

    def only(self, name: str) -> Plan:
        """Restrict to one section, or to one contender of the throughput section."""
        if name in CONTENDERS:
            return replace(self, contenders=(name,), sections=("throughput",))
        if name in SECTIONS:
            return replace(self, sections=(name,))
        raise ValueError(f"--only takes one of {', '.join(CONTENDERS + SECTIONS)}, got {name!r}")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Bench:
    """Holds the broker context, the pre-produced streams and the figures measured so far."""

    def __init__(self, ctx: Context, plan: Plan, output: Path) -> None:
        self.ctx = ctx
        self.plan = plan
        self.output = output
        self.rows: list[Row] = []
        self.rates: dict[tuple[str, str], list[float]] = {}
        self._streams: dict[int, Stream] = {}

    def stream(self, partitions: int = 1) -> Stream:
        """The agrawal stream with drifts, produced once per partition count."""
        if partitions not in self._streams:
            topic = f"bench-{partitions}p-{uuid.uuid4().hex[:8]}"
            say(f"producing {self.plan.events:,} agrawal events to {topic} ({partitions} p.)")
            self._streams[partitions] = prepare(
                self.ctx.bootstrap, topic, self.plan.events, partitions
            )
        return self._streams[partitions]

    def run(self) -> list[Row]:
        sections: dict[str, Callable[[], None]] = {
            "throughput": self.throughput,
            "challengers": self.challengers,
            "latency": self.latency,
            "memory": self.memory,
            "scaling": self.scaling,
            "retrain": self.retrain,
            "anatomy": self.anatomy,
            "split": self.split,
            "profile": self.profile,
        }
        for name in self.plan.sections:
            started = time.monotonic()
            try:
                sections[name]()
            except Exception as exc:  # one broken section must not lose the others' figures
                traceback.print_exc()
                self.rows.append(
                    Row(f"{name}.error", f"{name}: failed", f"error: {exc}", error=True)
                )
            say(f"-- {name} done in {time.monotonic() - started:.0f} s")
        return self.rows

    # -- throughput ---------------------------------------------------------------------

    def _contender(self, name: str, model: str) -> Callable[[], Throughput]:
        spec, stream, ctx = MODELS[model], self.stream(), self.ctx
        return {
            "limit": lambda: contenders.run_limit(spec, stream.pairs),
            "naive": lambda: contenders.run_naive(ctx, stream, spec),
            "peer": lambda: contenders.run_peer(ctx, stream, spec),
            "streamlearn": lambda: scenarios.run_streamlearn(ctx, stream, spec),
        }[name]

    def measure(self, name: str, model: str) -> list[float]:
        if (name, model) not in self.rates:
            rates = []
            for run in range(self.plan.runs):
                result = self._contender(name, model)()
                say(f"{model} {name} run {run + 1}/{self.plan.runs}: {result.rate:,.0f} events/s")
                rates.append(result.rate)
            self.rates[name, model] = rates
        return self.rates[name, model]

    def throughput(self) -> None:
        how = {
            "limit": "bare River loop over the events decoded in memory",
            "naive": "kafka-python iterated one message at a time, json.loads, River, "
            "3 prometheus_client updates per event",
            "peer": "Quix Streams app, same loop, predictions to a topic",
            "streamlearn": "`python -m stream run`, metrics + predictions topic"
            + (" + checkpoints" if checkpoint_options(Path()) else "")
            + "; first to last prediction timestamp",
        }
        for model in MODELS:
            for name in self.plan.contenders:
                rates = self.measure(name, model)
                self.rows.append(
                    Row(
                        f"throughput.{model}.{name}",
                        f"{model} {name}, events/s",
                        rates_text(rates),
                        statistics.median(rates),
                        how[name],
                    )
                )
            self._ratios(model)

    def _ratios(self, model: str) -> None:
        if ("streamlearn", model) not in self.rates:
            return
        ours = statistics.median(self.rates["streamlearn", model])
        for other in ("limit", "naive", "peer"):
            if (other, model) in self.rates:
                ratio = ours / statistics.median(self.rates[other, model])
                self.rows.append(
                    Row(
                        f"ratio.{model}.{other}",
                        f"{model} streamlearn / {other}",
                        f"{ratio:.2f}",
                        ratio,
                        "ratio of medians",
                    )
                )

    def challengers(self) -> None:
        """Events/s of the LR daemon with 0, 1 and 3 LR challengers (``--challenger``)."""
        none = self.measure("streamlearn", "LR")  # the throughput section's, when it ran
        self.rows.append(
            Row(
                "challengers.0",
                "LR, no challenger, events/s",
                rates_text(none),
                statistics.median(none),
                "as throughput.LR.streamlearn",
            )
        )
        for count in CHALLENGER_COUNTS:
            options = {"challengers": [f"c{n}={MODELS['LR']}" for n in range(1, count + 1)]}
            rates = []
            for run in range(self.plan.runs):
                result = scenarios.run_streamlearn(
                    self.ctx, self.stream(), MODELS["LR"], options=options
                )
                say(
                    f"LR + {count} challenger(s) run {run + 1}/{self.plan.runs}: "
                    f"{result.rate:,.0f} events/s"
                )
                rates.append(result.rate)
            self.rows.append(
                Row(
                    f"challengers.{count}",
                    f"LR + {count} LR challenger(s), events/s",
                    rates_text(rates),
                    statistics.median(rates),
                    "each learns and predicts every event in shadow",
                )
            )

    # -- the daemon's other figures -------------------------------------------------------

    def latency(self) -> None:
        top = statistics.median(self.measure("streamlearn", "LR"))
        rate = top / 2
        result = scenarios.run_latency(self.ctx, MODELS["LR"], rate, self.plan.latency_seconds)
        how = (
            f"LR, {result.events:,} events produced at {rate:,.0f}/s (half the max); "
            "prediction record timestamp (set when the prediction is made) minus the "
            "event's timestamp field (set when the producer encodes it)"
        )
        self.rows.append(
            Row(
                "latency.p50",
                "latency p50, ms",
                f"{result.p50_s * 1e3:.1f}",
                result.p50_s * 1e3,
                how,
            )
        )
        self.rows.append(
            Row(
                "latency.p99",
                "latency p99, ms",
                f"{result.p99_s * 1e3:.1f}",
                result.p99_s * 1e3,
                f"max {result.max_s * 1e3:.1f} ms",
            )
        )

    def memory(self) -> None:
        plan = self.plan
        result = scenarios.run_memory(self.ctx, MODELS["LR"], plan.memory_early, plan.memory_late)
        for key, events, rss in (
            ("memory.early", result.early_events, result.early_rss),
            ("memory.late", result.late_events, result.late_rss),
        ):
            self.rows.append(
                Row(
                    key,
                    f"RSS after {events:,} events (LR), MiB",
                    f"{rss / 2**20:.1f}",
                    rss / 2**20,
                    "VmRSS of the daemon",
                )
            )
        self.rows.append(
            Row(
                "memory.growth",
                "RSS growth, %",
                f"{result.growth * 100:.1f}",
                result.growth * 100,
                "from the first to the second",
            )
        )

    def scaling(self) -> None:
        stream, spec = self.stream(partitions=2), MODELS["LR"]
        ones = [scenarios.run_group(self.ctx, stream, spec, 1) for _ in range(self.plan.runs)]
        twos = [scenarios.run_group(self.ctx, stream, spec, 2) for _ in range(self.plan.runs)]
        one = statistics.median(r.rate for r in ones)
        two = statistics.median(r.rate for r in twos)
        say(f"scaling: 1 process {one:,.0f}/s, 2 processes {two:,.0f}/s")
        self.rows.append(
            Row(
                "scaling.one",
                "LR 1 process, 2 partitions, events/s",
                rates_text([r.rate for r in ones]),
                one,
            )
        )
        self.rows.append(
            Row(
                "scaling.two",
                "LR 2 processes, 2 partitions, events/s",
                rates_text([r.rate for r in twos]),
                two,
                "first to last prediction of either process",
            )
        )
        self.rows.append(
            Row(
                "scaling.ratio",
                "2 processes / 1 process",
                f"{two / one:.2f}",
                two / one,
                "ratio of medians",
            )
        )

    def retrain(self) -> None:
        plan = self.plan
        result = scenarios.run_retrain_pause(
            self.ctx, MODELS["LR"], plan.retrain_stationary, plan.retrain_after, plan.retrain_replay
        )
        how = (
            f"LR, {plan.retrain_stationary:,} stationary events then a change; "
            f"retrain replays {plan.retrain_replay:,} (trained on {result.trained_on:,}); "
            f"longest gap between consecutive prediction timestamps from drift to decision "
            f"({result.window_s:.1f} s); steady-state longest gap "
            f"{result.baseline_gap_s * 1e3:.0f} ms"
        )
        self.rows.append(
            Row(
                "retrain.pause",
                "longest pause during a retrain, ms",
                f"{result.longest_pause_s * 1e3:.0f}",
                result.longest_pause_s * 1e3,
                how,
            )
        )

    def anatomy(self) -> None:
        for model in MODELS:
            for stage in anatomy.measure(self.stream(), MODELS[model]):
                key = f"anatomy.{model}.{stage.name.strip().split()[0].rstrip(':')}"
                self.rows.append(
                    Row(
                        key,
                        f"{model} {stage.name}, us/event",
                        f"{stage.micros:.1f}",
                        stage.micros,
                        "in-process, alone",
                    )
                )

    def split(self) -> None:
        """The probe of a fetch-and-decode child process (bench/split_probe.py)."""
        for model in MODELS:
            runs = [
                split_probe.measure(self.stream(), MODELS[model]) for _ in range(self.plan.runs)
            ]
            for key, name, rates in (
                ("one", "poll+decode+learn+publish in one process", [r.one_process for r in runs]),
                (
                    "child",
                    "the same, poll+decode in a child process",
                    [r.fetch_child for r in runs],
                ),
            ):
                self.rows.append(
                    Row(
                        f"split.{model}.{key}",
                        f"{model} probe: {name}, events/s",
                        rates_text(rates),
                        statistics.median(rates),
                        "no metrics, checkpoints or group: compare the two",
                    )
                )
            gain = statistics.median([r.gain for r in runs])
            self.rows.append(
                Row(
                    f"split.{model}.gain",
                    f"{model} probe: child / one process",
                    f"{gain:.2f}",
                    gain,
                    "median of the runs' ratios",
                )
            )

    def profile(self) -> None:
        path = self.output.parent / "profile-LR.txt"
        result = scenarios.run_streamlearn(self.ctx, self.stream(), MODELS["LR"], profile_to=path)
        self.rows.append(
            Row(
                "profile.LR",
                "LR streamlearn under pyinstrument, events/s",
                f"{result.rate:,.0f}",
                result.rate,
                f"profile in {path.name}",
            )
        )


BROKERS = ("tansu", "kafka")


def main(
    plan: Plan, output: Path, session_timeout_ms: int = 6000, brokers: Sequence[str] = ("tansu",)
) -> int:
    """Start each broker in turn, run the plan on it, print and write the table (side by
    side when there are several); 1 if a section failed."""
    results: dict[str, list[Row]] = {}
    for kind in brokers:
        with tempfile.TemporaryDirectory(prefix="streamlearn-bench-") as scratch:
            workdir = Path(scratch)
            name, broker = _broker(kind, workdir / "broker.log")
            say(f"== on {name}")
            with broker:
                ctx = Context(broker.bootstrap_servers, workdir, session_timeout_ms)
                results[name] = Bench(ctx, plan, output).run()
    notes = [
        f"Plan: {plan.events:,} events per run, {plan.runs} run(s) per figure; "
        "see docs/performance.md for the method and the profile."
    ]
    if len(results) == 1:
        ((name, rows),) = results.items()
        table = render(rows, machine_line(name), notes)
    else:
        table = render_side_by_side(results, machine_line(", ".join(results)), notes)
    print(table)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(table)
    return 1 if any(row.error for rows in results.values() for row in rows) else 0


def _broker(kind: str, log_path: Path) -> tuple[str, Any]:
    """The broker's name for the table, and its launcher (a context manager)."""
    if kind == "kafka":
        from stream.kafka.apache import ApacheKafkaBroker, kafka_version

        return f"Apache Kafka {kafka_version()}", ApacheKafkaBroker(log_path=log_path)
    from stream.kafka.tansu import EmbeddedBroker

    return tansu_name(), EmbeddedBroker(log_path=log_path)
