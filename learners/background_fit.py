"""A window's fit on a daemon thread, taken over at a point the caller fixes.

:class:`learners.batch.WindowedClassifier` copies its window at a refit point and hands
the copy to a :class:`BackgroundFit`; the loop goes on predicting with the previous fit
while scikit-learn works (its numeric kernels release the GIL for much of a fit). The
caller takes the result at a fixed event count (``refit_lag`` events later), waiting if
the fit is not done, so what the model predicts never depends on timing.

A fit pickles as its inputs, plus its result once it is done: a checkpoint taken mid-fit
never waits, and its restored copy fits the same inputs again on its own thread (a fit
is deterministic for an estimator with a fixed ``random_state``, as a synchronous refit
is). The thread is a daemon: a fit still running never keeps the process alive.

>>> from sklearn.naive_bayes import GaussianNB
>>> fit = BackgroundFit(GaussianNB(), np.array([[0.0], [1.0]]), [False, True], screen=False)
>>> fit.start()
>>> result = fit.result()  # waits for the thread
>>> result.width, result.fitted.predict([[0.9]]).tolist()
(1, [True])
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["BackgroundFit", "FitResult", "fit_window"]


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
    """:func:`fit_window` on its own inputs (never shared with the caller) on a daemon
    thread; :meth:`result` waits for it and returns it, or raises what the fit raised."""

    def __init__(self, estimator: Any, rows: np.ndarray, labels: list[Any], screen: bool) -> None:
        self.estimator = estimator  # the unfitted template: the thread fits a clone
        self.rows = rows
        self.labels = labels
        self.screen = screen
        self._result: FitResult | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="streamlearn-refit", daemon=True)
        self._thread.start()

    def result(self) -> FitResult:
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def _run(self) -> None:
        try:
            self._result = fit_window(self.estimator, self.rows, self.labels, self.screen)
        except BaseException as error:  # handed to the loop at the take-over, raised there
            self._error = error
        finally:
            self._done.set()

    # -- checkpoints: the inputs, and the result when there is one; never a wait ---------

    def __getstate__(self) -> dict[str, Any]:
        finished = self.done and self._error is None
        return {  # a finished fit needs no inputs
            "estimator": self.estimator,
            "rows": None if finished else self.rows,
            "labels": None if finished else self.labels,
            "screen": self.screen,
            "result": self._result if finished else None,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["estimator"], state["rows"], state["labels"], state["screen"])  # type: ignore[misc]
        if state["result"] is not None:
            self._result = state["result"]
            self._done.set()
        else:  # pickled mid-fit (or the fit raised): fit the same inputs again
            self.start()
