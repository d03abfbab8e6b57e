"""Checkpoints written by earlier releases resume exactly (tests/fixtures/checkpoints)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from river import datasets

from learners.checkpoint import decode_checkpoint
from learners.prequential import PartitionLearner
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
