"""Challengers (learners/challengers.py): scored on the same events as the serving model,
late labels included; a take-over after a full window won by the margin, never otherwise;
no flapping; checkpoints restore them exactly; bad specs refused."""

from __future__ import annotations

import random
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
from river import base, datasets, dummy, linear_model, preprocessing, stats

from learners.challengers import ChallengerSet, attach, parse_challengers
from learners.checkpoint import decode_checkpoint, encode_checkpoint
from learners.exceptions import ModelSpecError
from learners.outcomes import ModelReset, ModelSwitched
from learners.prequential import PartitionLearner
from learners.regression import learner_for
from learners.retraining import RetrainJob
from learners.spec import CLASSIFICATION
from learners.state import PartitionState, SequenceTracker
from stream.settings import RunSettings
from tests.learners.test_checkpoint_fixtures import FIXTURES


def separable(count: int, seed: int = 1) -> Iterator[tuple[dict[str, float], bool]]:
    """Labels a logistic regression learns at once and the no-change guess cannot."""
    rng = random.Random(seed)
    for _ in range(count):
        x = {"a": rng.uniform(-1, 1), "b": rng.uniform(-1, 1)}
        yield x, x["a"] + 0.5 * x["b"] > 0


def lr() -> base.Classifier:
    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


def learner_with(
    serving: Any, challengers: list[tuple[str, Any]], window: int, margin: float, **options: Any
) -> PartitionLearner:
    learner = learner_for(serving, drift_action=options.pop("drift_action", "none"), **options)
    attach(learner, ("serving", serving.clone()), challengers, window, margin)
    return learner


def run(learner: PartitionLearner, stream: Any, start: int = 0) -> list[Any]:
    outcomes = []
    for offset, (x, y) in enumerate(stream, start):
        learner.step(x, y, offset)
        outcomes += learner.drain_outcomes()
    return outcomes


def switches(outcomes: list[Any]) -> list[ModelSwitched]:
    return [o for o in outcomes if isinstance(o, ModelSwitched)]


# -- the take-over ---------------------------------------------------------------------------


def test_a_clearly_better_challenger_takes_over_once_its_first_window_is_full() -> None:
    window = 200
    learner = learner_with(dummy.NoChangeClassifier(), [("lr", lr())], window, margin=0.05)
    weak_model = learner.model
    outcomes = run(learner, separable(2000))

    (switch,) = switches(outcomes)  # and never back: the no-change guess stays behind
    # The bound: the first full window (the lead is far above the margin from the start).
    assert window - 1 <= switch.offset < 2 * window
    assert switch.offset == window - 1
    assert (switch.previous, switch.model, switch.window) == ("serving", "lr", window)
    assert switch.challenger_score - switch.serving_score > 0.05
    assert switch.model_version == 2 == learner.model_version
    assert learner.model_name == "lr"
    challengers = learner.challengers
    assert challengers is not None
    # The replaced model is a challenger now, learning on.
    assert [c.name for c in challengers.challengers] == ["serving"]
    assert challengers.challengers[0].model is weak_model
    # A reset or a retrain now makes a fresh model of the kind that serves.
    assert "LogisticRegression" in repr(learner.fresh_model())
    scores = {s.name: s for s in challengers.scores()}
    assert scores["lr"].serving and not scores["serving"].serving
    assert scores["lr"].cumulative > 0.9 > 0.6 > scores["serving"].cumulative


def test_a_challenger_scores_exactly_what_it_would_score_serving() -> None:
    stream = list(separable(1500, seed=2))
    learner = learner_with(lr(), [("ht", dummy.PriorClassifier())], 100, margin=0.0)
    alone = PartitionLearner(dummy.PriorClassifier(), drift_action="none")
    run(learner, stream)
    run(alone, stream)
    assert learner.challengers is not None
    (prior,) = (s for s in learner.challengers.scores() if s.name == "ht")
    assert prior.cumulative == alone.cumulative.get()
    assert prior.rolling == alone.rolling.get()


def test_a_worse_or_identical_challenger_never_takes_over() -> None:
    for challenger in (dummy.NoChangeClassifier(), lr()):
        learner = learner_with(lr(), [("other", challenger)], window=100, margin=0.0)
        assert switches(run(learner, separable(3000, seed=3))) == []
        assert learner.model_name == "serving" and learner.model_version == 1


def test_two_close_models_do_not_flap() -> None:
    # Two logistic regressions a little apart: they disagree on a few events only.
    close = preprocessing.StandardScaler() | linear_model.LogisticRegression(l2=0.001)
    learner = learner_with(lr(), [("close", close)], window=500, margin=0.02)
    assert switches(run(learner, separable(10_000, seed=4))) == []


class Scripted(base.Classifier):
    """Right with probability ``skill(t)`` at the event ``{"t": t}``, on its own seeded
    coin, whatever it learns: a stand-in for two models whose lead changes hands."""

    def __init__(self, skills: tuple[tuple[int, float], ...], seed: int) -> None:
        self.skills = skills
        self.seed = seed
        self._rng = random.Random(seed)
        self._y: dict[int, Any] = {}

    def learn_one(self, x: dict[str, Any], y: Any) -> None:
        pass

    def predict_proba_one(self, x: dict[str, Any]) -> dict[Any, float]:
        t = x["t"]
        skill = next(s for until, s in self.skills if t < until)
        right = self._rng.random() < skill
        y = x["y"]
        return {y if right else not y: 1.0}


def test_switches_are_at_least_a_window_apart_and_back_needs_a_fresh_window() -> None:
    window, events = 300, 6000
    # The lead changes hands every 200 events, by far more than the margin: without
    # hysteresis the serving model would change every 200 events.
    a = Scripted(tuple((t + 200, 0.95 if t // 200 % 2 else 0.55) for t in range(0, events, 200)), 1)
    b = Scripted(tuple((t + 200, 0.55 if t // 200 % 2 else 0.95) for t in range(0, events, 200)), 2)
    learner = learner_with(a, [("b", b)], window=window, margin=0.05)
    stream = (({"t": t, "y": t % 3 == 0}, t % 3 == 0) for t in range(events))
    taken = switches(run(learner, stream))
    gaps = [later.offset - earlier.offset for earlier, later in pairwise(taken)]
    assert len(taken) > 5  # the lead did change hands, many times
    assert all(gap >= window for gap in gaps), gaps
    assert taken[0].offset >= window - 1


def test_models_of_equal_skill_do_not_flap_with_the_default_settings() -> None:
    # Right 80 % of the time each, independently: they disagree on 32 % of the events,
    # and over a window of 1,000 one leads the other by more than 2 points in about one
    # window in eight. The significance test leaves about one switch in 700 windows
    # (a lead of 3 standard deviations): here at most one in 50 windows, never back.
    even = ((10**9, 0.8),)
    window, margin = RunSettings.model_fields["challenger_window"].default, 0.02
    assert margin == RunSettings.model_fields["challenger_margin"].default
    learner = learner_with(Scripted(even, 1), [("twin", Scripted(even, 2))], window, margin)
    stream = (({"t": t, "y": t % 2 == 0}, t % 2 == 0) for t in range(50 * window))
    assert len(switches(run(learner, stream))) <= 1


def test_a_regressor_takes_over_when_its_mae_is_lower_by_the_margin() -> None:
    mean = dummy.StatisticRegressor(stats.Mean())
    linear = preprocessing.StandardScaler() | linear_model.LinearRegression()
    learner = learner_with(mean, [("linear", linear)], window=100, margin=0.5)
    rng = random.Random(5)
    stream = []
    for _ in range(600):
        x = {"a": rng.uniform(-1, 1)}
        stream.append((x, 10 * x["a"] + rng.gauss(0, 0.1)))
    (switch,) = switches(run(learner, stream))
    assert switch.metric == "mae"
    assert switch.challenger_score < 0.5 * switch.serving_score
    assert learner.model_name == "linear"


# -- late labels -------------------------------------------------------------------------------


def test_late_labels_score_each_model_on_its_prediction_when_the_event_came() -> None:
    stream = list(separable(1200, seed=6))
    learner = learner_with(lr(), [("prior", dummy.PriorClassifier())], 100, margin=0.0)
    alone = PartitionLearner(dummy.PriorClassifier(), drift_action="none")
    for reference in (learner, alone):
        # Every third event's label comes 50 events later.
        for offset, (x, y) in enumerate(stream):
            if offset % 3 == 0:
                reference.hold(x, f"e{offset}", float(offset), offset)
            else:
                reference.step(x, y, offset)
            late = offset - 50
            if late >= 0 and late % 3 == 0:
                assert reference.join(f"e{late}", stream[late][1], float(offset), offset)
    assert learner.challengers is not None
    (prior,) = (s for s in learner.challengers.scores() if s.name == "prior")
    assert alone.cumulative.total > 1000
    assert prior.cumulative == alone.cumulative.get()
    assert prior.rolling == alone.rolling.get()


def test_a_late_label_can_make_the_switch_and_predictions_from_before_it_are_not_paired() -> None:
    learner = learner_with(dummy.NoChangeClassifier(), [("lr", lr())], window=50, margin=0.05)
    stream = list(separable(200, seed=7))
    for offset, (x, _) in enumerate(stream):
        learner.hold(x, f"e{offset}", 0.0, offset)
    outcomes = []
    for offset, (_, y) in enumerate(stream):
        learner.join(f"e{offset}", y, 1.0, 200 + offset)
        outcomes += learner.drain_outcomes()
    (switch,) = switches(outcomes)
    # The duel of the new serving model starts empty: the events held before the switch
    # were predicted by the other model, so they count for nobody's window.
    assert switch.offset == 200 + 49
    assert learner.challengers is not None
    assert learner.challengers.challengers[0].duel.count == 0


# -- drift, retrains --------------------------------------------------------------------------


def test_a_reset_leaves_the_challengers_models_alone_and_restarts_their_windows() -> None:
    learner = learner_with(lr(), [("other", lr())], window=1000, margin=0.0, drift_action="reset")
    assert learner.challengers is not None
    other = learner.challengers.challengers[0]
    model = other.model
    flipped = ((x, not y if i >= 500 else y) for i, (x, y) in enumerate(separable(1000)))
    outcomes = run(learner, flipped)
    resets = [o for o in outcomes if isinstance(o, ModelReset)]
    assert resets
    assert other.model is model  # learned all along, never reset
    assert other.duel.count <= 1000 - resets[-1].offset - 1
    assert other.cumulative.total == 1000


def test_no_switch_while_a_retrain_is_in_flight() -> None:
    weak = dummy.NoChangeClassifier()
    learner = learner_with(weak, [("lr", lr())], 50, 0.05, drift_action="retrain")
    learner.retrain = RetrainJob(learner.fresh_model(), 300, 20_000, pool=(0, 1))
    stream = list(separable(300, seed=8))
    assert switches(run(learner, stream[:200])) == []
    learner.retrain = None  # decided: the next window to end decides
    (switch,) = switches(run(learner, stream[200:250], start=200))
    assert switch.offset == 249


# -- checkpoints --------------------------------------------------------------------------------


def test_a_checkpoint_mid_window_restores_challengers_exactly() -> None:
    stream = list(separable(1200, seed=9))
    learner = learner_with(dummy.NoChangeClassifier(), [("lr", lr())], window=500, margin=0.05)
    run(learner, stream[:300])  # 300 events into the first window
    blob = encode_checkpoint(PartitionState(learner, SequenceTracker()), next_offset=300, key=None)
    restored = decode_checkpoint(blob, key=None).state  # through the restricted unpickler
    assert isinstance(restored, PartitionState)
    twin = restored.learner
    assert twin.challengers is not None and learner.challengers is not None
    assert twin.challengers.challengers[0].duel.count == 300
    after = run(learner, stream[300:], start=300)
    after_restore = run(twin, stream[300:], start=300)
    assert switches(after) == switches(after_restore)
    assert switches(after)[0].offset == 499
    assert twin.challengers.scores() == learner.challengers.scores()
    assert (twin.model_name, twin.model_version) == (learner.model_name, learner.model_version)


def test_a_restored_learner_takes_this_runs_challengers_and_keeps_what_serves() -> None:
    learner = learner_with(dummy.NoChangeClassifier(), [("lr", lr())], window=50, margin=0.05)
    run(learner, separable(100))
    assert learner.model_name == "lr"
    serving_model = learner.model
    # The next run: --model as before, lr dropped, another challenger added.
    added, dropped = attach(
        learner, ("serving", dummy.NoChangeClassifier()), [("prior", dummy.PriorClassifier())],
        window=50, margin=0.05,
    )  # fmt: skip
    assert (added, dropped) == (["prior"], [])
    assert learner.model is serving_model and learner.model_name == "lr"
    assert learner.challengers is not None
    assert [c.name for c in learner.challengers.challengers] == ["serving", "prior"]
    # A run without challengers: the restored serving model serves on alone.
    assert attach(learner, ("serving", dummy.NoChangeClassifier()), [], 50, 0.05) == (
        [],
        ["serving", "prior"],
    )
    assert learner.challengers is None and learner.model is serving_model


def test_a_learner_from_before_challengers_takes_them_on() -> None:
    old = PartitionLearner(lr(), drift_action="none")
    run(old, separable(50))
    assert old.model_name is None  # the class default, as an old checkpoint reads
    attach(old, ("serving", lr()), [("prior", dummy.PriorClassifier())], 50, 0.0)
    assert old.model_name == "serving"
    run(old, separable(10), start=50)
    assert old.challengers is not None
    # Untrained, its first guess is None: learned, not scored (as the serving model's).
    assert old.challengers.challengers[0].cumulative.total == 9


# -- specs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("linear_model.NoSuchModel", "has no name 'NoSuchModel'"),
        ("linear_model._base.GLM", "the private name '_base'"),
        ("sklearn:linear_model._logistic.LogisticRegression", "the private name '_logistic'"),
        ("sklearn:linear_model.NotAnEstimator", "has no public name 'NotAnEstimator'"),
        ("linear_model.LinearRegression", "is a model for regression"),
        ("x = linear_model.LogisticRegression", None),  # a name, then a fine spec
    ],
)
def test_challenger_specs_are_checked_at_start(spec: str, message: str | None) -> None:
    if message is None:
        assert [
            n for n, _ in parse_challengers([spec], "tree.HoeffdingTreeClassifier", CLASSIFICATION)
        ] == ["x"]
        return
    with pytest.raises(ModelSpecError, match="challenger") as refused:
        parse_challengers([spec], "tree.HoeffdingTreeClassifier", CLASSIFICATION)
    assert message in str(refused.value)


def test_a_name_given_twice_is_refused() -> None:
    with pytest.raises(ModelSpecError, match="given twice"):
        parse_challengers(
            ["linear_model.LogisticRegression"], "linear_model.LogisticRegression", CLASSIFICATION
        )
    with pytest.raises(ModelSpecError, match="given twice"):
        parse_challengers(
            ["a=linear_model.LogisticRegression", "a=tree.HoeffdingTreeClassifier"],
            "linear_model.LogisticRegression",
            CLASSIFICATION,
        )


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        ChallengerSet(CLASSIFICATION, "m", [], window=0)
    with pytest.raises(ValueError, match="margin"):
        ChallengerSet(CLASSIFICATION, "m", [], margin=-0.1)


def test_a_release_checkpoint_takes_challengers_on_and_serves_exactly_as_before() -> None:
    # A learner pickled before challengers existed: it reads no name, no challengers.
    blob = (FIXTURES / "reset-lr-v1.ckpt").read_bytes()
    restored = decode_checkpoint(blob, key=None).state.learner  # type: ignore[attr-defined]
    plain = decode_checkpoint(blob, key=None).state.learner  # type: ignore[attr-defined]
    assert restored.model_name is None and restored.challengers is None
    spec = "preprocessing.StandardScaler | linear_model.LogisticRegression"
    added, _ = attach(restored, (spec, lr()), [("prior", dummy.PriorClassifier())], 100, 0.02)
    assert added == ["prior"] and restored.model_name == spec
    events = list(datasets.Phishing())[800:]
    for offset, (x, y) in enumerate(events, start=800):
        # The serving model predicts and learns as it would have without challengers.
        assert restored.step(x, y, offset) == plain.step(x, y, offset)
    assert restored.challengers is not None
    assert restored.challengers.challengers[0].cumulative.total == len(events) - 1
