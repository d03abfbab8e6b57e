"""Run reports: accuracy over events learned, with drifts, resets, retrains and rebuilds marked.

One module per job: :mod:`.run` (the data a report is drawn from), :mod:`.event_log`
(reading the daemon's run event log), :mod:`.scrape` (sampling a live ``/metrics``),
:mod:`.summary` (plot data and the text summary), :mod:`.plot` (drawing, with the
optional matplotlib) and :mod:`.command` (``streamlearn report``).

The x axis is always "events learned" rather than wall-clock time, so a drift marker
lands where the stream changed no matter how fast the daemon ran. Importing this
package imports no matplotlib: the CLI and the daemon stay light.
"""

from __future__ import annotations

from monitoring.report.command import add_report_arguments, run_report
from monitoring.report.event_log import load_event_log
from monitoring.report.plot import build_figure, render_png
from monitoring.report.run import (
    AccuracyPoint,
    DriftPoint,
    PartitionSeries,
    RebuildPoint,
    ResetPoint,
    RetrainPoint,
    RunLog,
)
from monitoring.report.scrape import sample_metrics
from monitoring.report.summary import PartitionReport, Report, build_report

__all__ = [
    "AccuracyPoint",
    "DriftPoint",
    "PartitionReport",
    "PartitionSeries",
    "RebuildPoint",
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
