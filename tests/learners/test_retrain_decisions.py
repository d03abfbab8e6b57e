"""The retrain's decision rules one by one: the warning zone (confirm, drop), the pools
(since-change, combined, both), evidence from the pool (promotes only), a second alarm,
and the paired test's figures in the outcome."""

from __future__ import annotations

import json
from typing import Any

import pytest
from river import linear_model

from bench.retrain_targets import DriftStream, _replay
from learners.outcomes import RetrainDecided, RetrainDropped, RetrainRequested
from learners.prequential import PartitionLearner
from learners.retraining import (
    AGAIN,
    BETTER,
    OWN_ROSE,
    POOL_BETTER,
    SERVING_ROSE,
    SHADOWING,
    RetrainJob,
)
from learners.spec import parse_model_spec

LR = "preprocessing.StandardScaler | linear_model.LogisticRegression"


class Constant(linear_model.LogisticRegression):
    """Always predicts ``label`` and learns nothing: a candidate whose hits are known."""

    def __init__(self, label: bool = True) -> None:
        super().__init__()
        self.label = label

    def predict_one(self, x: dict[Any, Any]) -> bool:
        return self.label

    def learn_one(self, x: dict[Any, Any], y: Any) -> None:
        pass


def _steps(learner: PartitionLearner, events: list[Any]) -> list[tuple[int, Any]]:
    """Step the events, replaying requested pools at once; returns (index, outcome)s."""
    seen = []
    for i, (x, y) in enumerate(events):
        learner.step(x, y, i)
        while learner.outcomes:
            for outcome in learner.drain_outcomes():
                seen.append((i, outcome))
                if isinstance(outcome, RetrainRequested) and learner.retrain is not None:
                    _replay(learner.retrain, events, outcome)
            learner.settle_retrain()
    return seen


# -- the warning zone ---------------------------------------------------------------------------

SEA = DriftStream("sea", 1, change_at=3000, after=1500)


def test_a_warning_starts_the_candidate_before_the_alarm_which_confirms_it() -> None:
    learner = PartitionLearner(parse_model_spec(LR), drift_action="retrain", warning_delta=0.01)
    seen = _steps(learner, SEA.events())
    kinds = [(type(o).__name__, getattr(o, "warning", None)) for _, o in seen]
    assert kinds[:3] == [
        ("RetrainRequested", True),
        ("DriftDetected", None),
        ("RetrainDecided", None),
    ]
    (warned, _), (alarmed, _), (decided_at, decided) = seen[:3]
    assert SEA.change_at < warned < alarmed <= decided_at  # the candidate started earlier
    assert decided.promoted


def test_a_warning_not_confirmed_in_time_is_dropped_and_counted() -> None:
    learner = PartitionLearner(
        parse_model_spec(LR), drift_action="retrain", warning_delta=0.01, warning_events=10
    )
    seen = _steps(learner, SEA.events())
    (warned, request), (dropped_at, dropped) = seen[:2]
    assert isinstance(request, RetrainRequested) and request.warning
    assert isinstance(dropped, RetrainDropped) and dropped_at == warned + 11
    assert dropped.reason == "no drift alarm within 10 events of the warning"
    assert dropped.model_version == 1
    # The alarm later asks for a confirmed retrain of its own.
    later = [o for _, o in seen[2:] if isinstance(o, RetrainRequested)]
    assert later and not later[0].warning


def test_an_unconfirmed_job_decides_nothing_until_confirmed() -> None:
    job = RetrainJob(Constant(), holdout_events=1, max_holdout_events=5, confirmed=False,
                     confirm_within=100)  # fmt: skip
    job.replay_finished()
    for _ in range(20):  # the candidate right, the serving model wrong: clearly better
        assert job.observe_live({}, True, serving=False) is False
    job.alarm()
    assert job.ready and job.decide().promoted and job.decide().reason == BETTER


# -- the pools ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["since-change", "combined", "both"])
def test_the_pool_asked_for(pool: str) -> None:
    learner = PartitionLearner(parse_model_spec(LR), drift_action="retrain", retrain_pool=pool)
    events = DriftStream("sine", 1, change_at=2000, after=200).events()
    request = next(o for _, o in _steps(learner, events) if isinstance(o, RetrainRequested))
    # Sine's change ruins the serving model at once: the estimate is within a few events.
    since = 2000 if pool == "since-change" else 0
    assert abs(request.start_offset - since) <= 5


def test_both_pools_train_two_candidates_on_their_parts_of_one_replay() -> None:
    job = RetrainJob(Constant(), pool=(0, 10), pool_kind="both", since=6)
    for offset in range(10):
        job.train({"x": 1.0}, True, offset)
    since_change, combined = job.contenders
    assert (since_change.pool, since_change.learned) == ("since-change", 4)
    assert (combined.pool, combined.learned) == ("combined", 10)
    assert combined.model is not since_change.model


def test_in_a_race_the_clearly_better_candidate_is_the_one_promoted() -> None:
    job = RetrainJob(Constant(True), pool_kind="both", since=0)
    job.contenders[1].model = Constant(False)  # the combined candidate: always wrong
    job.replay_finished()
    while not job.observe_live({}, True, serving=False):
        pass
    verdict = job.decide()
    assert verdict.promoted and verdict.pool == "since-change"
    assert job.candidate is job.contenders[0].model


# -- evidence from the pool ------------------------------------------------------------------


def test_pool_events_the_serving_model_missed_can_promote_at_the_end_of_the_replay() -> None:
    job = RetrainJob(Constant(), serving_errors=dict.fromkeys(range(20), 1.0))
    for offset in range(20):
        job.train({}, True, offset)
    assert job.ready  # decided while replaying; the replay still ends in order
    job.replay_finished()
    verdict = job.decide()
    assert verdict.promoted and verdict.reason == POOL_BETTER
    # Decided at the tenth differing event (learners.decision.MIN_DISCORDANT).
    assert (verdict.wins, verdict.losses, verdict.evaluated_on) == (10, 0, 10)
    assert verdict.trained_on == 20
    assert verdict.candidate_score == 1.0 and verdict.serving_score == 0.0


def test_pool_events_never_reject_a_young_candidate() -> None:
    serving_right = dict.fromkeys(range(50), 0.0)
    job = RetrainJob(Constant(False), holdout_events=5, serving_errors=serving_right)
    for offset in range(50):
        job.train({}, True, offset)
    job.replay_finished()
    assert job.state == SHADOWING and not job.ready


# -- a second alarm -------------------------------------------------------------------------


@pytest.mark.parametrize("leads", [True, False])
def test_a_second_alarm_promotes_the_candidate_if_it_leads(leads: bool) -> None:
    job = RetrainJob(Constant(True), holdout_events=1000, max_holdout_events=1000)
    job.replay_finished()
    # Four events the candidate alone got right and three it alone missed (or the reverse).
    for serving, y in [(False, True)] * 4 + [(True, False)] * 3:
        job.observe_live({}, y if leads else not y, serving=serving)
    assert not job.ready
    job.alarm()
    assert job.ready is leads
    if leads:
        verdict = job.decide()
        assert verdict.promoted and verdict.reason == AGAIN
        assert (verdict.wins, verdict.losses) == (4, 3)


def test_the_decision_carries_the_paired_figures() -> None:
    job = RetrainJob(Constant(True), holdout_events=3, max_holdout_events=3)
    job.replay_finished()
    for y, serving in [(True, False), (False, True), (True, True)]:
        job.observe_live({}, y, serving=serving)
    verdict = job.decide()
    assert (verdict.wins, verdict.losses, verdict.evaluated_on) == (1, 1, 3)
    assert verdict.statistic == 0.0 and not verdict.promoted and verdict.reason == "cap"


def test_the_learner_reports_the_figures_in_its_outcome() -> None:
    learner = PartitionLearner(parse_model_spec(LR), drift_action="retrain")
    events = DriftStream("sine", 1, change_at=2000, after=500).events()
    decided = next(o for _, o in _steps(learner, events) if isinstance(o, RetrainDecided))
    assert decided.wins + decided.losses >= 10
    assert decided.statistic == pytest.approx(
        (decided.wins - decided.losses) / (decided.wins + decided.losses) ** 0.5
    )
    assert decided.reason in (BETTER, POOL_BETTER) and decided.pool == "since-change"


# -- a candidate that follows the change -------------------------------------------------------


def test_a_candidate_started_before_the_serving_error_rose_starts_again_from_the_rise() -> None:
    """The serving model was right on the first 50 pool events and wrong from then on. At
    the 10th event it missed, the candidate is clearly better on the pool, but it learned
    the events from before the rise: it starts again from the rise, and the 10 events since
    promote the fresh one."""
    serving_errors = {offset: float(offset >= 50) for offset in range(100)}
    job = RetrainJob(Constant(True), serving_errors=serving_errors)
    for offset in range(100):
        job.train({}, True, offset)
    assert job.take_restarts() == (("since-change", SERVING_ROSE, 10),)
    assert job.take_restarts() == ()  # reported once
    job.replay_finished()
    verdict = job.decide()
    assert verdict.promoted and verdict.reason == POOL_BETTER
    assert (verdict.wins, verdict.losses, verdict.evaluated_on) == (10, 0, 10)


def test_a_candidate_whose_own_error_rose_starts_again_and_is_young_again() -> None:
    """The candidate and the serving model agree for 300 events; then the label flips and
    only the serving model follows. The candidate's own detector sees its error rise: it
    starts again from its estimated change point, and is not rejected before it was
    scored on ``holdout_events`` live events of its own."""
    job = RetrainJob(Constant(True), holdout_events=400, max_holdout_events=2000)
    job.replay_finished()
    for _ in range(300):
        job.observe_live({}, True, serving=True)
    seen = 0
    while not job.restarted and seen < 400:
        job.observe_live({}, False, serving=True)
        seen += 1
    ((pool, reason, trained_on),) = job.take_restarts()
    assert (pool, reason) == ("since-change", OWN_ROSE)
    assert 0 < trained_on <= seen  # learned only events since the flip
    contender = job.contenders[0]
    assert contender.live.evaluated == 0 and contender.replayed.test.losses == trained_on
    for _ in range(150):  # clearly worse, but young: kept
        job.observe_live({}, False, serving=True)
    assert not job.ready and not contender.out


def test_the_learner_reports_a_restart_and_the_daemon_logs_and_counts_it(tmp_path: Any) -> None:
    from prometheus_client import CollectorRegistry

    from learners.outcomes import RetrainRestarted
    from monitoring.metrics import StreamlearnMetrics
    from stream.daemon.run_log import RunLog

    learner = PartitionLearner(parse_model_spec(LR), drift_action="retrain", warning_delta=0.01)
    stream = DriftStream("sine", 2, "gradual", change_at=3000, after=1500)
    restarts = [o for _, o in _steps(learner, stream.events()) if isinstance(o, RetrainRestarted)]
    assert restarts, "no restart on a gradual change"
    restart = restarts[0]
    assert restart.pool == "since-change" and restart.trained_on > 0
    assert restart.offset >= stream.change_at

    run_log = RunLog(tmp_path / "run.jsonl")
    run_log.outcome("events", 0, restart)
    run_log.close()
    line = json.loads((tmp_path / "run.jsonl").read_text())
    assert line["kind"] == "retrain_restarted" and line["reason"] == restart.reason
    assert line["trained_on"] == restart.trained_on

    registry = CollectorRegistry()
    StreamlearnMetrics(registry).partition("events", 0).record_outcomes(restarts)
    labels = {"topic": "events", "partition": "0"}
    counted = registry.get_sample_value("streamlearn_retrain_restarts_total", labels)
    assert counted == len(restarts)
