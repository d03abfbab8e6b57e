"""The replayer on a fake log reader and a fake clock: ranges, slices, give-up, cancel.

The retrain job is the real one (``learners/retraining.py``); its candidate here is a
model that counts what it learned and costs fake time per event, so the slice budget
can be seen at work.
"""

from __future__ import annotations

from typing import Any

from learners.retraining import REPLAYING, SHADOWING, RetrainJob
from stream.daemon.replay import TRAIN_RUN, Replayer
from stream.ports import SourceRecord
from tests.stream.daemon.fakes import (
    TP0,
    TP1,
    FakeClock,
    FakeLogReader,
    Journal,
    encoded_records,
    flip_stream,
)


class CountingModel:
    """Records the labels it learned; each ``learn_one`` costs ``cost_s`` of fake time."""

    def __init__(self, clock: FakeClock, cost_s: float = 0.0) -> None:
        self.clock = clock
        self.cost_s = cost_s
        self.learned: list[Any] = []

    def learn_one(self, x: dict[str, Any], y: Any) -> None:
        self.learned.append(y)
        self.clock.advance(self.cost_s)

    def predict_one(self, x: dict[str, Any]) -> Any:
        return None


def setup(
    per_read: int = 100, read_cost_s: float = 0.02, give_up_after_s: float = 30.0
) -> tuple[FakeClock, FakeLogReader, Replayer]:
    clock, journal = FakeClock(), Journal()
    logs = {
        TP0: encoded_records(TP0, flip_stream(1_000)),
        TP1: encoded_records(TP1, flip_stream(1_000, seed=2)),
    }
    reader = FakeLogReader(logs, clock, journal, per_read, read_cost_s)

    def factory() -> FakeLogReader:
        reader.made += 1
        return reader

    return clock, reader, Replayer(factory, give_up_after_s=give_up_after_s, clock=clock)


def job(clock: FakeClock, cost_s: float = 0.0) -> RetrainJob:
    return RetrainJob(CountingModel(clock, cost_s), holdout_events=10)  # type: ignore[arg-type]


def replay(replayer: Replayer, budget_s: float = 0.1, limit: int = 100) -> int:
    """Advance until the replayer is idle; how many slices that took."""
    slices = 0
    while replayer.busy:
        replayer.advance(budget_s)
        slices += 1
        assert slices < limit, "the replay does not advance"
    return slices


def test_exactly_the_range_is_trained_in_order() -> None:
    clock, reader, replayer = setup(per_read=64)
    task = job(clock)
    replayer.submit(TP0, 100, 350, task)
    replay(replayer)
    expected = [
        bool(record.value and b'"label":true' in record.value)
        for record in reader.logs[TP0][100:350]
    ]
    assert task.candidate.learned == expected  # type: ignore[attr-defined]
    assert task.trained_on == 250 and task.state == SHADOWING
    assert reader.reads[0][:2] == (TP0, 100)


def test_dead_letters_and_unlabelled_events_are_not_trained() -> None:
    clock, reader, replayer = setup()
    reader.logs[TP0][5] = SourceRecord(TP0.topic, 0, 5, b"not json")
    reader.logs[TP0][6] = SourceRecord(TP0.topic, 0, 6, b'{"features": {"x": 1.0}}')
    task = job(clock)
    replayer.submit(TP0, 0, 10, task)
    replay(replayer)
    assert task.trained_on == 8


def test_a_slice_keeps_to_its_budget_and_the_replay_goes_on_in_the_next() -> None:
    clock, _, replayer = setup(per_read=20, read_cost_s=0.03)
    task = job(clock)
    replayer.submit(TP0, 0, 500, task)
    started = clock()
    replayer.advance(0.1)
    # Four reads of 20 fit (the last starts before the budget ends); the rest waits.
    assert task.trained_on == 80 and clock() - started <= 0.1 + 0.03
    assert replayer.busy and task.state == REPLAYING
    assert replay(replayer) == 6
    assert task.trained_on == 500


def test_a_large_fetch_is_trained_in_runs_with_a_look_at_the_clock_between() -> None:
    clock, reader, replayer = setup(per_read=2_000)
    task = job(clock, cost_s=0.001)  # a run of 200 records: 0.2 s
    replayer.submit(TP0, 0, 1_000, task)
    replayer.advance(0.1)
    assert task.trained_on == TRAIN_RUN and len(reader.reads) == 1
    replayer.advance(0.1)  # trains what was fetched, without reading again
    assert task.trained_on == 2 * TRAIN_RUN and len(reader.reads) == 1
    replay(replayer)
    assert task.trained_on == 1_000 and len(reader.reads) == 1


def test_a_range_the_log_no_longer_brings_is_given_up_after_a_while() -> None:
    clock, _, replayer = setup(give_up_after_s=2.0)
    task = job(clock)
    replayer.submit(TP0, 900, 1_200, task)  # the log ends at 1,000
    replayer.advance(0.1)
    assert task.trained_on == 100
    slices = replay(replayer)
    # Each empty read waits the rest of its slice; then the job goes on with what it has.
    assert slices == 20 and task.trained_on == 100 and task.state == SHADOWING


def test_tasks_run_one_after_another_and_cancel_drops_the_partitions_own() -> None:
    clock, reader, replayer = setup(per_read=50, read_cost_s=0.03)
    first, second, third = job(clock), job(clock), job(clock)
    replayer.submit(TP0, 0, 300, first)
    replayer.submit(TP1, 0, 100, second)
    replayer.submit(TP0, 300, 400, third)
    replayer.advance(0.1)
    assert [call[1] for call in reader.journal.of("replay_start")] == [TP0]
    replayer.cancel(TP0)  # revoked: both of its tasks go, partition 1's stays
    replay(replayer)
    assert [call[1:] for call in reader.journal.of("replay_start")] == [(TP0, 0), (TP1, 0)]
    assert first.state == REPLAYING and third.trained_on == 0
    assert second.trained_on == 100 and second.state == SHADOWING


def test_the_reader_is_made_once_on_first_use_or_warm_up_and_closed() -> None:
    clock, reader, replayer = setup()
    replayer.advance(0.1)  # nothing to replay: no reader yet
    assert reader.made == 0
    replayer.warm_up()
    assert reader.made == 1  # made before the first retrain needs it
    replayer.submit(TP0, 0, 10, job(clock))
    replay(replayer)
    assert reader.made == 1
    replayer.close()
    assert reader.closed
