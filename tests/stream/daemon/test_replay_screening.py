"""--screen-pool in a retrain's replay: later copies of an event (same features, same or
another label) are not trained, and the counts are told once when the replay ends."""

from __future__ import annotations

from collections import Counter
from typing import Any

from learners.retraining import RetrainJob
from stream.daemon.replay import Replayer
from stream.ports import TopicPartition
from tests.stream.daemon.fakes import TP0, FakeClock, FakeLogReader, Journal, encoded_records
from tests.stream.daemon.test_replay import CountingModel, replay

# Event 2 copies event 0, event 3 contradicts event 1, event 5 copies event 3's label.
PAIRS = [
    ({"x": 1.0}, True),
    ({"x": 2.0}, False),
    ({"x": 1.0}, True),
    ({"x": 2.0}, True),
    ({"x": 3.0}, True),
    ({"x": 2.0}, True),
]


def run(screen_pool: bool) -> tuple[list[Any], list[tuple[TopicPartition, Counter[str]]]]:
    clock = FakeClock()
    reader = FakeLogReader({TP0: encoded_records(TP0, iter(PAIRS))}, clock, Journal())
    told: list[tuple[TopicPartition, Counter[str]]] = []
    replayer = Replayer(
        lambda: reader, clock=clock, screen_pool=screen_pool,
        on_screened=lambda tp, counts: told.append((tp, counts)),
    )  # fmt: skip
    model = CountingModel(clock)
    replayer.submit(TP0, 0, len(PAIRS), RetrainJob(model, holdout_events=1))  # type: ignore[arg-type]
    replay(replayer)
    return model.learned, told


def test_a_screened_replay_trains_each_event_once_with_its_first_label() -> None:
    learned, told = run(screen_pool=True)
    assert learned == [True, False, True]  # events 0, 1 and 4
    assert told == [(TP0, Counter({"duplicate": 1, "contradiction": 2}))]


def test_unscreened_replays_train_everything_and_tell_nothing() -> None:
    learned, told = run(screen_pool=False)
    assert learned == [y for _, y in PAIRS]
    assert told == []
