"""Challengers through the loop on fake ports: the learners come from the composition
root's factory (``--challenger``), predictions name the model that made them, a switch
is logged and counted, per-model series carry a ``model`` label, and a restart restores
the model that serves with its challengers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from learners.prequential import PartitionLearner
from stream.cli import main
from stream.daemon.app import learner_factory
from stream.daemon.loop import Daemon, LoopTiming
from stream.ports import TopicPartition
from stream.settings import RunSettings
from tests.stream.daemon.fakes import PREDICTIONS, TOPIC, TP0, Harness, encoded_records, flip_stream

WEAK = "dummy.NoChangeClassifier"
LR = "lr=preprocessing.StandardScaler | linear_model.LogisticRegression"
WINDOW = 100


@dataclass
class ChallengedHarness(Harness):
    """The harness with the daemon's own learner factory and its restore hook."""

    challengers: tuple[str, ...] = (LR,)

    def __post_init__(self) -> None:
        settings = RunSettings(
            bootstrap_servers="127.0.0.1:9092", topic=TOPIC, model=WEAK, drift_action="none",
            challengers=self.challengers, challenger_window=WINDOW, challenger_margin=0.05,
        )  # fmt: skip
        self.factory = learner_factory(settings)
        super().__post_init__()

    def _build(self) -> Daemon:
        daemon = super()._build()
        self.table.adopt = self.factory.adopt
        return daemon

    def new_learner(self, tp: TopicPartition) -> PartitionLearner:
        return self.factory(tp)

    def predictions(self) -> list[dict[str, Any]]:
        return [json.loads(value) for topic, value, _, _ in self.sink.sent if topic == PREDICTIONS]


def models_by_offset(h: ChallengedHarness) -> dict[int, tuple[str, int]]:
    return {p["offset"]: (p["model"], p["model_version"]) for p in h.predictions()}


def test_predictions_name_their_model_and_a_switch_is_logged_and_counted(tmp_path: Path) -> None:
    h = ChallengedHarness(tmp_path, timing=LoopTiming(stop_after_idle_s=2.0))
    h.source.append(encoded_records(TP0, flip_stream(400)))
    h.start(TP0)
    assert h.run() == 0

    (switch,) = h.run_log("switch")
    # The challenger's first full window: labelled events 0..99.
    assert switch["offset"] == WINDOW - 1
    assert (switch["previous"], switch["model"], switch["window"]) == (WEAK, "lr", WINDOW)
    assert switch["challenger_accuracy"] > switch["serving_accuracy"] + 0.05
    assert switch["model_version"] == 2
    made_by = models_by_offset(h)
    assert len(made_by) == 400
    # The event at which the switch happened was predicted by the model it replaced.
    assert {made_by[i] for i in range(WINDOW)} == {(WEAK, 1)}
    assert {made_by[i] for i in range(WINDOW, 400)} == {("lr", 2)}

    labels = {"topic": TOPIC, "partition": 0}
    assert h.sample("streamlearn_model_switches_total", **labels) == 1
    assert h.sample("streamlearn_model_serving", **labels, model="lr") == 1
    assert h.sample("streamlearn_model_serving", **labels, model=WEAK) == 0
    lr_accuracy = h.sample("streamlearn_model_accuracy", **labels, model="lr", window="cumulative")
    weak = h.sample("streamlearn_model_accuracy", **labels, model=WEAK, window="cumulative")
    assert lr_accuracy is not None and weak is not None and lr_accuracy > 0.9 > 0.7 > weak
    # The partition's own series go on as before: what was served.
    assert h.sample("streamlearn_accuracy", **labels, window="cumulative") is not None
    assert h.sample("streamlearn_model_version", **labels) == 2


def test_a_restart_restores_the_model_that_serves_and_its_challengers(tmp_path: Path) -> None:
    h = ChallengedHarness(tmp_path, timing=LoopTiming(stop_after_idle_s=2.0))
    h.source.append(encoded_records(TP0, flip_stream(250)))
    h.start(TP0)
    assert h.run() == 0
    before = h.slot(TP0).learner
    assert before.challengers is not None
    weak_seen = before.challengers.challengers[0].cumulative.total

    h.daemon = h._build()  # another process, the same checkpoint store
    h.source.append(encoded_records(TP0, flip_stream(100, seed=2), first_offset=250))
    h.source.assign_on_next_poll(TP0)
    h.source.subscribe(TOPIC, h.daemon)
    assert h.run() == 0
    learner = h.slot(TP0).learner
    assert learner is not before and learner.model_name == "lr" and learner.model_version == 2
    assert learner.challengers is not None
    (weak,) = learner.challengers.challengers
    assert weak.name == WEAK and weak.cumulative.total == weak_seen + 100
    assert {models_by_offset(h)[i] for i in range(250, 350)} == {("lr", 2)}
    labels = {"topic": TOPIC, "partition": 0}
    assert h.sample("streamlearn_model_switches_total", **labels) == 0  # this process's


def test_a_restart_with_other_challengers_keeps_those_named_again(tmp_path: Path) -> None:
    h = ChallengedHarness(tmp_path, timing=LoopTiming(stop_after_idle_s=2.0))
    h.source.append(encoded_records(TP0, flip_stream(250)))
    h.start(TP0)
    assert h.run() == 0  # lr took over: the weak --model is a challenger now
    settings = h.factory.settings.model_copy(
        update={"challengers": ("prior=dummy.PriorClassifier",)}
    )
    h.factory = learner_factory(settings)  # the next run drops lr, adds prior
    h.daemon = h._build()
    h.source.append(encoded_records(TP0, flip_stream(10, seed=2), first_offset=250))
    h.source.assign_on_next_poll(TP0)
    h.source.subscribe(TOPIC, h.daemon)
    assert h.run() == 0
    learner = h.slot(TP0).learner
    assert learner.model_name == "lr"  # what served goes on serving
    assert learner.challengers is not None
    assert [c.name for c in learner.challengers.challengers] == [WEAK, "prior"]
    # Its state kept: 260 events, the first unscored (the no-change guess had nothing).
    assert learner.challengers.challengers[0].cumulative.total == 259


def test_without_challengers_predictions_name_the_model_and_no_model_series_appear(
    tmp_path: Path,
) -> None:
    h = ChallengedHarness(tmp_path, timing=LoopTiming(stop_after_idle_s=2.0), challengers=())
    h.source.append(encoded_records(TP0, flip_stream(50)))
    h.start(TP0)
    assert h.run() == 0
    assert {made_by for made_by in models_by_offset(h).values()} == {(WEAK, 1)}
    labels = {"topic": TOPIC, "partition": 0}
    assert h.sample("streamlearn_model_serving", **labels, model=WEAK) is None
    assert h.sample("streamlearn_model_switches_total", **labels) == 0


@pytest.mark.parametrize(
    ("challenger", "message"),
    [
        ("sklearn:linear_model._logistic.LogisticRegression", "the private name '_logistic'"),
        ("linear_model.NoSuchClassifier", "has no name 'NoSuchClassifier'"),
        ("linear_model.LinearRegression", "is a model for regression"),
    ],
)
def test_a_bad_challenger_is_refused_at_start_with_a_message(
    challenger: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # No broker listens there: the spec is refused before anything connects.
    argv = ["run", "--bootstrap-servers", "127.0.0.1:9", "--topic", "t", "--challenger", challenger]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "streamlearn run: error: challenger" in error and message in error
