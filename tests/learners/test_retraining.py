# Over 400 lines: every promote/reject/abandon path of a retrain, on one shared plain-list log.
"""Retraining with plain lists: which offsets a retrain asks for, when a candidate is promoted
or rejected (with the figures it reports), and a learner pickled in the middle of a retrain.

The tests play the application's part: they replay the requested offset range from a list
(the "log") into the job, then call ``replay_finished`` and keep stepping live events.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from typing import Any, cast

import pytest
from river import base, linear_model, preprocessing
from river.datasets import synth

from learners.outcomes import (
    DriftDetected,
    Outcome,
    RetrainAbandoned,
    RetrainDecided,
    RetrainRequested,
)
from learners.prequential import PartitionLearner
from learners.retraining import REPLAYING, SHADOWING, RetrainJob

Pair = tuple[dict[Any, Any], Any]
#: Labelled event i sits at offset 3i; an unlabelled one at 3i + 1; 3i + 2 is a record that
#: never reaches the learner (a dead letter, say). Offsets are not a count of labelled events.
STRIDE = 3


def _lr() -> base.Classifier:
    # A pipeline is a classifier at run time; River's type hints do not say so.
    return cast(base.Classifier, preprocessing.StandardScaler() | linear_model.LogisticRegression())


def _inverted(pairs: Iterable[Pair]) -> Iterator[Pair]:
    return ((x, not y) for x, y in pairs)


def _concept(seed: int, n: int) -> list[Pair]:
    return list(synth.SEA(variant=0, seed=seed).take(n))


def _change_after(n_before: int, seed: int = 0) -> list[Pair]:
    """``n_before`` events of a concept, then 2,000 events with every label inverted."""
    return _concept(seed, n_before) + list(_inverted(_concept(seed + 10, 2000)))


def _until_request(
    learner: PartitionLearner, events: list[Pair]
) -> tuple[int, DriftDetected, RetrainRequested]:
    """Step labelled events (with an unlabelled one after each) until a retrain is requested;
    returns the index of the labelled event that triggered it and the two outcomes."""
    for i, (x, y) in enumerate(events):
        learner.step(x, y, STRIDE * i)
        outcomes = learner.drain_outcomes()
        learner.step(x, None, STRIDE * i + 1)
        if outcomes:
            drift, request = outcomes
            assert isinstance(drift, DriftDetected) and isinstance(request, RetrainRequested)
            return i, drift, request
    raise AssertionError("no retrain was requested")


def _labelled_in(request: RetrainRequested) -> list[int]:
    """Indices of the labelled events whose offsets the request covers."""
    offsets = range(request.start_offset, request.end_offset)
    return [offset // STRIDE for offset in offsets if offset % STRIDE == 0]


# -- what a retrain asks for -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "bound"),
    [
        ({"min_retrain_events": 10}, "width"),
        ({"min_retrain_events": 1500}, "min"),
        ({"min_retrain_events": 5, "max_retrain_events": 20}, "max"),
    ],
    ids=["width", "min", "max"],
)
def test_a_retrain_asks_for_the_events_since_the_estimated_change_within_min_and_max(
    settings: dict[str, int], bound: str
) -> None:
    learner = PartitionLearner(_lr(), drift_action="retrain", **settings)
    trigger, drift, request = _until_request(learner, _change_after(3000))

    # The change is at labelled event 3000: ADWIN's window still holds older events, the
    # estimate from the serving model's errors (learners/changepoint.py) does not.
    since_change = trigger + 1 - 3000
    expected = {"width": since_change, "min": 1500, "max": 20}[bound]
    assert since_change < drift.width, "ADWIN's window reaches back before the change"
    assert 20 < since_change < drift.width < 1500, "the scenario must separate the bounds"
    indices = _labelled_in(request)
    # The range ends just after the triggering event and holds exactly the newest
    # ``expected`` labelled events, however many other records sit between them.
    assert request.end_offset == STRIDE * trigger + 1
    assert request.start_offset == STRIDE * indices[0]
    assert indices == list(range(trigger - expected + 1, trigger + 1))
    assert drift.offset == STRIDE * trigger


def test_a_retrain_asks_for_no_more_than_the_labelled_events_seen() -> None:
    learner = PartitionLearner(_lr(), drift_action="retrain", min_retrain_events=5000)
    trigger, _, request = _until_request(learner, _change_after(150))
    assert trigger < 5000
    assert request.start_offset == 0
    assert _labelled_in(request) == list(range(trigger + 1))


def test_a_requested_retrain_starts_with_a_fresh_candidate_while_the_model_serves_on() -> None:
    learner = PartitionLearner(_lr(), drift_action="retrain")
    serving = learner.model
    _until_request(learner, _change_after(3000))
    job = learner.retrain
    assert job is not None and job.state == REPLAYING
    probe: dict[Any, Any] = {0: 5.0, 1: 5.0, 2: 5.0}
    assert job.candidate.predict_proba_one(probe) == _lr().predict_proba_one(probe)
    assert job.candidate is not serving
    assert learner.model is serving
    assert learner.model_version == 1


# -- decisions through the learner ---------------------------------------------------------------


def _replay(
    learner: PartitionLearner, log: list[Pair], request: RetrainRequested, invert: bool = False
) -> int:
    """What the application's replayer does: the requested labelled events, in order."""
    job = learner.retrain
    assert job is not None
    pool = [log[i] for i in _labelled_in(request)]
    for x, y in _inverted(pool) if invert else pool:
        job.train(x, y)
    job.replay_finished()
    return len(pool)


def _live_until_decided(
    learner: PartitionLearner, live: list[Pair], first: int
) -> tuple[RetrainDecided, list[bool]]:
    """Step live events until the decision; returns it and the serving model's hits."""
    hits = []
    for i, (x, y) in enumerate(live, start=first):
        y_pred, _ = learner.step(x, y, STRIDE * i)
        hits.append(y_pred == y)
        decided = [o for o in learner.drain_outcomes() if isinstance(o, RetrainDecided)]
        if decided:
            return decided[0], hits
    raise AssertionError("no decision")


def _candidate_hits(pool: list[Pair], holdout: list[Pair]) -> list[bool]:
    """An independent recomputation: train a fresh model on the pool, then test-then-train."""
    twin = _lr()
    for x, y in pool:
        twin.learn_one(x, y)
    hits = []
    for x, y in holdout:
        hits.append(twin.predict_one(x) == y)
        twin.learn_one(x, y)
    return hits


def _candidate_score(pool: list[Pair], holdout: list[Pair]) -> float:
    return sum(_candidate_hits(pool, holdout)) / len(holdout)


def _wins_losses(candidate: list[bool], serving: list[bool]) -> tuple[int, int]:
    """McNemar's discordant counts: only the candidate right, only the serving model right."""
    pairs = list(zip(candidate, serving, strict=True))
    return sum(c and not s for c, s in pairs), sum(s and not c for c, s in pairs)


def test_a_clearly_better_candidate_is_promoted_and_serves() -> None:
    # A long first concept makes the serving model slow to unlearn it; the candidate
    # only ever saw the new one.
    log = _change_after(3000)
    learner = PartitionLearner(_lr(), drift_action="retrain", holdout_events=300)
    trigger, _, request = _until_request(learner, log)
    job = learner.retrain
    assert job is not None
    pool_size = _replay(learner, log, request)

    live = log[trigger + 1 :]
    decided, serving_hits = _live_until_decided(learner, live, trigger + 1)

    # Promoted early, as soon as the paired test said "clearly better".
    assert decided.promoted and decided.result == "promoted"
    assert decided.reason == "clearly better" and decided.statistic >= 2.58
    n = decided.evaluated_on
    assert 10 <= n < 300 and decided.trained_on == pool_size
    assert decided.serving_score == sum(serving_hits) / n
    pool = [log[i] for i in _labelled_in(request)]
    candidate_hits = _candidate_hits(pool, live[:n])
    assert decided.candidate_score == sum(candidate_hits) / n > decided.serving_score
    assert (decided.wins, decided.losses) == _wins_losses(candidate_hits, serving_hits)
    assert decided.model_version == learner.model_version == 2
    assert learner.model is job.candidate
    assert learner.retrain is None
    assert learner.detector.width == 0  # the new model's error is a new stream


def test_a_worse_candidate_is_rejected_and_the_serving_model_stays() -> None:
    # The pool the candidate learns is the inverted concept (1,500 events of it: the
    # candidate keeps learning live events, a short pool would be unlearned at once); the
    # hold-out is the true one, which the serving model, trained on 3,000 of its events,
    # knows well.
    log = _change_after(3000)
    learner = PartitionLearner(
        _lr(), drift_action="retrain", holdout_events=300, min_retrain_events=1500
    )
    serving = learner.model
    trigger, _, request = _until_request(learner, log)
    pool_size = _replay(learner, log, request, invert=True)
    true_concept = _concept(99, 1000)

    decided, serving_hits = _live_until_decided(learner, true_concept, trigger + 1)

    # Rejected as soon as it may be (after holdout_events), being clearly worse.
    assert not decided.promoted and decided.result == "rejected"
    assert decided.reason == "clearly worse" and decided.statistic <= -2.58
    assert (decided.evaluated_on, decided.trained_on) == (300, pool_size)
    assert decided.serving_score == sum(serving_hits) / 300
    pool = list(_inverted(log[i] for i in _labelled_in(request)))
    candidate_hits = _candidate_hits(pool, true_concept[:300])
    assert decided.candidate_score == sum(candidate_hits) / 300 < decided.serving_score
    assert (decided.wins, decided.losses) == _wins_losses(candidate_hits, serving_hits)
    assert decided.model_version == learner.model_version == 1
    assert learner.model is serving
    assert learner.retrain is None


def test_live_events_kept_during_the_replay_can_decide_it_when_the_replay_ends() -> None:
    log = _change_after(3000)
    learner = PartitionLearner(_lr(), drift_action="retrain", holdout_events=300)
    trigger, _, request = _until_request(learner, log)
    live = log[trigger + 1 : trigger + 401]
    serving_hits = []
    for i, (x, y) in enumerate(live, start=trigger + 1):
        y_pred, _ = learner.step(x, y, STRIDE * i)  # the replay has not started yet
        serving_hits.append(y_pred == y)
    assert learner.drain_outcomes() == []
    assert learner.retrain is not None and not learner.retrain.ready

    pool_size = _replay(learner, log, request)
    assert learner.retrain.ready
    learner.settle_retrain()
    [decided] = learner.drain_outcomes()

    assert isinstance(decided, RetrainDecided)
    # Scored on the first n kept events (clearly better by then), then it learned the rest.
    n = decided.evaluated_on
    assert decided.promoted and n < 400
    assert decided.trained_on == pool_size + 400 - n
    assert decided.serving_score == sum(serving_hits[:n]) / n
    pool = [log[i] for i in _labelled_in(request)]
    assert decided.candidate_score == _candidate_score(pool, live[:n])
    assert learner.retrain is None


def test_settle_retrain_does_nothing_before_the_job_is_ready() -> None:
    learner = PartitionLearner(_lr(), drift_action="retrain")
    _until_request(learner, _change_after(3000))
    learner.settle_retrain()
    assert learner.retrain is not None
    assert learner.drain_outcomes() == []


# -- the job on its own --------------------------------------------------------------------------


def _serving_hits(serving: base.Classifier, events: list[Pair]) -> list[bool]:
    """What the serving model got right, predicting each event before learning it."""
    hits = []
    for x, y in events:
        hits.append(serving.predict_one(x) == y)
        serving.learn_one(x, y)
    return hits


@pytest.mark.parametrize("holdout_inverted", [False, True], ids=["rejected", "promoted"])
def test_the_job_promotes_only_a_candidate_that_scores_better(holdout_inverted: bool) -> None:
    # The serving model knows the true concept, the candidate learns the inverted one; the
    # hold-out decides which of them is right.
    serving = _lr()
    for x, y in _concept(1, 2000):
        serving.learn_one(x, y)
    pool = list(_inverted(_concept(2, 500)))
    holdout = _concept(3, 200)
    if holdout_inverted:
        holdout = list(_inverted(holdout))
    job = RetrainJob(_lr(), holdout_events=200, max_holdout_events=200)
    for x, y in pool:
        job.train(x, y)
    job.replay_finished()
    hits = _serving_hits(serving, holdout)
    ready = [job.observe_live(x, y, hit) for (x, y), hit in zip(holdout, hits, strict=True)]

    # A clearly better candidate is promoted early; a worse one is rejected only once
    # holdout_events were scored.
    n = ready.index(True) + 1
    assert ready == [False] * (n - 1) + [True] * (201 - n)
    verdict = job.decide()
    assert verdict.promoted is holdout_inverted
    assert verdict.evaluated_on == n and (n < 200) is holdout_inverted
    assert verdict.serving_score == sum(hits[:n]) / n
    candidate_hits = _candidate_hits(pool, holdout[:n])
    assert verdict.candidate_score == sum(candidate_hits) / n
    assert (verdict.wins, verdict.losses) == _wins_losses(candidate_hits, hits[:n])
    assert verdict.trained_on == 500 + 200 - n  # the pool, and what it learned after


def test_a_tie_keeps_the_serving_model() -> None:
    job = RetrainJob(linear_model.LogisticRegression(), holdout_events=50)
    for _ in range(100):
        job.train({"x": 1.0}, True)
    job.replay_finished()
    for _ in range(50):
        job.observe_live({"x": 1.0}, True, serving=True)
    verdict = job.decide()
    assert verdict.candidate_score == verdict.serving_score == 1.0
    assert not verdict.promoted


def test_live_events_are_kept_in_order_while_replaying_and_scored_after() -> None:
    job = RetrainJob(linear_model.LogisticRegression(), holdout_events=10, max_buffered=5)
    for _ in range(20):
        job.train({"x": 1.0}, True)
    # Eight live events while replaying: only the newest five are kept (all serving hits).
    for hit in (False, False, False, True, True, True, True, True):
        assert job.observe_live({"x": 1.0}, True, serving=hit) is False
    assert job.trained_on == 20  # nothing learned from live events during the replay
    job.replay_finished()
    assert job.state == SHADOWING
    verdict = job.decide()
    assert verdict.evaluated_on == 5
    assert verdict.serving_score == 1.0
    assert verdict.trained_on == 20
    assert not job.ready


def test_events_after_the_holdout_are_learned_but_not_scored() -> None:
    job = RetrainJob(linear_model.LogisticRegression(), holdout_events=3, max_holdout_events=3)
    job.replay_finished()
    for _ in range(10):
        job.observe_live({"x": 1.0}, True, serving=False)
    verdict = job.decide()
    assert verdict.evaluated_on == 3
    assert verdict.trained_on == 7
    assert verdict.serving_score == 0.0


def test_a_holdout_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="holdout_events"):
        RetrainJob(linear_model.LogisticRegression(), holdout_events=0)


# -- checkpoints in the middle of a retrain ----------------------------------------------------


def test_a_learner_pickled_mid_retrain_continues_exactly_like_its_twin() -> None:
    log = _change_after(3000)
    learner = PartitionLearner(_lr(), drift_action="retrain", holdout_events=200)
    trigger, _, request = _until_request(learner, log)
    # Some live events kept while the replay runs, then the checkpoint.
    for i in range(trigger + 1, trigger + 51):
        learner.step(*log[i], STRIDE * i)
    restored = pickle.loads(pickle.dumps(learner))
    assert restored.retrain is not None and restored.retrain is not learner.retrain

    outcomes: list[list[Outcome]] = []
    predictions: list[list[Any]] = []
    for twin in (learner, restored):
        _replay(twin, log, request)
        twin.settle_retrain()
        seen = twin.drain_outcomes()
        steps = []
        for i in range(trigger + 51, len(log)):
            steps.append(twin.step(*log[i], STRIDE * i))
            seen.extend(twin.drain_outcomes())
        outcomes.append(seen)
        predictions.append(steps)

    assert predictions[0] == predictions[1]
    assert outcomes[0] == outcomes[1]
    assert any(isinstance(o, RetrainDecided) for o in outcomes[0]), "no decision exercised"
    assert restored.model_version == learner.model_version
    assert restored.cumulative.get() == learner.cumulative.get()


# -- a candidate that raises --------------------------------------------------------------------


def test_a_candidate_that_raises_on_a_replayed_event_is_abandoned_and_the_model_serves_on() -> None:
    learner = PartitionLearner(_lr(), drift_action="retrain")
    log = _change_after(3000)
    trigger, _, _ = _until_request(learner, log)
    serving, job = learner.model, learner.retrain
    assert job is not None
    job.train({0: 1.0, 1: 2.0, 2: 3.0}, True)
    job.train({0: "red", 1: 2.0, 2: 3.0}, True)  # the scaler learns half, then raises
    assert job.abandoned is not None and job.abandoned.startswith("TypeError: ")
    assert job.done
    trained = job.trained_on
    job.train({0: 1.0, 1: 2.0, 2: 3.0}, True)  # an abandoned candidate learns nothing more
    assert job.trained_on == trained == 1
    job.replay_finished()

    learner.settle_retrain()
    (outcome,) = learner.drain_outcomes()
    assert isinstance(outcome, RetrainAbandoned)
    assert outcome.reason == job.abandoned
    assert outcome.model_version == 1
    assert learner.retrain is None
    assert learner.model is serving and learner.model_version == 1
    x, y = log[trigger + 1]
    learner.step(x, y, STRIDE * (trigger + 1))  # and the learner steps on
    assert learner.learned == trigger + 2


def test_a_candidate_that_raises_while_shadowing_is_abandoned_at_that_step() -> None:
    learner = PartitionLearner(_lr(), drift_action="retrain")
    log = _change_after(3000)
    trigger, _, _ = _until_request(learner, log)
    job = learner.retrain
    assert job is not None
    job.candidate = _Raising()
    job.replay_finished()
    x, y = log[trigger + 1]
    learner.step(x, y, STRIDE * (trigger + 1))  # the serving model takes it; the candidate not
    (outcome,) = learner.drain_outcomes()
    assert isinstance(outcome, RetrainAbandoned)
    assert outcome.reason == "RuntimeError: candidate broke"
    assert learner.retrain is None and learner.model_version == 1


def test_a_job_pickled_before_abandoning_existed_reads_not_abandoned() -> None:
    job = RetrainJob(_lr())
    assert "abandoned" not in job.__dict__
    assert job.abandoned is None and not job.done


class _Raising(base.Classifier):
    def learn_one(self, x: dict[Any, Any], y: Any) -> None:
        raise RuntimeError("candidate broke")

    def predict_proba_one(self, x: dict[Any, Any]) -> dict[Any, float]:
        raise RuntimeError("candidate broke")
