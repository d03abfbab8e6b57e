"""A scikit-learn classifier refitted on a sliding window of recent events, as a River model.

:class:`WindowedClassifier` keeps the last ``window`` labelled events it learned and, every
``refit_every`` of them, fits a fresh clone of ``estimator`` on that window; it predicts
with its last fit. So the daemon's test-then-train loop, its checkpoints and its retrains
treat a batch model like any River classifier:

- a refit does not stall the loop: the window is copied at the refit point (the
  ``n``-th labelled event) and fitted in a worker process (:mod:`learners.background_fit`,
  :mod:`learners.fit_pool`: no interpreter lock shared with the loop) while the model
  goes on predicting with its previous fit; the new fit takes over after
  the ``n + refit_lag``-th labelled event, so it predicts from the next one on. If it is
  not done by then, ``learn_one`` waits for it: predictions never depend on timing, and
  that wait is the only pause a refit can add. ``refit_lag=0`` fits synchronously inside
  the ``n``-th ``learn_one``, in the loop's process; the default is
  ``min(200, refit_every)`` (one fit in flight at most: a lag longer than ``refit_every``
  is refused). With ``wait=False`` nothing ever waits: a fit takes over at the first
  labelled event from ``n + refit_lag`` on at which it is done, and a refit point that
  finds the last fit still running is passed over (counted in ``skipped``); predictions
  then depend on how fast fits run against the stream, so two runs may differ;
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
it was last called (counted when the fit takes over; an event left out of several
refits counts in each).

>>> from sklearn.linear_model import LogisticRegression
>>> model = WindowedClassifier(LogisticRegression(), window=4, refit_every=2, refit_lag=1)
>>> model.predict_proba_one({"x": 1.0})
{}
>>> for x, y in [(0.0, False), (1.0, True), (0.1, False)]:
...     model.learn_one({"x": x}, y)
>>> model.predict_one({"x": 1.0}), model.fits  # the fit of events 1-2 took over after 3
(True, 1)
>>> model.learn_one({"x": 0.9}, True)  # the refit of events 1-4 starts
>>> model.fitting, model.fits
(True, 1)
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
from river import base

from learners import fit_pool
from learners.background_fit import BackgroundFit, FitResult, fit_window

__all__ = ["DEFAULT_REFIT_LAG", "WindowedClassifier"]

#: Columns are allocated in blocks so a growing vocabulary rarely copies the window.
_COLUMN_BLOCK = 16

#: Labelled events a fit runs in the background before it takes over, unless told.
DEFAULT_REFIT_LAG = 200


class WindowedClassifier(base.Classifier):
    """Refit ``estimator`` (scikit-learn, unfitted) on the last ``window`` events every
    ``refit_every`` events, in the background; each fit takes over ``refit_lag`` events
    after it started (None: ``min(200, refit_every)``), waited for unless ``wait`` is
    False (then once done, from that point on); predict with the last fit."""

    def __init__(
        self,
        estimator: Any,
        window: int = 10_000,
        refit_every: int = 1_000,
        screen: bool = False,
        refit_lag: int | None = None,
        wait: bool = True,
    ) -> None:
        if window < 1 or refit_every < 1:
            raise ValueError(
                f"window and refit_every must be at least 1, got {window} and {refit_every}"
            )
        if refit_lag is not None and (
            type(refit_lag) is not int or not 0 <= refit_lag <= refit_every
        ):
            raise ValueError(
                f"refit_lag must be a whole number from 0 (synchronous) to refit_every "
                f"({refit_every}: one fit in flight at a time), got {refit_lag!r}"
            )
        self.estimator = estimator
        self.window = window
        self.refit_every = refit_every
        self.screen = screen
        self.refit_lag = refit_lag
        self.wait = wait

        self._vocabulary: dict[Any, int] = {}
        self._rows = np.zeros((0, 0))  # a ring of the window's feature rows
        self._labels: list[Any] = [None] * window
        self._learned = 0
        self._fitted: Any = None
        self._fit_width = 0
        self._constant: Any = None  # the class of a one-class window
        self._decode: list[Any] | None = None  # codes -> labels when types were mixed
        self._pending: BackgroundFit | None = None  # the fit in flight
        self._takes_over_at = 0  # the _learned count at which it does
        #: Fits that took over (a fit still in flight is not counted yet).
        self.fits = 0
        #: Refit points passed over with ``wait=False`` because a fit was still in flight.
        self.skipped = 0
        self.screened: Counter[str] = Counter()

    # -- River's interface ------------------------------------------------------------

    def learn_one(self, x: dict[Any, Any], y: Any) -> None:
        values = self._encode(x, grow=True)  # refuses a bad event before anything changes
        if self._learned == 0 and self.lag > 0:
            fit_pool.warm()  # the worker is ready by the first refit point
        slot = self._learned % self.window
        self._ensure_room(slot, len(self._vocabulary))
        row = self._rows[slot]
        row[:] = 0.0
        for column, value in values:
            row[column] = value
        self._labels[slot] = y
        self._learned += 1
        if self._pending is not None and self._due():
            self._take_over()  # before a refit due now: a lag of refit_every ends there
        if self._learned % self.refit_every == 0:
            if self._pending is None:
                self._start_refit()
            else:  # wait=False, and the last fit is not done: it goes on, this one is not
                self.skipped += 1

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

    @property
    def lag(self) -> int:
        """Labelled events between a refit point and its fit's take-over."""
        if self.refit_lag is None:
            return min(DEFAULT_REFIT_LAG, self.refit_every)
        return self.refit_lag

    @property
    def fitting(self) -> bool:
        """True while a fit runs or waits for its take-over."""
        return self._pending is not None

    def refit(self) -> None:
        """Fit a fresh clone of ``estimator`` on the window as it is now, and predict with
        it at once (a fit in flight takes over first, so the order of fits holds)."""
        self.settle()
        rows, labels = self._window()
        self._use(fit_window(self.estimator, rows, labels, self.screen))

    def settle(self) -> None:
        """The fit in flight, if any, takes over now (waiting for it): a retrain's replay
        calls this at its end, so a candidate holds the fit of its whole pool whatever
        the lag."""
        if self._pending is not None:
            self._take_over()

    def _due(self) -> bool:
        """Whether the fit in flight takes over at this event: at ``refit_lag`` events
        after it started, waited for; with ``wait=False`` from then on, once it is done."""
        if self.wait:
            return self._learned == self._takes_over_at
        assert self._pending is not None
        return self._learned >= self._takes_over_at and self._pending.done

    def _start_refit(self) -> None:
        if self.lag == 0:
            self.refit()
            return
        rows, labels = self._window()  # a copy: the ring moves on during the fit
        self._pending = BackgroundFit(self.estimator, rows, labels, self.screen)
        self._pending.start()
        self._takes_over_at = self._learned + self.lag

    def _take_over(self) -> None:
        """The fit in flight serves from now on; waits for it if it is still running."""
        pending, self._pending = self._pending, None
        assert pending is not None
        self._use(pending.result())  # a fit that raised raises here, in learn_one

    def _use(self, result: FitResult) -> None:
        self._fitted, self._constant = result.fitted, result.constant
        self._fit_width, self._decode = result.width, result.decode
        self.screened.update(result.screened)
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
        # A wrapper pickled before refit_lag existed refitted synchronously, and still does.
        state = {"refit_lag": 0, "_pending": None, "_takes_over_at": 0, "wait": True,
                 "skipped": 0, **state}  # fmt: skip
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
