"""A scikit-learn classifier refitted on a sliding window of recent events, as a River model.

:class:`WindowedClassifier` keeps the last ``window`` labelled events it learned and, every
``refit_every`` of them, fits a fresh clone of ``estimator`` on that window; it predicts
with its last fit. So the daemon's test-then-train loop, its checkpoints and its retrains
treat a batch model like any River classifier:

- before the first fit it predicts nothing: ``predict_proba_one`` returns ``{}`` (the
  learner then learns the event without scoring it, as for River's untrained models);
- features are vectorised in a fixed order, the order their names were first learned:
  a new name extends the vocabulary (the next fit takes it in), a missing one is 0, and a
  name the last fit never saw is ignored when predicting;
- values: numbers as they are, booleans as 1/0, ``None`` as missing, a string as the
  one-hot feature ``(name, value)``; anything else, and NaN or infinities, are refused with
  a ``ValueError`` before the model changes (the daemon dead-letters that event);
- classes are the labels of the window: a window holding one class predicts it with
  probability 1; labels of one Python type are given to scikit-learn as they are (so a fit
  equals a plain ``estimator.fit`` on the same rows), mixed types as codes.

With ``screen=True`` (``--screen-pool``) a refit leaves out exact duplicates (same
features and label: one copy is kept) and contradictions (the same features with
different labels: all are left out); ``drain_screened`` says how many, by reason, since
it was last called (an event left out of several refits counts in each).

>>> from sklearn.linear_model import LogisticRegression
>>> model = WindowedClassifier(LogisticRegression(), window=4, refit_every=2)
>>> model.predict_proba_one({"x": 1.0})
{}
>>> for x, y in [(0.0, False), (1.0, True), (0.1, False), (0.9, True)]:
...     model.learn_one({"x": x}, y)
>>> model.predict_one({"x": 1.0}), model.fits
(True, 2)
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
from river import base

__all__ = ["WindowedClassifier"]

#: Columns are allocated in blocks so a growing vocabulary rarely copies the window.
_COLUMN_BLOCK = 16


class WindowedClassifier(base.Classifier):
    """Refit ``estimator`` (scikit-learn, unfitted) on the last ``window`` events every
    ``refit_every`` events; predict with the last fit."""

    def __init__(
        self, estimator: Any, window: int = 10_000, refit_every: int = 1_000, screen: bool = False
    ) -> None:
        if window < 1 or refit_every < 1:
            raise ValueError(
                f"window and refit_every must be at least 1, got {window} and {refit_every}"
            )
        self.estimator = estimator
        self.window = window
        self.refit_every = refit_every
        self.screen = screen

        self._vocabulary: dict[Any, int] = {}
        self._rows = np.zeros((0, 0))  # a ring of the window's feature rows
        self._labels: list[Any] = [None] * window
        self._learned = 0
        self._fitted: Any = None
        self._fit_width = 0
        self._constant: Any = None  # the class of a one-class window
        self._decode: list[Any] | None = None  # codes -> labels when types were mixed
        self.fits = 0
        self.screened: Counter[str] = Counter()

    # -- River's interface ------------------------------------------------------------

    def learn_one(self, x: dict[Any, Any], y: Any) -> None:
        values = self._encode(x, grow=True)  # refuses a bad event before anything changes
        slot = self._learned % self.window
        self._ensure_room(slot, len(self._vocabulary))
        row = self._rows[slot]
        row[:] = 0.0
        for column, value in values:
            row[column] = value
        self._labels[slot] = y
        self._learned += 1
        if self._learned % self.refit_every == 0:
            self.refit()

    def predict_proba_one(self, x: dict[Any, Any], **kwargs: Any) -> dict[Any, float]:
        if self._constant is not None:
            self._encode(x, grow=False)  # the same refusals, fitted or not
            return {self._constant: 1.0}
        if self._fitted is None:
            self._encode(x, grow=False)
            return {}
        vector = np.zeros((1, self._fit_width))
        for column, value in self._encode(x, grow=False):
            if column < self._fit_width:
                vector[0, column] = value
        fitted = self._fitted
        from sklearn import config_context

        # _encode let only finite numbers in: scikit-learn's own check would double the cost.
        with config_context(assume_finite=True):
            if not hasattr(fitted, "predict_proba"):  # e.g. LinearSVC: the class is all it says
                return {self._label(fitted.predict(vector)[0]): 1.0}
            proba = fitted.predict_proba(vector)[0]
        return {self._label(c): float(p) for c, p in zip(fitted.classes_, proba, strict=True)}

    @property
    def _multiclass(self) -> bool:
        return True

    # -- the refit --------------------------------------------------------------------

    def refit(self) -> None:
        """Fit a fresh clone of ``estimator`` on the window as it is now."""
        from sklearn.base import clone  # the optional extra, needed only once there is data

        rows, labels = self._window()
        if self.screen:
            rows, labels = self._screened(rows, labels)
        classes = set(labels)
        if len(classes) < 2:
            # scikit-learn refuses one class; the window says that class, with certainty.
            self._fitted, self._constant = None, (labels[0] if labels else None)
            self._fit_width = rows.shape[1]
            self.fits += 1
            return
        targets, self._decode = _targets(labels)
        fitted = clone(self.estimator)
        fitted.fit(rows, targets)
        self._fitted, self._constant, self._fit_width = fitted, None, rows.shape[1]
        self.fits += 1

    def _window(self) -> tuple[np.ndarray, list[Any]]:
        """The window's rows and labels, oldest first."""
        width = len(self._vocabulary)
        count = min(self._learned, self.window)
        if count < self.window:
            return self._rows[:count, :width].copy(), self._labels[:count]
        start = self._learned % self.window
        order = np.r_[start:count, 0:start]
        labels = self._labels[start:] + self._labels[:start]
        return self._rows[order, :width], labels

    def _screened(self, rows: np.ndarray, labels: list[Any]) -> tuple[np.ndarray, list[Any]]:
        """Without duplicates (first copy kept) and contradictions (all copies dropped)."""
        by_features: dict[bytes, set[Any]] = {}
        keys = [row.tobytes() for row in rows]
        for key, label in zip(keys, labels, strict=True):
            by_features.setdefault(key, set()).add(label)
        kept: list[int] = []
        seen: set[tuple[bytes, Any]] = set()
        for i, (key, label) in enumerate(zip(keys, labels, strict=True)):
            if len(by_features[key]) > 1:
                self.screened["contradiction"] += 1
            elif (key, label) in seen:
                self.screened["duplicate"] += 1
            else:
                seen.add((key, label))
                kept.append(i)
        return rows[kept], [labels[i] for i in kept]

    def drain_screened(self) -> Counter[str]:
        """Events the refits left out since the last call, by reason."""
        counts, self.screened = self.screened, Counter()
        return counts

    def _label(self, target: Any) -> Any:
        value = target.item() if isinstance(target, np.generic) else target
        return value if self._decode is None else self._decode[value]

    # -- checkpoints --------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # Only the rows in use: a young model's checkpoint stays small.
        state = self.__dict__.copy()
        used = min(self._learned, self.window)
        state["_rows"] = self._rows[:used, : len(self._vocabulary)]
        state["_labels"] = self._labels[:used]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)  # _ensure_room grows the rows back on the next learn
        self._labels += [None] * (self.window - len(self._labels))

    # -- vectorising --------------------------------------------------------------------

    def _encode(self, x: dict[Any, Any], grow: bool) -> list[tuple[int, float]]:
        """``x`` as (column, value) pairs; ``grow`` adds new names to the vocabulary
        (only once every value of ``x`` was accepted)."""
        pairs: list[tuple[Any, float]] = []
        for name, value in x.items():
            if value is None:
                continue
            if isinstance(value, str):
                pairs.append(((name, value), 1.0))
            elif isinstance(value, bool | int | float | np.number):
                number = float(value)
                if not math.isfinite(number):
                    raise ValueError(f"feature {name!r} is {number}: only finite numbers fit")
                pairs.append((name, number))
            else:
                raise ValueError(
                    f"feature {name!r} is a {type(value).__name__}: a scikit-learn model takes "
                    "numbers, booleans, strings (one-hot) and None (missing)"
                )
        vocabulary = self._vocabulary
        encoded = []
        for key, number in pairs:
            column = vocabulary.get(key)
            if column is None:
                if not grow:
                    continue  # the last fit never saw this name
                column = vocabulary[key] = len(vocabulary)
            encoded.append((column, number))
        return encoded

    def _ensure_room(self, slot: int, width: int) -> None:
        height, capacity = self._rows.shape
        if height < self.window or capacity < width:
            grown = np.zeros((self.window, max(capacity, width + _COLUMN_BLOCK)))
            grown[:height, :capacity] = self._rows
            self._rows = grown


def _targets(labels: list[Any]) -> tuple[np.ndarray, list[Any] | None]:
    """Labels for scikit-learn: as they are when of one type, else codes and their decoding."""
    if len({type(label) for label in labels}) == 1:
        return np.asarray(labels), None
    decode = list(dict.fromkeys(labels))
    codes = {label: i for i, label in enumerate(decode)}
    return np.asarray([codes[label] for label in labels]), decode
