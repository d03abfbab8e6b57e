"""Checkpoints written by earlier releases resume exactly (tests/fixtures/checkpoints)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from river import datasets
from river.datasets import synth

from learners.checkpoint import decode_checkpoint
from learners.outcomes import RetrainDecided
from learners.prequential import PartitionLearner
from learners.retraining import REPLAYING
from learners.spec import parse_model_spec

FIXTURES = Path(__file__).parent.parent / "fixtures" / "checkpoints"
CASES = [
    ("reset-lr-v1.ckpt", "preprocessing.StandardScaler | linear_model.LogisticRegression", "reset"),
    ("retrain-ht-v1.ckpt", "tree.HoeffdingTreeClassifier(grace_period=50)", "retrain"),
]


@pytest.mark.parametrize(("name", "spec", "action"), CASES)
def test_release_checkpoint_resumes_exactly(name: str, spec: str, action: str) -> None:
    events = list(datasets.Phishing())
    checkpoint = decode_checkpoint((FIXTURES / name).read_bytes(), key=None)
    assert checkpoint.next_offset == 800
    restored = checkpoint.state.learner  # type: ignore[attr-defined]
    assert checkpoint.state.sequence.next_expected == 800  # type: ignore[attr-defined]

    calm = PartitionLearner(parse_model_spec(spec), drift_action=action, max_retrain_events=500)
    for offset, (x, y) in enumerate(itertools.islice(events, 800)):
        calm.step(x, y, offset)
    calm.drain_outcomes()

    for offset, (x, y) in enumerate(events[800:], start=800):
        assert restored.step(x, y, offset) == calm.step(x, y, offset)
    assert restored.cumulative.get() == calm.cumulative.get()
    assert restored.learned == calm.learned == len(events)


def _sea_inverted_after_1500() -> list[tuple[dict[Any, Any], Any]]:
    """The stream the mid-retrain fixtures were written on (see the fixtures' README)."""
    first = list(synth.SEA(variant=0, seed=3).take(1500))
    second = [(x, not y) for x, y in synth.SEA(variant=0, seed=4).take(1500)]
    return first + second


@pytest.mark.parametrize("name", ["retrain-replaying-v1.ckpt", "retrain-shadowing-v1.ckpt"])
def test_a_retrain_in_flight_from_before_paired_decisions_resumes_and_decides(name: str) -> None:
    events = _sea_inverted_after_1500()
    checkpoint = decode_checkpoint((FIXTURES / name).read_bytes(), key=None)
    learner = checkpoint.state.learner  # type: ignore[attr-defined]
    job = learner.retrain
    assert job is not None and job.confirmed and job.pool == (1437, 1537)
    if job.state == REPLAYING:  # as the partition table resumes it: the replay again
        job.restart(learner.fresh_model())
        for offset in range(*job.pool):
            job.train(*events[offset], offset)
        job.replay_finished()
    else:  # the old job's holdout so far is carried over
        assert job.contenders[0].live.evaluated == 150
    decided = []
    for offset in range(checkpoint.next_offset, len(events)):
        learner.step(*events[offset], offset)
        decided += [o for o in learner.drain_outcomes() if isinstance(o, RetrainDecided)]
    assert decided, "the resumed retrain never decided"
    first = decided[0]
    assert first.promoted and first.wins > first.losses and first.statistic > 0
    assert first.pool == "since-change" and learner.model_version >= 2
