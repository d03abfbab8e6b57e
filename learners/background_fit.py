"""A window's fit in a worker process, taken over at a point the caller fixes.

:class:`learners.batch.WindowedClassifier` copies its window at a refit point and hands
the copy to a :class:`BackgroundFit`, which sends it to a worker process of
:mod:`learners.fit_pool`; the loop goes on predicting with the previous fit while
scikit-learn works, without sharing the interpreter lock with it. The caller takes the
result at a fixed event count (``refit_lag`` events later), waiting if the fit is not
done, so what the model predicts never depends on timing; a fit gives the same model in
a worker as in the loop (the tests compare them exactly).

A fit pickles as its inputs, plus its result once it is done: a checkpoint taken mid-fit
never waits, and its restored copy sends the same inputs to a worker again (a fit is
deterministic for an estimator with a fixed ``random_state``, as a synchronous refit
is). A fit whose worker died (killed, out of memory) is sent once more to a fresh pool,
then fitted in the caller's process; a fit that raised raises from :meth:`result`. A
running fit never keeps the process from exiting.

>>> from sklearn.naive_bayes import GaussianNB
>>> fit = BackgroundFit(GaussianNB(), np.array([[0.0], [1.0]]), [False, True], screen=False)
>>> fit.start()
>>> result = fit.result()  # waits for the worker
>>> result.width, result.fitted.predict([[0.9]]).tolist()
(1, [True])
"""

from __future__ import annotations

import warnings
from collections import Counter
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from learners import fit_pool

__all__ = ["BackgroundFit", "FitResult", "fit_window", "fit_window_reporting_warnings"]


@dataclass(frozen=True)
class FitResult:
    """What a refit produced; ``fitted`` None when the window held one class (``constant``)."""

    fitted: Any
    constant: Any
    width: int
    #: Codes -> labels when the window's labels were of mixed types.
    decode: list[Any] | None
    #: Events screening left out of this fit, by reason.
    screened: Counter[str] = field(default_factory=Counter)


def fit_window(estimator: Any, rows: np.ndarray, labels: list[Any], screen: bool) -> FitResult:
    """A fresh clone of ``estimator`` (left untouched) fitted on ``rows`` and ``labels``."""
    from sklearn.base import clone  # the optional extra, needed only once there is data

    screened: Counter[str] = Counter()
    if screen:
        rows, labels = screen_window(rows, labels, screened)
    width = rows.shape[1]
    if len(set(labels)) < 2:
        # scikit-learn refuses one class; the window says that class, with certainty.
        return FitResult(None, labels[0] if labels else None, width, None, screened)
    targets, decode = _targets(labels)
    fitted = clone(estimator)
    fitted.fit(rows, targets)
    return FitResult(fitted, None, width, decode, screened)


def fit_window_reporting_warnings(
    estimator: Any, rows: np.ndarray, labels: list[Any], screen: bool
) -> tuple[FitResult, list[tuple[str, type[Warning]]]]:
    """:func:`fit_window` in a worker: the warnings it raised come back with its result,
    to be raised in the caller's process, under the caller's filters."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit_window(estimator, rows, labels, screen)
    return result, [(str(w.message), w.category) for w in caught]


def screen_window(
    rows: np.ndarray, labels: list[Any], counts: Counter[str]
) -> tuple[np.ndarray, list[Any]]:
    """Without duplicates (first copy kept) and contradictions (all copies dropped),
    counted in ``counts``."""
    by_features: dict[bytes, set[Any]] = {}
    keys = [row.tobytes() for row in rows]
    for key, label in zip(keys, labels, strict=True):
        by_features.setdefault(key, set()).add(label)
    kept: list[int] = []
    seen: set[tuple[bytes, Any]] = set()
    for i, (key, label) in enumerate(zip(keys, labels, strict=True)):
        if len(by_features[key]) > 1:
            counts["contradiction"] += 1
        elif (key, label) in seen:
            counts["duplicate"] += 1
        else:
            seen.add((key, label))
            kept.append(i)
    return rows[kept], [labels[i] for i in kept]


def _targets(labels: list[Any]) -> tuple[np.ndarray, list[Any] | None]:
    """Labels for scikit-learn: as they are when of one type, else codes and their decoding."""
    if len({type(label) for label in labels}) == 1:
        return np.asarray(labels), None
    decode = list(dict.fromkeys(labels))
    codes = {label: i for i, label in enumerate(decode)}
    return np.asarray([codes[label] for label in labels]), decode


class BackgroundFit:
    """:func:`fit_window` on its own inputs (never shared with the caller) in a worker
    process of :mod:`learners.fit_pool`; :meth:`result` waits for it and returns it, or
    raises what the fit raised."""

    def __init__(self, estimator: Any, rows: np.ndarray, labels: list[Any], screen: bool) -> None:
        self.estimator = estimator  # the unfitted template: the worker fits a clone
        self.rows = rows
        self.labels = labels
        self.screen = screen
        self._future: Future[tuple[FitResult, list[tuple[str, type[Warning]]]]] | None = None
        self._result: FitResult | None = None  # once taken, or fitted here
        self._submissions = 0

    @property
    def done(self) -> bool:
        return self._result is not None or (self._future is not None and self._future.done())

    def start(self) -> None:
        self._submissions += 1
        try:
            self._future = fit_pool.submit(
                fit_window_reporting_warnings, self.estimator, self.rows, self.labels, self.screen
            )
        except (OSError, RuntimeError, BrokenProcessPool):
            self._future = None  # no worker to be had: result() fits here

    def result(self) -> FitResult:
        if self._result is None:
            self._result = self._fitted()
        return self._result

    def _fitted(self) -> FitResult:
        while self._future is not None:
            try:
                result, raised = self._future.result()  # a fit that raised raises here
            except BrokenProcessPool:
                # Its worker died (killed, out of memory): once more in a fresh pool,
                # then here.
                if self._submissions >= 2:
                    break
                self.start()
                continue
            for message, category in raised:
                warnings.warn(message, category, stacklevel=2)
            return result
        return fit_window(self.estimator, self.rows, self.labels, self.screen)

    def _finished(self) -> FitResult | None:
        """The result, if the fit is done and did not fail; never waits."""
        if self._result is not None:
            return self._result
        future = self._future
        if future is None or not future.done() or future.cancelled():
            return None
        return future.result()[0] if future.exception() is None else None

    # -- checkpoints: the inputs, and the result when there is one; never a wait ---------

    def __getstate__(self) -> dict[str, Any]:
        finished = self._finished()
        return {  # a finished fit needs no inputs
            "estimator": self.estimator,
            "rows": None if finished else self.rows,
            "labels": None if finished else self.labels,
            "screen": self.screen,
            "result": finished,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["estimator"], state["rows"], state["labels"], state["screen"])  # type: ignore[misc]
        if state["result"] is not None:
            self._result = state["result"]
        else:  # pickled mid-fit (or the fit raised): fit the same inputs again
            self.start()
