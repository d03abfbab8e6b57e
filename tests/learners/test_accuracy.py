"""Prequential accuracy: the ring buffer against a naive recomputation, the cumulative one
against River's ``metrics.Accuracy``."""

from __future__ import annotations

import random

import pytest
from river import metrics

from learners.accuracy import CumulativeAccuracy, RollingAccuracy


def _naive_rolling(hits: list[bool], window: int) -> float:
    last = hits[-window:]
    return sum(last) / len(last) if last else 0.0


@pytest.mark.parametrize("window", [1, 2, 3, 7, 64, 1000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rolling_accuracy_equals_a_naive_recomputation_after_every_update(
    window: int, seed: int
) -> None:
    rng = random.Random(seed)
    # A hit rate that changes along the way, so the window's content really matters.
    rates = [rng.random() for _ in range(5)]
    acc = RollingAccuracy(window)
    hits: list[bool] = []
    for i in range(2500):
        hit = rng.random() < rates[i // 500]
        acc.update(hit)
        hits.append(hit)
        # Both are a ratio of the same two integers, so they agree to the last bit.
        assert acc.get() == _naive_rolling(hits, window)
        assert len(acc) == min(len(hits), window)


def test_rolling_accuracy_forgets_exactly_what_left_the_window() -> None:
    acc = RollingAccuracy(window=4)
    for hit in (False, False, False, False):
        acc.update(hit)
    assert acc.get() == 0.0
    for expected, hit in zip((0.25, 0.5, 0.75, 1.0, 1.0), (True,) * 5, strict=True):
        acc.update(hit)
        assert acc.get() == expected
    acc.update(False)
    assert acc.get() == 0.75


def test_rolling_accuracy_is_zero_before_the_first_event() -> None:
    acc = RollingAccuracy(window=10)
    assert acc.get() == 0.0
    assert len(acc) == 0


@pytest.mark.parametrize("window", [0, -1])
def test_rolling_accuracy_refuses_an_empty_window(window: int) -> None:
    with pytest.raises(ValueError, match="window"):
        RollingAccuracy(window)


@pytest.mark.parametrize("seed", [0, 1])
def test_cumulative_accuracy_equals_river_accuracy(seed: int) -> None:
    rng = random.Random(seed)
    ours, river_acc = CumulativeAccuracy(), metrics.Accuracy()
    for _ in range(3000):
        y_true = rng.random() < 0.5
        y_pred = rng.random() < 0.7
        ours.update(y_pred == y_true)
        river_acc.update(y_true, y_pred)
        assert ours.get() == river_acc.get()
    assert ours.total == 3000


def test_cumulative_accuracy_is_zero_before_the_first_event() -> None:
    acc = CumulativeAccuracy()
    assert acc.get() == 0.0
    assert (acc.hits, acc.total) == (0, 0)
