"""The no-change baseline: what predicting the last label seen would have scored.

On many real streams consecutive labels are alike, and this baseline is hard to beat; an
operator must see when the model does not. Each scored label is compared with the label
seen before it (for an event whose label comes later, the last label seen when the event
came: what the model knew then too), then becomes the last label seen.

>>> baseline = NoChangeAccuracy(window=10)
>>> for y in (1, 1, 2, 2, 2):
...     baseline.score(baseline.last, y)
>>> baseline.cumulative()  # hit, miss, hit, hit: the first label had nothing before it
0.75
>>> baseline = NoChangeError(window=10)
>>> for y in (1.0, 3.0, 2.0):
...     baseline.score(baseline.last, y)
>>> baseline.cumulative()
1.5
"""

from __future__ import annotations

from typing import Any

from learners.mae import CumulativeError, RollingError


class NoChangeAccuracy:
    """Accuracy of the last label seen as the prediction, cumulative and rolling.

    ``score`` runs for every labelled event, so it is one method with both updates
    written out (a ring of hits with a running sum, as ``RollingAccuracy`` keeps).
    """

    def __init__(self, window: int = 1000) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        #: The last label seen; None until the first.
        self.last: Any = None
        self.window = window
        self.hits = 0
        self.total = 0
        self._ring = bytearray(window)
        self._next = 0
        self._count = 0
        self._ring_hits = 0

    def score(self, prediction: Any, y: Any) -> None:
        """Score ``prediction`` (the label last seen when the event came) against ``y``."""
        if prediction is not None:
            hit = prediction == y
            self.hits += hit
            self.total += 1
            slot = self._next
            if self._count == self.window:
                self._ring_hits -= self._ring[slot]
            else:
                self._count += 1
            self._ring[slot] = hit
            self._ring_hits += hit
            self._next = slot + 1 if slot + 1 < self.window else 0
        self.last = y

    def cumulative(self) -> float:
        return self.hits / self.total if self.total else 0.0

    def rolling(self) -> float:
        return self._ring_hits / self._count if self._count else 0.0


class NoChangeError:
    """MAE of the last label seen as the prediction, cumulative and rolling."""

    def __init__(self, window: int = 1000) -> None:
        self.last: Any = None
        self._cumulative = CumulativeError()
        self._rolling = RollingError(window)

    @property
    def total(self) -> int:
        return self._cumulative.total

    def score(self, prediction: Any, y: Any) -> None:
        if prediction is not None:
            error = abs(prediction - y)
            self._cumulative.update(error)
            self._rolling.update(error)
        self.last = y

    def cumulative(self) -> float:
        return self._cumulative.get()

    def rolling(self) -> float:
        return self._rolling.get()
