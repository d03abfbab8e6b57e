"""The retrain replay when retention deleted part of its range: shortened, or skipped,
logged and counted; never a crash or a wait for offsets that will not come."""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import pytest
from river import tree

from learners.retraining import SHADOWING, RetrainJob
from stream.daemon.replay import Replayer
from stream.ports import TopicPartition
from stream.tools.produce import encode_event

TP = TopicPartition("events", 0)


class FakeRecord(NamedTuple):
    offset: int
    value: bytes


class FakeLog:
    """A partition holding offsets ``[log_start, end)``; reading below the start lands at
    the start, as a consumer reset to "earliest" does."""

    def __init__(self, log_start: int, end: int) -> None:
        self.log_start_offset = log_start
        self.end = end
        self._position = 0

    def start(self, tp: TopicPartition, offset: int) -> None:
        self._position = offset

    def read(self, tp: TopicPartition, timeout_ms: int, max_records: int) -> list[Any]:
        self._position = max(self._position, self.log_start_offset)
        upto = min(self._position + max_records, self.end)
        records = [
            FakeRecord(o, encode_event(str(o), {"x": o % 7}, o % 2 == 0, o))
            for o in range(self._position, upto)
        ]
        self._position = upto
        return records

    def position(self, tp: TopicPartition) -> int | None:
        return self._position

    def log_start(self, tp: TopicPartition) -> int | None:
        return self.log_start_offset

    def close(self) -> None:
        pass


def replay(reader: FakeLog, start: int, end: int) -> tuple[RetrainJob, list[int]]:
    expired: list[int] = []
    replayer = Replayer(lambda: reader, on_expired=lambda tp, n: expired.append(n))
    job = RetrainJob(tree.HoeffdingTreeClassifier(), pool=(start, end))
    replayer.submit(TP, start, end, job)
    for _ in range(100):  # bounded: each slice either trains or finishes
        if not replayer.busy:
            break
        replayer.advance(0.05)
    assert not replayer.busy
    return job, expired


def test_a_range_whose_start_expired_is_shortened_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    job, expired = replay(FakeLog(log_start=700, end=2_000), start=500, end=1_500)
    assert (job.trained_on, job.state, expired) == (800, SHADOWING, [200])
    assert "retention deleted 200 of them: replay shortened to 800 events" in caplog.text


def test_a_range_retention_deleted_whole_is_skipped_at_once() -> None:
    # Nothing after the range either: the replay must not wait for records to come.
    job, expired = replay(FakeLog(log_start=1_600, end=1_600), start=500, end=1_500)
    assert (job.trained_on, job.state, expired) == (0, SHADOWING, [1_000])


def test_offsets_deleted_while_the_replay_runs_are_counted() -> None:
    reader = FakeLog(log_start=0, end=5_000)
    expired: list[int] = []
    replayer = Replayer(lambda: reader, on_expired=lambda tp, n: expired.append(n))
    job = RetrainJob(tree.HoeffdingTreeClassifier(), pool=(0, 4_000))
    replayer.submit(TP, 0, 4_000, job)
    replayer.advance(0.0001)  # reads a first fetch (up to 2,000 records), trains a run
    reader.log_start_offset = 3_000  # retention strikes mid-replay
    for _ in range(100):
        if not replayer.busy:
            break
        replayer.advance(0.05)
    assert expired == [1_000] and job.trained_on == 3_000


def test_an_intact_range_is_replayed_whole_and_nothing_counted() -> None:
    job, expired = replay(FakeLog(log_start=0, end=2_000), start=500, end=1_500)
    assert (job.trained_on, expired) == (1_000, [])
