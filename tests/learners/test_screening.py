"""--screen-pool's judgement: duplicates and contradictions left out, and what that is worth
on a stream with injected label noise (mislabeled copies of events)."""

from __future__ import annotations

import random

from sklearn.tree import DecisionTreeClassifier

from learners.batch import WindowedClassifier
from learners.prequential import PartitionLearner
from learners.screening import PoolScreen, drain_screened, screening
from learners.spec import parse_model_spec

Pair = tuple[dict[str, float], bool]


def noisy_stream(seed: int = 1) -> tuple[list[Pair], list[Pair], int, int]:
    """Clean events with distinct features (label: a > b); then 150 of them get two
    mislabeled copies each and 100 others an exact copy, all mixed in at random places.
    Returns (stream, clean events, contradictions, duplicates) as injected."""
    rng = random.Random(seed)
    clean = [
        ({"a": float(p // 100), "b": float(p % 100)}, p // 100 > p % 100)
        for p in rng.sample(range(10_000), 1_000)
    ]
    noisy, copied = clean[:150], clean[150:250]
    extra = [(x, not y) for x, y in noisy for _ in range(2)] + copied
    stream = list(clean)
    for pair in extra:
        stream.insert(rng.randrange(len(stream) + 1), pair)
    return stream, clean, 3 * len(noisy), len(copied)


def clean_accuracy(model: WindowedClassifier, clean: list[Pair]) -> float:
    return sum(model.predict_one(x) == y for x, y in clean) / len(clean)


def test_screening_a_refit_undoes_mislabeled_copies() -> None:
    stream, clean, contradictions, duplicates = noisy_stream()
    accuracy = {}
    for screen in (False, True):
        model = WindowedClassifier(
            DecisionTreeClassifier(random_state=0), window=len(stream), refit_every=len(stream),
            screen=screen, refit_lag=0,
        )  # fmt: skip
        for x, y in stream:
            model.learn_one(x, y)
        assert model.fits == 1
        accuracy[screen] = clean_accuracy(model, clean)
        counts = model.drain_screened()
        assert counts == (
            {"contradiction": contradictions, "duplicate": duplicates} if screen else {}
        )
        assert model.drain_screened() == {}  # drained
    # Unscreened, the tree learns two wrong copies against one right one for 15% of the
    # events; screened, those events are left out and their neighbours decide.
    assert accuracy[False] < 0.9
    assert accuracy[True] > 0.97
    assert accuracy[True] - accuracy[False] > 0.1


def test_a_replay_screen_leaves_out_later_copies_as_they_stream_by() -> None:
    stream, _, _, _ = noisy_stream()
    screen = PoolScreen()
    admitted = [pair for pair in stream if screen.admit(*pair) is None]
    counts = screen.drain()
    # Each mislabeled pair is left out unless it came first: then the right one is.
    assert len(admitted) == 1_000
    assert counts["duplicate"] + counts["contradiction"] == len(stream) - 1_000
    assert counts["duplicate"] >= 100  # the exact copies, and the second mislabeled copy
    assert counts["contradiction"] >= 150


def test_unhashable_values_are_never_judged_equal() -> None:
    screen = PoolScreen()
    assert [screen.admit({"a": [1]}, True) for _ in range(2)] == [None, None]


def test_screening_applies_to_window_models_only_and_drains_the_serving_and_candidate() -> None:
    river = parse_model_spec("linear_model.LogisticRegression")
    assert screening(river) is river
    spec = "sklearn(window=10, refit_every=4, refit_lag=0):tree.DecisionTreeClassifier"
    learner = PartitionLearner(screening(parse_model_spec(spec)), drift_action="retrain")
    assert learner.model.screen is True  # type: ignore[attr-defined]
    assert learner.fresh_model().screen is True  # type: ignore[attr-defined]
    for offset in range(4):
        learner.step({"a": 1.0}, offset % 2 == 0, offset)
    assert drain_screened(learner) == {"contradiction": 4}
    learner._request_retrain(4)
    assert learner.retrain is not None
    for _ in range(4):
        learner.retrain.train({"a": 2.0}, True)
    assert drain_screened(learner) == {"duplicate": 3}
    assert drain_screened(learner) == {}
