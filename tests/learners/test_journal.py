"""The journal undoes poison events: a learner rebuilt after each one is the learner that never
saw them (same predictions, accuracy, ADWIN, counts), whatever the snapshot cadence; snapshots
come every ``every`` events; consecutive errors are counted; skipped offsets stay bounded."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, cast

import pytest
from river import base, linear_model, preprocessing, tree

from learners.journal import Journal
from learners.outcomes import RetrainDecided, RetrainRequested
from learners.prequential import PartitionLearner
from learners.retraining import RetrainJob
from stream.tools.generators import concept_stream

Pair = tuple[dict[str, Any], Any]

MODELS: dict[str, Callable[[], base.Classifier]] = {
    "scaler-lr": lambda: cast(
        base.Classifier, preprocessing.StandardScaler() | linear_model.LogisticRegression()
    ),
    "scaler-tree": lambda: cast(
        base.Classifier,
        preprocessing.StandardScaler() | tree.HoeffdingTreeClassifier(grace_period=50),
    ),
}

# Two kinds of poison, both of which update half the pipeline before the error: a string
# feature (the scaler's statistics take the name, then the arithmetic fails) and a label the
# classifier cannot read (the scaler learned the features, then LogisticRegression raised; a
# tree takes any label, so for it every poison is a string feature).
POISON_AT = {
    5: "feature",
    6: "label",
    7: "feature",
    400: "label",
    1199: "feature",
    1201: "label",
    1240: "feature",
    1250: "label",
    1300: "feature",
    1850: "feature",
}


def _poisoned(x: dict[str, Any], y: Any, kind: str, model: str) -> Pair:
    if kind == "feature" or model != "scaler-lr":
        return {**x, "colour": "red"}, y
    return x, "cat"


def _stream(model: str, count: int = 2000) -> list[Pair]:
    """Sine with a concept change at 1,200 (resets happen) and every 9th event unlabelled."""
    events = []
    for offset, (x, y) in enumerate(concept_stream("sine", seed=11, drift_at=[1200], count=count)):
        if offset in POISON_AT:
            events.append(_poisoned(x, y, POISON_AT[offset], model))
        else:
            events.append((x, None if offset % 9 == 0 else y))
    return events


def _play_with_journal(
    learner: PartitionLearner, events: list[Pair], every: int
) -> tuple[PartitionLearner, Journal, dict[int, Any], list[int]]:
    """Step like the daemon does: keep each event, step it, undo it if the model raised;
    a snapshot after outcomes or when due."""
    journal = Journal(learner, every=every)
    predictions: dict[int, Any] = {}
    consecutive: list[int] = []
    for offset, (x, y) in enumerate(events):
        journal.kept.append((x, y, offset))
        try:
            predictions[offset] = learner.step(x, y, offset)
        except Exception:
            rebuilt = journal.undo_last(learner)
            assert rebuilt.poison_offset == offset
            assert rebuilt.lost == ()
            consecutive.append(rebuilt.consecutive_errors)
            learner = rebuilt.learner
            continue
        if learner.drain_outcomes() or journal.due:
            journal.snapshot(learner)
    return learner, journal, predictions, consecutive


def _play_clean(learner: PartitionLearner, events: list[Pair]) -> dict[int, Any]:
    predictions = {}
    for offset, (x, y) in enumerate(events):
        if offset not in POISON_AT:
            predictions[offset] = learner.step(x, y, offset)
            learner.drain_outcomes()
    return predictions


def _probes() -> list[dict[str, Any]]:
    return [x for x, _ in concept_stream("sea", seed=99, count=300)]


@pytest.mark.parametrize("every", [1, 50, 10_000])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_rebuilt_learner_equals_one_that_never_saw_the_poison_events(
    name: str, every: int
) -> None:
    events = _stream(name)
    poisoned = PartitionLearner(MODELS[name](), drift_action="reset")
    clean = PartitionLearner(MODELS[name](), drift_action="reset")

    rebuilt, journal, predictions, _ = _play_with_journal(poisoned, events, every)
    expected = _play_clean(clean, events)

    assert predictions == expected  # every event, before and after each poison
    assert set(journal.skipped) == set(POISON_AT)
    assert rebuilt.cumulative.get() == clean.cumulative.get()
    assert rebuilt.rolling.get() == clean.rolling.get()
    assert (rebuilt.detector.width, rebuilt.detector.total) == (
        clean.detector.width,
        clean.detector.total,
    )
    assert (rebuilt.learned, rebuilt.predicted, rebuilt.drifts, rebuilt.model_version) == (
        clean.learned,
        clean.predicted,
        clean.drifts,
        clean.model_version,
    )
    assert clean.model_version > 1, "the stream must make the learner reset its model"
    for x in _probes():
        assert rebuilt.model.predict_proba_one(x) == clean.model.predict_proba_one(x)


def test_snapshots_come_every_n_events_and_bound_what_a_rebuild_steps_again() -> None:
    events = [({"a": float(i % 7)}, i % 2 == 0) for i in range(23)]
    learner = PartitionLearner(MODELS["scaler-lr"](), drift_action="none")
    journal = Journal(learner, every=5)
    snapshots = 0
    for offset, (x, y) in enumerate(events):
        journal.kept.append((x, y, offset))
        learner.step(x, y, offset)
        assert len(journal.kept) <= journal.every
        if journal.due:
            journal.snapshot(learner)
            snapshots += 1
    assert snapshots == 4
    assert len(journal.kept) == 3  # events 20, 21, 22

    journal.kept.append(({"a": "red"}, True, 23))
    with pytest.raises(TypeError):
        learner.step({"a": "red"}, True, 23)
    rebuilt = journal.undo_last(learner)
    assert rebuilt.replayed == 3  # only the events since the last snapshot
    assert rebuilt.learner.learned == 23
    assert journal.kept == []  # a fresh snapshot after the rebuild


def test_consecutive_errors_are_counted_until_an_event_is_learned() -> None:
    events = [
        ({"a": 1.0}, True),
        ({"a": "x"}, True),
        ({"a": "y"}, False),
        ({"a": "z"}, True),
        ({"a": 2.0}, False),
        ({"a": "w"}, True),
    ]
    learner = PartitionLearner(MODELS["scaler-lr"](), drift_action="none")
    _, journal, _, consecutive = _play_with_journal(learner, events, every=100)
    assert consecutive == [1, 2, 3, 1]
    assert journal.consecutive_errors == 1


def test_an_unlabelled_prediction_is_a_success_that_ends_a_run_of_errors() -> None:
    events = [({"a": "x"}, True), ({"a": 1.0}, None), ({"a": "y"}, True)]
    learner = PartitionLearner(MODELS["scaler-lr"](), drift_action="none")
    _, _, _, consecutive = _play_with_journal(learner, events, every=100)
    assert consecutive == [1, 1]


def test_skipped_offsets_are_bounded_and_the_newest_are_kept() -> None:
    learner = PartitionLearner(MODELS["scaler-lr"](), drift_action="none")
    journal = Journal(learner, every=100, remember=4)
    for offset in range(10):
        journal.kept.append(({"a": 1.0}, True, offset))
        journal.refuse_last()
    assert len(journal.skipped) <= 4
    assert 9 in journal.skipped and 0 not in journal.skipped


class _Flaky(base.Classifier):
    """Raises on an event marked ``flaky`` only while the module-level switch is on: a model
    whose errors do not depend on its own state alone (it must not happen, but might)."""

    fail = False

    def learn_one(self, x: dict[str, Any], y: Any) -> None:
        if x.get("flaky") and _Flaky.fail:
            raise RuntimeError("flaky")

    def predict_proba_one(self, x: dict[str, Any]) -> dict[Any, float]:
        return {True: 0.6, False: 0.4}


def test_an_event_that_raises_only_when_stepped_again_is_reported_lost() -> None:
    learner = PartitionLearner(_Flaky(), drift_action="none")
    journal = Journal(learner, every=100)
    for offset, x in enumerate([{"a": 1.0}, {"flaky": 1.0}, {"a": 2.0}]):
        journal.kept.append((x, True, offset))
        learner.step(x, True, offset)
    _Flaky.fail = True
    try:
        journal.kept.append(({"poison": 1.0}, True, 3))
        rebuilt = journal.undo_last(learner)
    finally:
        _Flaky.fail = False
    assert rebuilt.lost == (1,)
    assert rebuilt.learner.learned == 2
    assert journal.skipped == {1, 3}


def test_the_snapshot_is_a_copy_that_later_steps_do_not_touch() -> None:
    learner = PartitionLearner(MODELS["scaler-lr"](), drift_action="none")
    journal = Journal(learner, every=100)
    for offset, (x, y) in enumerate(itertools.islice(concept_stream("sea", seed=1), 50)):
        journal.kept.append((x, y, offset))
        learner.step(x, y, offset)
    journal.kept.append(({"a": "red"}, True, 50))
    rebuilt = journal.undo_last(learner).learner
    assert rebuilt is not learner
    assert rebuilt.learned == learner.learned
    assert rebuilt.cumulative.get() == learner.cumulative.get()
    for x in _probes():
        assert rebuilt.model.predict_proba_one(x) == learner.model.predict_proba_one(x)


def _play_retrain(
    events: list[Pair], poison: set[int], replay_after: int
) -> tuple[PartitionLearner, dict[int, Any], list[Any]]:
    """Step with ``drift_action="retrain"``; play the replayer's part: ``replay_after`` offsets
    after a request, train the candidate on the requested range (skipping the offsets the
    journal skipped) and finish the replay. Poison offsets are stepped (and undone) only when
    ``poison`` is not empty; a clean run leaves them out."""
    learner = PartitionLearner(
        MODELS["scaler-lr"](), drift_action="retrain", min_retrain_events=200, holdout_events=100
    )
    journal = Journal(learner, every=40)
    predictions: dict[int, Any] = {}
    decisions: list[Any] = []
    # (replay at offset, start, end, the job): like the Replayer, it holds the job it was given
    pending: tuple[int, int, int, RetrainJob] | None = None
    for offset, (x, y) in enumerate(events):
        if pending is not None and offset == pending[0]:
            job = pending[3]
            skip = journal.skipped if poison else set(POISON_AT)  # clean: no such events
            for o in range(pending[1], pending[2]):
                if o not in skip and events[o][1] is not None:
                    job.train(*events[o])
            job.replay_finished()
            learner.settle_retrain()
            pending = None
        if offset in POISON_AT and not poison:
            continue
        journal.kept.append((x, y, offset))
        try:
            predictions[offset] = learner.step(x, y, offset)
        except Exception:
            learner = journal.undo_last(learner).learner
            continue
        outcomes = learner.drain_outcomes()
        for outcome in outcomes:
            if isinstance(outcome, RetrainRequested):
                assert learner.retrain is not None
                start, end = outcome.start_offset, outcome.end_offset
                pending = (offset + replay_after, start, end, learner.retrain)
            elif isinstance(outcome, RetrainDecided):
                decisions.append(outcome)
        if outcomes or journal.due:
            journal.snapshot(learner)
    return learner, predictions, decisions


# The retrain is requested at offset 1230 (pool 1004..1230, poison 1199 and 1201 in it);
# poison at 1240, 1250 and 1300 comes while the job replays, or shadows (after 1260).
@pytest.mark.parametrize("replay_after", [30, 150])
def test_a_retrain_in_flight_carries_over_a_rebuild_unharmed(replay_after: int) -> None:
    events = _stream("scaler-lr")
    poisoned, predictions, decisions = _play_retrain(events, set(POISON_AT), replay_after)
    clean, expected, expected_decisions = _play_retrain(events, set(), replay_after)
    assert expected_decisions, "the stream must lead to a retrain decision"
    assert decisions == expected_decisions
    assert predictions == expected
    assert poisoned.model_version == clean.model_version
    assert poisoned.cumulative.get() == clean.cumulative.get()
    for x in _probes():
        assert poisoned.model.predict_proba_one(x) == clean.model.predict_proba_one(x)
