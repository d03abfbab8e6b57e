"""A regressor's learner: exact MAE against River, ADWIN on the absolute error (acting on
increases only), retrains gated on MAE, late labels, checkpoints, and drift handling that
beats no action on a drifting Friedman stream."""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing, tree

from learners.checkpoint import decode_checkpoint, encode_checkpoint
from learners.outcomes import (
    DriftDetected,
    ModelReset,
    RetrainDecided,
    RetrainRequested,
    Scores,
)
from learners.prequential import PartitionLearner
from learners.regression import RegressionLearner, learner_for
from learners.retraining import RegressionRetrainJob
from learners.sequence import SequenceTracker
from learners.spec import parse_model_spec
from learners.state import PartitionState
from stream.tools.generators import concept_stream

Pair = tuple[dict[Any, Any], Any]

MODELS = [
    "preprocessing.StandardScaler | linear_model.LinearRegression",
    "preprocessing.StandardScaler | tree.HoeffdingTreeRegressor(grace_period=50)",
    # Unscaled, its leaf models blow up on TrumpApproval (errors near 1e9): still exact.
    "tree.HoeffdingTreeRegressor(grace_period=50)",
]
DATASETS = {"trump": datasets.TrumpApproval, "chick": datasets.ChickWeights}


@pytest.mark.parametrize("spec", MODELS)
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_cumulative_mae_and_rmse_equal_progressive_val_score(spec: str, name: str) -> None:
    dataset = list(DATASETS[name]())
    learner = learner_for(parse_model_spec(spec), drift_action="none")
    assert isinstance(learner, RegressionLearner)
    for offset, (x, y) in enumerate(dataset):
        learner.step(x, y, offset)
    mae = evaluate.progressive_val_score(dataset, parse_model_spec(spec), metrics.MAE())
    rmse = evaluate.progressive_val_score(dataset, parse_model_spec(spec), metrics.RMSE())
    scores = learner.scores()
    assert scores is not None and scores.metric == "mae"
    assert scores.cumulative == pytest.approx(mae.get(), abs=1e-9, rel=0)
    assert scores.rmse_cumulative == pytest.approx(rmse.get(), abs=1e-9, rel=0)
    assert scores.cumulative == mae.get()  # the same running mean, to the last bit


@pytest.mark.parametrize("delay", [1, 50])
def test_late_labels_equal_progressive_val_score_with_delay(delay: int) -> None:
    spec = MODELS[0]
    dataset = list(datasets.TrumpApproval())
    learner = learner_for(parse_model_spec(spec), drift_action="none")
    offset = 0
    for i, (x, _) in enumerate(dataset):
        if i >= delay:
            learner.join(str(i - delay), dataset[i - delay][1], float(offset), offset)
            offset += 1
        learner.hold(x, str(i), float(offset), offset)
        offset += 1
    for i in range(len(dataset) - delay, len(dataset)):
        learner.join(str(i), dataset[i][1], float(offset), offset)
        offset += 1
    expected = evaluate.progressive_val_score(
        dataset, parse_model_spec(spec), metrics.MAE(), delay=delay
    )
    assert learner.learned == len(dataset)
    assert learner.cumulative.get() == pytest.approx(expected.get(), abs=1e-9, rel=0)


def test_rolling_scores_cover_the_last_window_of_errors() -> None:
    learner = learner_for(linear_model.LinearRegression(), drift_action="none", rolling_window=3)
    for offset, y in enumerate([10.0, 20.0, 30.0, 40.0, 50.0]):
        _, proba = learner.step({}, y, offset)
        assert proba is None
    errors: list[float] = []
    fresh = linear_model.LinearRegression()
    for y in [10.0, 20.0, 30.0, 40.0, 50.0]:
        errors.append(abs(fresh.predict_one({}) - y))
        fresh.learn_one({}, y)
    scores = learner.scores()
    assert scores is not None
    assert scores.rolling == pytest.approx(sum(errors[-3:]) / 3)
    assert scores.rmse_rolling == pytest.approx(math.sqrt(sum(e * e for e in errors[-3:]) / 3))


def test_a_classifiers_learner_refuses_a_regressor_and_the_factory_picks_the_task() -> None:
    with pytest.raises(ValueError, match="serves classification, not a model for regression"):
        PartitionLearner(linear_model.LinearRegression())
    assert type(learner_for(linear_model.LogisticRegression())) is PartitionLearner
    assert type(learner_for(tree.HoeffdingTreeRegressor())) is RegressionLearner


# -- the no-change baseline ---------------------------------------------------------------


def test_the_baseline_predicts_the_last_label_seen() -> None:
    learner = learner_for(linear_model.LinearRegression(), drift_action="none")
    for offset, y in enumerate([1.0, 4.0, 2.0, 2.0]):
        learner.step({"x": 1.0}, y, offset)
    scores = learner.scores()
    assert scores is not None
    # 4 vs 1, 2 vs 4, 2 vs 2: errors 3, 2, 0.
    assert scores.baseline_cumulative == pytest.approx(5 / 3)
    assert scores.baseline_rolling == pytest.approx(5 / 3)


def test_a_late_label_is_scored_against_the_label_last_seen_when_its_event_came() -> None:
    learner = PartitionLearner(tree.HoeffdingTreeClassifier(), drift_action="none")
    learner.step({"x": 1.0}, "a", 0)
    learner.hold({"x": 1.0}, "e1", 1.0, 1)  # the baseline would predict "a"
    learner.step({"x": 1.0}, "b", 2)  # "a" vs "b": a miss
    learner.join("e1", "a", 3.0, 3)  # "a" vs "a": a hit, though "b" came since
    scores = learner.scores()
    assert scores is not None and scores.metric == "accuracy"
    assert scores.baseline_cumulative == 0.5


def test_a_learner_pickled_before_the_baseline_existed_gets_one() -> None:
    learner = PartitionLearner(linear_model.LogisticRegression(), drift_action="none")
    learner.step({"x": 1.0}, True, 0)
    del learner.__dict__["baseline"]  # how a learner of an earlier release pickles
    restored = pickle.loads(pickle.dumps(learner))
    restored.step({"x": 1.0}, True, 1)
    restored.step({"x": 1.0}, False, 2)
    scores = restored.scores()
    assert scores is not None and scores.baseline_cumulative == 0.0  # True vs False


# -- drift and retraining ---------------------------------------------------------------------


def test_adwin_watches_the_absolute_error_and_acts_only_when_it_goes_up() -> None:
    # A constant target the model fits: the error falls (ADWIN may fire; no action).
    learner = learner_for(
        preprocessing.StandardScaler() | linear_model.LinearRegression(), drift_action="reset"
    )
    offset = 0
    for _ in range(3000):
        learner.step({"x": 1.0}, 5.0, offset)
        offset += 1
    assert learner.drain_outcomes() == [] and learner.model_version == 1
    # Then the target jumps: the absolute error goes up, and the model is reset.
    for _ in range(500):
        learner.step({"x": 1.0}, 500.0, offset)
        offset += 1
    outcomes = learner.drain_outcomes()
    assert [type(o) for o in outcomes[:2]] == [DriftDetected, ModelReset]
    drift = outcomes[0]
    assert isinstance(drift, DriftDetected) and drift.error_after > drift.error_before
    assert drift.error_after > 10.0  # an absolute error, not a 0/1 one


@pytest.mark.parametrize(
    ("candidate_errors", "serving_errors", "promoted"),
    [
        ([1.0, 1.0], [2.0, 2.0], True),
        ([2.0, 2.0], [2.0, 2.0], False),
        ([3.0, 1.0], [1.0, 1.0], False),
        ([0.5, 9.0], [1.0, 1.0], False),  # the sign test: one win, one loss
    ],
)
def test_a_candidate_is_promoted_only_if_it_wins_more_paired_events_at_the_cap(
    candidate_errors: list[float], serving_errors: list[float], promoted: bool
) -> None:
    class Fixed(linear_model.LinearRegression):
        """Predicts 0 and learns nothing: its error on label y is |y|."""

        def predict_one(self, x: dict[Any, Any]) -> float:
            return 0.0

        def learn_one(self, x: dict[Any, Any], y: Any) -> None:
            pass

    job = RegressionRetrainJob(Fixed(), holdout_events=2, max_holdout_events=2)
    job.replay_finished()
    for y, serving in zip(candidate_errors, serving_errors, strict=True):
        job.observe_live({}, y, serving)
    verdict = job.decide()
    assert verdict.metric == "mae"
    assert verdict.promoted is promoted
    assert verdict.candidate_score == sum(candidate_errors) / 2
    assert verdict.serving_score == sum(serving_errors) / 2


def _run(events: list[Pair], action: str) -> tuple[list[float], list[Any]]:
    """Step ``events`` (offset = index), replaying a requested range from the list; returns
    the absolute error of each prediction and the outcomes."""
    learner = learner_for(
        tree.HoeffdingTreeRegressor(grace_period=50), drift_action=action, max_retrain_events=5000
    )
    errors, outcomes = [], []
    for offset, (x, y) in enumerate(events):
        y_pred, _ = learner.step(x, y, offset)
        errors.append(abs(y_pred - y))
        for outcome in learner.drain_outcomes():
            outcomes.append(outcome)
            if isinstance(outcome, RetrainRequested):
                assert learner.retrain is not None
                for replayed in range(outcome.start_offset, outcome.end_offset):
                    learner.retrain.train(*events[replayed])
                learner.retrain.replay_finished()
                learner.settle_retrain()
                outcomes.extend(learner.drain_outcomes())
    return errors, outcomes


def test_on_a_drifting_friedman_stream_reset_and_retrain_beat_no_action() -> None:
    change, after = 3000, 3000
    events = list(concept_stream("friedman-drift", seed=4, count=change + after, drift_at=[change]))
    mae_after: dict[str, float] = {}
    for action in ("none", "reset", "retrain"):
        errors, outcomes = _run(events, action)
        mae_after[action] = sum(errors[change:]) / after
        drifts = [o for o in outcomes if isinstance(o, DriftDetected)]
        assert drifts and all(d.offset >= change for d in drifts), action  # none before
        if action == "retrain":
            decided = [o for o in outcomes if isinstance(o, RetrainDecided)]
            assert decided and decided[0].promoted and decided[0].metric == "mae"
            assert decided[0].candidate_score < decided[0].serving_score
    assert mae_after["reset"] < 0.95 * mae_after["none"], mae_after
    assert mae_after["retrain"] < 0.95 * mae_after["none"], mae_after


# -- checkpoints --------------------------------------------------------------------------


def test_a_regression_learner_goes_through_a_checkpoint_mid_retrain() -> None:
    learner = learner_for(
        preprocessing.StandardScaler() | linear_model.LinearRegression(), drift_action="retrain"
    )
    events = list(concept_stream("friedman-drift", seed=1, count=400))
    for offset, (x, y) in enumerate(events[:300]):
        learner.step(x, y, offset)
    learner.hold(events[300][0], "late", 300.0, 300)
    learner.retrain = RegressionRetrainJob(learner.fresh_model(), holdout_events=5)
    blob = encode_checkpoint(PartitionState(learner, SequenceTracker()), next_offset=301, key=b"k")
    state = decode_checkpoint(blob, key=b"k").state
    assert isinstance(state, PartitionState)
    restored = state.learner
    assert type(restored) is RegressionLearner
    assert type(restored.retrain) is RegressionRetrainJob
    assert restored.scores() == learner.scores()
    for same in (learner, restored):
        same.join("late", events[300][1], 301.0, 301)
        for offset, (x, y) in enumerate(events[301:], start=302):
            same.step(x, y, offset)
    assert restored.scores() == learner.scores()
    assert isinstance(restored.scores(), Scores)
