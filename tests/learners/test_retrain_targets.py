"""Issue 14's targets for the drift response, on the drift streams of bench/retrain_targets.py.

The daemon's learner code runs as the daemon runs it, with the daemon's default drift
options; a requested pool is replayed from the stream at once (``bench.retrain_targets``).
Targets: over the 5,000 events after an abrupt change a retrain scores at least the
reset's accuracy less half a point and the unadapted model's plus three points; after a
gradual change at least the reset's; the retrain machinery acts on nothing before the
change; the default configuration (default model and ``--drift-action``) never scores
below no action. A target not met is an ``xfail(strict=True)`` with the measured figures:
it fails the suite the day it passes, so the mark is taken off then.
"""

from __future__ import annotations

from functools import cache
from typing import Any

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
def _events(stream: DriftStream) -> list[tuple[dict[Any, Any], Any]]:
    return stream.events()


@cache
def _run(stream: DriftStream, action: str, model: str = HOEFFDING_TREE) -> Run:
    return run_learner(stream, _events(stream), model, action, **DAEMON_OPTIONS)


def _accuracy(stream: DriftStream, action: str, model: str = HOEFFDING_TREE) -> float:
    return _run(stream, action, model).accuracy


def _unmet(stream: DriftStream, figures: str) -> Any:
    return pytest.param(stream, id=stream.name, marks=pytest.mark.xfail(
        strict=True, reason=f"target not met: {figures}"))  # fmt: skip


@pytest.mark.parametrize("stream", ABRUPT, ids=lambda s: s.name)
def test_after_an_abrupt_change_a_retrain_scores_as_a_reset_and_well_above_no_action(
    stream: DriftStream,
) -> None:
    retrain = _accuracy(stream, "retrain")
    assert retrain >= _accuracy(stream, "reset") - 0.005
    assert retrain >= _accuracy(stream, "none") + 0.03


# Measured: the candidate restarts at the rise of the serving model's error (+740) and
# is promoted at +817, while the reset's fresh tree serves from +505 (docs/drift.md).
GRADUAL_UNMET = {"stagger": "retrain 0.920 < reset 0.926"}


@pytest.mark.parametrize("stream", [
    _unmet(s, GRADUAL_UNMET[s.generator]) if s.generator in GRADUAL_UNMET else s
    for s in GRADUAL
], ids=lambda s: s.name)  # fmt: skip
def test_after_a_gradual_change_a_retrain_scores_at_least_as_a_reset(stream: DriftStream) -> None:
    assert _accuracy(stream, "retrain") >= _accuracy(stream, "reset")


def _actions_before(run: Run, stream: DriftStream) -> list[Any]:
    return [o for o in run.before(stream.change_at)
            if isinstance(o, DriftDetected | ModelReset | RetrainDecided)]  # fmt: skip


@pytest.mark.parametrize("stream", ABRUPT + GRADUAL, ids=lambda s: s.name)
@pytest.mark.parametrize("model", [DEFAULT_MODEL, HOEFFDING_TREE], ids=["default-model", "HT"])
def test_the_retrain_acts_on_nothing_before_the_change(stream: DriftStream, model: str) -> None:
    """Nothing before the change, unless ADWIN itself alarmed there (it does, with every
    action, on two of these streams with the Hoeffding tree): the warning zone and the
    candidates add no action of their own."""
    acted = _actions_before(_run(stream, "retrain", model), stream)
    if not _actions_before(_run(stream, "none", model), stream):
        assert acted == []
    else:
        assert isinstance(acted[0], DriftDetected)
    answered = [
        o
        for i, o in _run(stream, "retrain", model).outcomes
        if isinstance(o, RetrainDecided) and o.promoted and i >= stream.change_at
    ]
    assert answered, "the change was never answered"


@pytest.mark.parametrize("stream", ABRUPT + GRADUAL, ids=lambda s: s.name)
def test_the_default_configuration_never_scores_below_no_action(stream: DriftStream) -> None:
    default = _accuracy(stream, DEFAULT_ACTION, DEFAULT_MODEL)
    assert default >= _accuracy(stream, "none", DEFAULT_MODEL)
