"""The run report of a real run: the daemon learns from the broker with an event log, and
the report's drift and reset markers are where the daemon's drifts and resets were.

Checked on the data behind the plot (the report, and the marker lines of the figure it
draws), not on pixels; the PNG itself is checked for being a PNG of the figure's size.
"""

from __future__ import annotations

import json
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest

from monitoring.report.event_log import load_event_log
from monitoring.report.plot import build_figure, render_png
from monitoring.report.summary import build_report
from stream.cli import main
from stream.tools.produce import ProduceOptions, produce
from tests.integration.kafka_helpers import run_until_idle

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

LR = "preprocessing.StandardScaler | linear_model.LogisticRegression"
EVENTS = 12_000
CHANGES = (4_000, 8_000)
# ADWIN on SEA with a logistic regression notices an abrupt change within this many events.
DETECTED_WITHIN = 1_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def lines_of(path: Path, kind: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["kind"] == kind]


@pytest.fixture(scope="module")
def event_log(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The event log of one real run: SEA with two abrupt changes, reset on drift."""
    topic = f"report-run-{uuid.uuid4().hex[:8]}"
    path = tmp_path_factory.mktemp("report-run") / "events.jsonl"
    summary = produce(
        ProduceOptions(
            kafka_bootstrap,
            topic,
            count=EVENTS,
            seed=2,
            generator="sea",
            drift_at=CHANGES,
            partitions=1,
        )
    )
    assert summary.produced == EVENTS
    run_until_idle(kafka_bootstrap, topic, model=LR, drift_action="reset", event_log=path)
    return path


def test_drift_markers_are_where_the_daemon_drifted(event_log: Path) -> None:
    drifts = lines_of(event_log, "drift")
    resets = lines_of(event_log, "reset")
    (part,) = build_report(load_event_log(event_log)).partitions

    # The markers are the daemon's own drift and reset lines, in order ...
    assert part.drifts == [d["learned"] for d in drifts]
    assert part.resets == [r["learned"] for r in resets]
    assert all(d["action"] == "reset" for d in drifts)
    assert len(part.resets) == len(part.drifts)
    # ... every produced change got a marker soon after it, and no marker is elsewhere.
    # One partition of valid events: learned count n is the event at offset n - 1.
    for change in CHANGES:
        assert any(0 < x - change <= DETECTED_WITHIN for x in part.drifts), (change, part.drifts)
    for x in part.drifts:
        assert any(0 < x - change <= DETECTED_WITHIN for change in CHANGES), (x, part.drifts)
    assert part.events_learned == EVENTS
    # The accuracy curve spans the run.
    assert part.learned == sorted(part.learned)
    assert part.learned[-1] >= CHANGES[-1] + DETECTED_WITHIN


def test_the_figure_draws_those_markers(event_log: Path, tmp_path: Path) -> None:
    report = build_report(load_event_log(event_log))
    (part,) = report.partitions
    figure = build_figure(report)
    (axes,) = figure.axes
    drawn: dict[str, list[float]] = {}
    for line in axes.get_lines():
        if line.get_gid():
            drawn.setdefault(line.get_gid(), []).append(line.get_xdata()[0])
    assert drawn["drifts"] == part.drifts
    assert drawn["resets"] == part.resets
    assert "promoted" not in drawn and "rejected" not in drawn  # reset runs do not retrain

    output = tmp_path / "report.png"
    render_png(report, output)
    width, height = png_size(output)
    figure_width, figure_height = figure.get_size_inches() * 100  # render_png draws at 100 dpi
    assert (width, height) == (round(figure_width), round(figure_height))


def test_report_command_on_the_event_log(
    event_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output, summary = tmp_path / "cli.png", tmp_path / "summary.txt"
    code = main(
        [
            "report",
            "--event-log",
            str(event_log),
            "--output",
            str(output),
            "--summary",
            str(summary),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    expected = build_report(load_event_log(event_log)).summary_text()
    assert summary.read_text() == expected
    assert printed.startswith(expected)
    assert f"plot written to {output}" in printed
    drifts = [d["learned"] for d in lines_of(event_log, "drift")]
    assert (
        f"drifts             {len(drifts)} (at {', '.join(map(str, drifts))} events learned)"
        in printed
    )
    assert f"events learned     {EVENTS}" in printed
    assert png_size(output)[0] > 0
