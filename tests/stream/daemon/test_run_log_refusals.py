"""Refused checkpoints and the rebuilds that follow them, as the run event log tells them
(``--event-log``, docs/architecture.md "Run event log"), on the fakes: a checkpoint
refused at restore or past the log's end, and a rebuild that finishes, gives up, or
whose partition is revoked; and ``streamlearn report`` marking the rebuild."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monitoring.report.event_log import load_event_log
from monitoring.report.plot import build_figure
from monitoring.report.summary import build_report
from stream.daemon.loop import LoopTiming
from tests.stream.daemon.fakes import TP0, Harness, encoded_records, flip_stream

COUNT = 1_000


def _harness(tmp_path: Path, **options: Any) -> Harness:
    h = Harness(
        tmp_path,
        timing=LoopTiming(stop_after_idle_s=2.0),
        rebuild_events=10**6,
        checkpoint_every_events=300,
        max_records=100,
        **options,
    )
    h.source.append(encoded_records(TP0, flip_stream(COUNT, flip_at=400)))
    return h


def _crash_with_a_corrupt_checkpoint(h: Harness) -> int:
    """Learn part of the stream with checkpoints on the way, then kill -9 and leave a
    checkpoint that cannot be read; returns the committed offset (where it resumes)."""
    h.start(TP0)
    for _ in range(50):
        h.cycle()
        if len(h.journal.of("save")) >= 2:
            break
    assert h.store is not None and h.store.blobs
    for key in h.store.blobs:
        h.store.blobs[key] = b"not a checkpoint"
    h.daemon = h._build()  # a new process, with the same run log
    return h.source.committed_offsets[TP0]


def _lines(h: Harness, *kinds: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in h.event_log.read_text().splitlines()]
    return [line for line in lines if line["kind"] in kinds]


def test_a_checkpoint_refused_at_restore_and_its_rebuild_are_in_the_run_log(
    tmp_path: Path,
) -> None:
    h = _harness(tmp_path)
    resume = _crash_with_a_corrupt_checkpoint(h)
    drifts_before = [d for d in h.run_log("drift") if d["offset"] < resume]
    h.start(TP0)
    assert h.run() == 0

    kinds = [line["kind"] for line in _lines(h, "assigned", "refused", "rebuild", "revoked")]
    assert kinds == ["assigned", "refused", "assigned", "rebuild", "rebuild"]
    (refused,) = h.run_log("refused")
    # Not a checkpoint at all: no offset of it can be believed.
    assert (refused["reason"], refused["offset"], refused["learned"]) == ("bad_magic", -1, 0)
    start, end = h.run_log("rebuild")
    assert start["phase"] == "start" and start["reason"] == "bad_magic"
    assert (start["from_offset"], start["to_offset"], start["offset"]) == (0, resume - 1, 0)
    assert (end["phase"], end["result"], end["reason"]) == ("end", "finished", "bad_magic")
    assert (end["from_offset"], end["to_offset"], end["offset"]) == (0, resume - 1, resume - 1)
    assert end["replayed"] == end["learned"] == resume
    # The drifts the first process logged before the resume offset are re-derived.
    assert drifts_before and end["drifts"] == len(drifts_before)
    assert h.sample("streamlearn_rebuilds_total", reason="bad_magic") == 1


def test_a_checkpoint_past_the_end_of_the_log_is_refused_in_the_run_log(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    h.start(TP0)
    assert h.run() == 0  # checkpointed at offset COUNT
    # The log was truncated under the checkpoint; the group's offset lies within it.
    del h.source.logs[TP0][600:]
    h.source.committed_offsets[TP0] = 400
    h.daemon = h._build()
    h.start(TP0)
    assert h.run() == 0

    lines = _lines(h, "assigned", "refused", "rebuild")[1:]  # the second process's
    assert [line["kind"] for line in lines] == ["assigned", "refused", "rebuild", "rebuild"]
    assert lines[0]["restored"] is True and lines[0]["offset"] == COUNT - 1
    refused = lines[1]
    assert (refused["reason"], refused["offset"], refused["log_end"]) == (
        "offset_out_of_range",
        COUNT,
        600,
    )
    start, end = lines[2:]
    assert (start["reason"], start["from_offset"], start["to_offset"]) == (
        "offset_out_of_range",
        0,
        399,
    )
    assert (end["result"], end["replayed"], end["learned"]) == ("finished", 400, 400)


def test_a_rebuild_whose_partition_is_revoked_ends_revoked_in_the_run_log(
    tmp_path: Path,
) -> None:
    h = _harness(tmp_path, per_read=50)  # a rebuild of 600 events spans several cycles
    resume = _crash_with_a_corrupt_checkpoint(h)
    h.start(TP0)
    for _ in range(20):
        h.cycle()
        if h.run_log("rebuild"):
            break
    assert len(h.run_log("rebuild")) == 1  # started, not ended
    h.source.revoke_on_next_poll(TP0)
    h.cycle()

    assert [line["kind"] for line in _lines(h, "rebuild", "revoked")] == [
        "rebuild",
        "revoked",
        "rebuild",
    ]
    end = h.run_log("rebuild")[1]
    assert (end["phase"], end["result"], end["reason"]) == ("end", "revoked", "bad_magic")
    assert 0 < end["replayed"] < resume and end["offset"] == end["replayed"] - 1
    assert not h.sample("streamlearn_rebuilds_total", reason="bad_magic")


def test_a_rebuild_that_gives_up_reading_ends_incomplete_in_the_run_log(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    resume = _crash_with_a_corrupt_checkpoint(h)
    # The replay's reader finds no record past offset 149 (the log gives no more in time).
    h.reader.logs = {TP0: h.source.logs[TP0][:150]}
    h.start(TP0)
    assert h.run() == 0

    start, end = h.run_log("rebuild")
    assert (start["from_offset"], start["to_offset"]) == (0, resume - 1)
    assert (end["result"], end["offset"], end["replayed"]) == ("incomplete", 149, 150)
    assert end["to_offset"] == resume - 1


def test_the_run_report_marks_a_rebuild_where_it_ended(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    resume = _crash_with_a_corrupt_checkpoint(h)
    h.start(TP0)
    assert h.run() == 0

    report = build_report(load_event_log(h.event_log))
    (part,) = report.partitions
    assert part.rebuilds == [resume]  # learned when the rebuild ended
    assert f"rebuilds           1 (at {resume} events learned)" in report.summary_text()
    (axes,) = build_figure(report).get_axes()
    drawn = [line.get_xdata()[0] for line in axes.get_lines() if line.get_gid() == "rebuilds"]
    assert drawn == [resume]
