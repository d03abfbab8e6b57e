"""Issue 14's targets for the drift response, on the drift streams of bench/retrain_targets.py.

The daemon's learner code runs as the daemon runs it, with the daemon's default retrain
options; a requested pool is replayed from the stream at once (``bench.retrain_targets``).
Over the events after an abrupt change a retrain scores at least the reset's accuracy
less half a point and the unadapted model's plus three points; after a gradual change at
least the reset's; nothing acts before the change; and the default configuration (the
default model and ``--drift-action``) never scores below no action at all.
"""

from __future__ import annotations

from functools import cache

import pytest

from bench.retrain_targets import (
    ABRUPT,
    DAEMON_OPTIONS,
    DEFAULT_MODEL,
    GRADUAL,
    HOEFFDING_TREE,
    DriftStream,
    Run,
    run_learner,
)
from learners.outcomes import DriftDetected, ModelReset, RetrainDecided
from stream.settings import RunSettings

DEFAULT_ACTION = RunSettings.model_fields["drift_action"].default


@cache
def _runs(stream: DriftStream, model: str, action: str) -> Run:
    options = DAEMON_OPTIONS if action == "retrain" else {}
    return run_learner(stream, _events(stream), model, action, **options)


@cache
def _events(stream: DriftStream) -> list[tuple[dict, object]]:
    return stream.events()


def _accuracy(stream: DriftStream, action: str, model: str = HOEFFDING_TREE) -> float:
    return _runs(stream, model, action).accuracy


@pytest.mark.parametrize("stream", ABRUPT, ids=lambda s: s.name)
def test_after_an_abrupt_change_a_retrain_scores_as_a_reset_and_well_above_no_action(
    stream: DriftStream,
) -> None:
    retrain = _accuracy(stream, "retrain")
    assert retrain >= _accuracy(stream, "reset") - 0.005
    assert retrain >= _accuracy(stream, "none") + 0.03


@pytest.mark.parametrize("stream", GRADUAL, ids=lambda s: s.name)
def test_after_a_gradual_change_a_retrain_scores_at_least_as_a_reset(stream: DriftStream) -> None:
    assert _accuracy(stream, "retrain") >= _accuracy(stream, "reset")


@pytest.mark.parametrize("stream", ABRUPT + GRADUAL, ids=lambda s: s.name)
def test_nothing_acts_before_the_change(stream: DriftStream) -> None:
    run = _runs(stream, HOEFFDING_TREE, "retrain")
    actions = [o for o in run.before(stream.change_at)
               if isinstance(o, DriftDetected | ModelReset | RetrainDecided)]
    assert actions == []
    assert any(isinstance(o, RetrainDecided) and o.promoted for _, o in run.outcomes), (
        "the change was never answered"
    )


@pytest.mark.parametrize("stream", ABRUPT + GRADUAL, ids=lambda s: s.name)
@pytest.mark.parametrize("model", [DEFAULT_MODEL, HOEFFDING_TREE], ids=["default-model", "HT"])
def test_the_default_drift_action_never_scores_below_no_action(
    stream: DriftStream, model: str
) -> None:
    assert _accuracy(stream, DEFAULT_ACTION, model) >= _accuracy(stream, "none", model)
