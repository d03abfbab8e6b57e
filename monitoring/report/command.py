"""``streamlearn report``: its options, and the run that reads, summarises and draws."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from monitoring.exceptions import ReportError
from monitoring.report.event_log import load_event_log
from monitoring.report.plot import figure_class, render_png
from monitoring.report.scrape import sample_metrics
from monitoring.report.summary import build_report


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
        # Before reading or sampling: a missing extra must not cost a minute of scraping.
        figure_class()
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
