"""Prequential accuracy: exact since the start, and over a rolling window of labelled events."""

from __future__ import annotations


class RollingAccuracy:
    """Accuracy of the last ``window`` 0/1 outcomes, kept in a ring buffer with a running sum.

    >>> acc = RollingAccuracy(window=3)
    >>> for hit in (True, False, True, True):
    ...     acc.update(hit)
    >>> acc.get()  # the last three: False, True, True
    0.6666666666666666
    """

    def __init__(self, window: int = 1000) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window
        self._ring = bytearray(window)
        self._next = 0
        self._count = 0
        self._hits = 0

    def update(self, hit: bool) -> None:
        slot = self._next
        if self._count == self.window:
            self._hits -= self._ring[slot]
        else:
            self._count += 1
        self._ring[slot] = hit
        self._hits += hit
        self._next = slot + 1 if slot + 1 < self.window else 0

    def get(self) -> float:
        return self._hits / self._count if self._count else 0.0

    def __len__(self) -> int:
        return self._count


class CumulativeAccuracy:
    """Exact prequential accuracy since the learner started: hits over labelled events.

    Kept as two integers so that it equals River's ``metrics.Accuracy`` to the last bit.

    >>> acc = CumulativeAccuracy()
    >>> acc.update(True); acc.update(False)
    >>> acc.get()
    0.5
    """

    def __init__(self) -> None:
        self.hits = 0
        self.total = 0

    def update(self, hit: bool) -> None:
        self.hits += hit
        self.total += 1

    def get(self) -> float:
        return self.hits / self.total if self.total else 0.0
