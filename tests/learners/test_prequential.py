"""PartitionLearner with plain lists: test-then-train exactness, unlabelled events, the drift
policy (act on a rise of the error only), resets, and pickling mid-stream."""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import pytest
from river import base, evaluate, linear_model, metrics, preprocessing, tree
from river.datasets import synth

from learners.outcomes import DriftDetected, ModelReset, Outcome
from learners.prequential import PartitionLearner
from stream.tools.generators import concept_stream

Pair = tuple[dict[Any, Any], Any]


def _lr() -> base.Classifier:
    # A pipeline is a classifier at run time; River's type hints do not say so.
    return cast(base.Classifier, preprocessing.StandardScaler() | linear_model.LogisticRegression())


def _tree() -> base.Classifier:
    return tree.HoeffdingTreeClassifier(grace_period=50)


MODELS: dict[str, Callable[[], base.Classifier]] = {
    "lr": _lr,
    "tree": _tree,
    "adaptive-tree": lambda: tree.HoeffdingAdaptiveTreeClassifier(grace_period=50, seed=1),
}


def _play(
    learner: PartitionLearner, pairs: Iterable[Pair], first_offset: int = 0
) -> tuple[list[tuple[Any, Any]], list[tuple[int, Outcome]]]:
    """Step every pair; returns the predictions and the outcomes with the offset seen at."""
    predictions: list[tuple[Any, Any]] = []
    outcomes: list[tuple[int, Outcome]] = []
    for offset, (x, y) in enumerate(pairs, start=first_offset):
        predictions.append(learner.step(x, y, offset))
        outcomes.extend((offset, outcome) for outcome in learner.drain_outcomes())
    return predictions, outcomes


# -- exactness ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_test_then_train_equals_progressive_val_score_step_by_step(name: str) -> None:
    dataset = list(concept_stream("agrawal", seed=3, drift_at=[1000], count=2000))
    learner = PartitionLearner(MODELS[name](), drift_action="none")
    reference = evaluate.iter_progressive_val_score(
        dataset, MODELS[name](), metrics.Accuracy(), step=1, yield_predictions=True
    )
    for offset, ((x, y), state) in enumerate(zip(dataset, reference, strict=True)):
        y_pred, _ = learner.step(x, y, offset)
        assert y_pred == state["Prediction"], offset
        assert learner.cumulative.get() == state["Accuracy"].get(), offset
    assert learner.learned == len(dataset)
    assert learner.cumulative.get() == pytest.approx(
        evaluate.progressive_val_score(dataset, MODELS[name](), metrics.Accuracy()).get(),
        abs=1e-12,
        rel=0,
    )


def test_an_untrained_tree_predicts_none_which_is_learned_but_not_scored() -> None:
    dataset = list(synth.SEA(variant=0, seed=4).take(500))
    learner = PartitionLearner(_tree(), drift_action="none")
    predictions, _ = _play(learner, dataset)

    assert predictions[0] == (None, {})  # nothing learned yet: no opinion
    unscored = sum(1 for y_pred, _ in predictions if y_pred is None)
    assert unscored == 1
    assert learner.learned == len(dataset)
    assert learner.cumulative.total == len(dataset) - unscored
    assert len(learner.rolling) == len(dataset) - unscored
    # ADWIN watches the scored events only.
    assert learner.detector.width == len(dataset) - unscored
    expected = evaluate.progressive_val_score(dataset, _tree(), metrics.Accuracy())
    assert learner.cumulative.get() == expected.get()


def test_probabilities_come_with_the_prediction_and_agree_with_it() -> None:
    learner = PartitionLearner(_lr(), drift_action="none")
    predictions, _ = _play(learner, synth.SEA(variant=0, seed=5).take(300))
    for y_pred, proba in predictions:
        assert proba is not None
        assert sum(proba.values()) == pytest.approx(1.0)
        assert y_pred == max(proba, key=proba.get)


def test_rolling_accuracy_is_the_accuracy_of_the_last_window_of_scored_events() -> None:
    dataset = list(concept_stream("sea", seed=6, drift_at=[800], count=2000))
    learner = PartitionLearner(_lr(), drift_action="none", rolling_window=250)
    predictions, _ = _play(learner, dataset)
    hits = [y_pred == y for (y_pred, _), (_, y) in zip(predictions, dataset, strict=True)]
    assert learner.rolling.get() == sum(hits[-250:]) / 250


# -- unlabelled events -----------------------------------------------------------------------


def test_unlabelled_events_are_predicted_and_counted_but_not_learned() -> None:
    labelled = list(synth.SEA(variant=0, seed=7).take(1200))
    probes = [x for x, _ in synth.SEA(variant=0, seed=8).take(600)]
    learner = PartitionLearner(_lr(), drift_action="reset")
    twin = PartitionLearner(_lr(), drift_action="reset")  # never sees the unlabelled ones
    offset = 0
    for i, (x, y) in enumerate(labelled):
        if i % 2 == 0:
            unlabelled = probes[i // 2]
            expected = twin.predict(unlabelled)
            assert learner.step(unlabelled, None, offset) == expected
            offset += 1
        assert learner.step(x, y, offset) == twin.step(x, y, offset)
        offset += 1

    assert learner.predicted == len(probes)
    assert twin.predicted == 0
    assert learner.learned == twin.learned == len(labelled)
    assert learner.cumulative.total == twin.cumulative.total == len(labelled)
    assert learner.cumulative.get() == twin.cumulative.get()
    assert learner.detector.width == twin.detector.width


def test_an_unlabelled_event_leaves_the_model_untouched() -> None:
    learner = PartitionLearner(_lr(), drift_action="none")
    _play(learner, synth.SEA(variant=0, seed=9).take(200))
    x = {0: 1.0, 1: 9.0, 2: 3.0}
    before = pickle.dumps(learner.model)
    for offset in range(200, 210):
        learner.step(x, None, offset)
    assert pickle.dumps(learner.model) == before
    assert learner.last_offset == 199  # the last *learned* offset


# -- the drift policy --------------------------------------------------------------------------


def _noise_then_concept(seed: int) -> Iterator[Pair]:
    """Coin-flip labels (no model can beat 50 %), then a clean concept: the error *drops*."""
    rng = random.Random(seed)
    for x, _ in synth.SEA(variant=0, seed=seed).take(600):
        yield x, rng.random() < 0.5
    yield from synth.SEA(variant=0, seed=seed + 100).take(3000)


@pytest.mark.parametrize("action", ["reset", "retrain"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adwin_firing_on_an_improvement_is_not_acted_on(action: str, seed: int) -> None:
    learner = PartitionLearner(_tree(), drift_action=action)
    model = learner.model
    fired = 0
    for offset, (x, y) in enumerate(_noise_then_concept(seed)):
        learner.step(x, y, offset)
        # The learner keeps its detector when it does not act, so this is ADWIN's own word.
        fired += learner.detector.drift_detected
        assert learner.drain_outcomes() == [], offset
    assert fired >= 1, "the scenario must make ADWIN fire, or it tests nothing"
    assert learner.drifts == 0
    assert learner.model_version == 1
    assert learner.model is model
    assert learner.retrain is None
    assert learner.cumulative.get() > 0.8  # the improvement was kept


@pytest.mark.parametrize("seed", range(4))
def test_a_stationary_stream_produces_no_drift(seed: int) -> None:
    for model, stream in (
        (_lr(), synth.SEA(variant=0, seed=seed, noise=0.1).take(5000)),
        (_tree(), concept_stream("agrawal", seed=seed, count=4000)),
    ):
        learner = PartitionLearner(model, drift_action="reset")
        _, outcomes = _play(learner, stream)
        assert outcomes == []
        assert (learner.drifts, learner.model_version) == (0, 1)
        assert learner.model is model


def _abrupt(generator: str, seed: int) -> list[Pair]:
    return list(concept_stream(generator, seed=seed, drift_at=[CHANGE], count=CHANGE + 2000))


CHANGE = 3000
ABRUPT = [("sea", _lr), ("agrawal", _tree)]


@pytest.mark.parametrize(("generator", "make"), ABRUPT, ids=[g for g, _ in ABRUPT])
@pytest.mark.parametrize("seed", [0, 1])
def test_an_abrupt_change_is_detected_soon_and_reset_gives_a_fresh_model(
    generator: str, make: Callable[[], base.Classifier], seed: int
) -> None:
    dataset = _abrupt(generator, seed)
    probes = [x for x, _ in dataset[:50]]
    learner = PartitionLearner(make(), drift_action="reset")
    resets: list[tuple[int, ModelReset]] = []
    drifts: list[tuple[int, DriftDetected]] = []
    for offset, (x, y) in enumerate(dataset):
        old_model = learner.model
        learner.step(x, y, offset)
        for outcome in learner.drain_outcomes():
            if isinstance(outcome, ModelReset):
                resets.append((offset, outcome))
                # Fresh: a new object that answers exactly like an untrained clone.
                assert learner.model is not old_model
                fresh = make()
                for probe in probes:
                    assert learner.model.predict_proba_one(probe) == fresh.predict_proba_one(probe)
                assert learner.detector.width == 0  # a new error stream, a new detector
            else:
                assert isinstance(outcome, DriftDetected)
                drifts.append((offset, outcome))

    assert drifts, "the change was not detected"
    first_offset, first = drifts[0]
    assert CHANGE <= first_offset < CHANGE + 1000
    assert first.offset == first_offset
    assert first.error_after > first.error_before
    assert first.action == "reset"
    assert first.width > 0
    assert all(offset >= CHANGE for offset, _ in drifts)
    # One reset per drift, each bumping the version by one.
    assert [offset for offset, _ in resets] == [offset for offset, _ in drifts]
    assert [r.model_version for _, r in resets] == list(range(2, len(resets) + 2))
    assert learner.model_version == len(resets) + 1 == learner.drifts + 1


def test_drift_action_none_reports_the_drift_but_keeps_the_model() -> None:
    dataset = _abrupt("sea", 0)
    reset = PartitionLearner(_lr(), drift_action="reset")
    _, reset_outcomes = _play(reset, dataset[: CHANGE + 1000])
    first_detection = next(o for _, o in reset_outcomes if isinstance(o, DriftDetected))

    learner = PartitionLearner(_lr(), drift_action="none")
    model = learner.model
    _, outcomes = _play(learner, dataset)
    detections = [o for _, o in outcomes if isinstance(o, DriftDetected)]
    assert detections and detections[0] == DriftDetected(
        first_detection.offset,
        first_detection.learned,
        first_detection.error_before,
        first_detection.error_after,
        first_detection.width,
        "none",
    )
    assert all(isinstance(o, DriftDetected) for _, o in outcomes)
    assert learner.model is model
    assert learner.model_version == 1


def test_an_unknown_drift_action_is_refused() -> None:
    with pytest.raises(ValueError, match="drift_action"):
        PartitionLearner(_lr(), drift_action="maybe")


# -- checkpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lr", "tree"])
def test_a_pickled_learner_continues_exactly_like_its_twin(name: str) -> None:
    dataset = list(
        concept_stream(
            "agrawal" if name == "tree" else "sea", seed=11, drift_at=[2500, 3500], count=5000
        )
    )
    # Every fifth event unlabelled, so both counters and both paths are exercised.
    events = [(x, None if i % 5 == 4 else y) for i, (x, y) in enumerate(dataset)]
    learner = PartitionLearner(MODELS[name](), drift_action="reset", rolling_window=300)
    _play(learner, events[:2000])

    restored = pickle.loads(pickle.dumps(learner))
    assert restored is not learner and restored.model is not learner.model

    rest = events[2000:]
    original_predictions, original_outcomes = _play(learner, rest, first_offset=2000)
    restored_predictions, restored_outcomes = _play(restored, rest, first_offset=2000)
    assert restored_predictions == original_predictions
    assert restored_outcomes == original_outcomes
    assert any(isinstance(o, ModelReset) for _, o in original_outcomes), "no reset exercised"
    for attribute in ("learned", "predicted", "drifts", "model_version", "last_offset"):
        assert getattr(restored, attribute) == getattr(learner, attribute), attribute
    assert restored.cumulative.get() == learner.cumulative.get()
    assert restored.rolling.get() == learner.rolling.get()
    assert restored.detector.width == learner.detector.width
    assert restored.detector.estimation == learner.detector.estimation


def test_pickling_does_not_disturb_the_learner() -> None:
    dataset = list(synth.SEA(variant=0, seed=12).take(1000))
    learner, twin = PartitionLearner(_lr()), PartitionLearner(_lr())
    for offset, (x, y) in enumerate(dataset):
        if offset % 100 == 0:
            pickle.dumps(learner)  # as a checkpoint every 100 events would
        assert learner.step(x, y, offset) == twin.step(x, y, offset)
    assert learner.cumulative.get() == twin.cumulative.get()
