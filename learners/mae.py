"""Prequential error of a regressor: MAE and RMSE since the start, and over a rolling window.

``get`` is the mean absolute error (what ADWIN watches and retrains are judged on), so a
regression learner reads its scores the way a classification learner reads accuracy.

>>> cumulative = CumulativeError()
>>> for error in (1.0, 3.0):
...     cumulative.update(error)
>>> cumulative.get(), cumulative.rmse()
(2.0, 2.23606797749979)
"""

from __future__ import annotations

import math


class CumulativeError:
    """Mean absolute and root mean squared error over every scored prediction.

    Kept as running means updated the way River's ``stats.Mean`` updates them, so the
    mean absolute error equals ``metrics.MAE`` (and the RMSE ``metrics.RMSE``) to the
    last bit, whatever the scale of the errors.
    """

    def __init__(self) -> None:
        self.mae = 0.0
        self.mse = 0.0
        self.total = 0

    def update(self, error: float) -> None:
        """``error`` is the absolute error of one prediction."""
        self.total += 1
        weight = 1.0 / self.total
        self.mae += weight * (error - self.mae)
        self.mse += weight * (error * error - self.mse)

    def get(self) -> float:
        return self.mae

    def rmse(self) -> float:
        return math.sqrt(self.mse)


class RollingError:
    """MAE and RMSE of the last ``window`` absolute errors, in a ring with running sums.

    Running sums drift when large and small errors come and go, so they are summed
    afresh (``math.fsum``) each time the ring has turned once: O(1) per update, amortised.

    >>> rolling = RollingError(window=2)
    >>> for error in (10.0, 1.0, 3.0):
    ...     rolling.update(error)
    >>> rolling.get(), round(rolling.rmse(), 6)  # the last two: 1.0 and 3.0
    (2.0, 2.236068)
    """

    def __init__(self, window: int = 1000) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window
        self._ring = [0.0] * window
        self._next = 0
        self._count = 0
        self._abs_sum = 0.0
        self._sq_sum = 0.0

    def update(self, error: float) -> None:
        slot = self._next
        if self._count == self.window:
            old = self._ring[slot]
            self._abs_sum -= old
            self._sq_sum -= old * old
        else:
            self._count += 1
        self._ring[slot] = error
        self._abs_sum += error
        self._sq_sum += error * error
        if slot + 1 < self.window:
            self._next = slot + 1
        else:
            self._next = 0
            self._resum()

    def _resum(self) -> None:
        ring = self._ring[: self._count]
        self._abs_sum = math.fsum(ring)
        self._sq_sum = math.fsum(error * error for error in ring)

    def get(self) -> float:
        return max(self._abs_sum, 0.0) / self._count if self._count else 0.0

    def rmse(self) -> float:
        return math.sqrt(max(self._sq_sum, 0.0) / self._count) if self._count else 0.0

    def __len__(self) -> int:
        return self._count
