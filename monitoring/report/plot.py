"""Draw a :class:`Report` with matplotlib: accuracy (a regression's MAE) over events
learned, events as markers.

matplotlib is an optional extra (``streamlearn[report]``): the daemon never needs it,
so it is imported here, on first use, and its absence is a :class:`ReportError` that
names the extra to install.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from monitoring.exceptions import ReportError
from monitoring.report.summary import PartitionReport, Report

INSTALL_HINT = "pip install 'streamlearn[report]'"

# kind -> (attribute of PartitionReport, legend label, axvline style). Drifts span the
# whole height on top; resets and retrains span a band each (axes fraction), so a
# reset or retrain decided at the very event of its drift stays visible beside it.
_MARKERS: list[tuple[str, str, dict[str, Any]]] = [
    ("drifts", "drift", {"color": "tab:red", "linestyle": "--", "linewidth": 1.3, "zorder": 4}),
    ("resets", "reset", {"color": "tab:purple", "linewidth": 3, "ymin": 0.0, "ymax": 0.3}),
    ("promoted", "retrain promoted", {"color": "tab:green", "linewidth": 3, "ymin": 0.7}),
    ("rejected", "retrain rejected", {"color": "grey", "linewidth": 3, "ymin": 0.7}),
    ("rebuilds", "rebuilt from the log", {"color": "tab:orange", "linewidth": 3, "ymin": 0.4,
                                          "ymax": 0.6}),
]  # fmt: skip


def figure_class() -> Any:
    """matplotlib's ``Figure``, or a :class:`ReportError` saying how to install it."""
    try:
        # The Figure API with no pyplot: no global backend switch, no GUI, safe anywhere.
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ReportError(
            f"drawing a report needs matplotlib, which is not installed ({error}); "
            f"install the report extra: {INSTALL_HINT}"
        ) from None
    return Figure


def _lower_limit(part: PartitionReport) -> float:
    # Accuracy usually lives in 0.8..1.0; a fixed 0..1 axis would flatten the dips
    # people look for, so start a little below the lowest point, on a 0.1 step.
    lowest = min(part.rolling + part.cumulative, default=0.0)
    return max(0.0, math.floor((lowest - 0.02) * 10) / 10)


def _draw_partition(axes: Any, part: PartitionReport) -> None:
    name = part.metric_name
    axes.plot(part.learned, part.rolling, color="tab:blue", label=f"rolling {name}")
    axes.plot(part.learned, part.cumulative, color="black", alpha=0.6, label=f"cumulative {name}")
    for attribute, label, style in _MARKERS:
        for i, x in enumerate(getattr(part, attribute)):
            # Label only the first line of a kind so the legend lists each kind once;
            # gid names the kind, so tests can read the markers back off the figure.
            axes.axvline(x, label=label if i == 0 else "_nolegend_", gid=attribute, **style)
    axes.set_title(part.title if part.metric != "mae" else f"{part.title}: MAE")
    axes.set_xlabel("events learned")
    axes.set_ylabel(name)
    if part.metric == "mae":  # errors in the target's unit, from 0 (lower is better)
        axes.set_ylim(0.0, max(part.rolling + part.cumulative, default=1.0) * 1.05 or 1.0)
    else:
        axes.set_ylim(_lower_limit(part), 1.01)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")


def build_figure(report: Report) -> Any:
    """A matplotlib ``Figure`` with one subplot per partition, in report order.

    Each marker line's ``gid`` is the :class:`PartitionReport` field it was drawn
    from (``"drifts"``, ``"resets"``, ``"promoted"``, ``"rejected"``, ``"rebuilds"``).
    """
    figure_type = figure_class()
    count = len(report.partitions)
    figure = figure_type(figsize=(11, 1.0 + 3.2 * count), layout="constrained")
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
