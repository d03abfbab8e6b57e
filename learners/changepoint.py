"""Where did the serving model's error go up? An estimate of the change point.

ADWIN says *that* the error rose, and its window after the alarm still holds many events
from before the change (it drops old buckets only until the halves agree). A retrain's
since-change pool must not learn those old events, so the change point is estimated
again from the serving model's errors on the recent events: the split that maximises the
standardised rise of the mean error,

    (mean after - mean before) * sqrt(n_before * n_after / n),

the statistic of binary segmentation (one change in the mean). O(n) with running sums.

>>> change_point([0.0] * 200 + [1.0, 0.0, 1.0, 1.0] * 5)
200
>>> change_point([1.0] * 10 + [0.0] * 10)  # no rise anywhere: the whole window
0
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def change_point(errors: Sequence[float]) -> int:
    """Index of the first event after the most likely rise of the error (0: none found)."""
    return largest_rise(errors)[0]


def largest_rise(errors: Sequence[float], trim: float = 0.0) -> tuple[int, float]:
    """``change_point`` and its statistic in standard deviations of the errors: how
    clearly the error rose there (0.0 when it did not rise or does not vary). ``trim``:
    the share of events at each end where no split is sought (the statistic of a split
    near an end rests on a few events and is unstable; 0.15 is the usual trimming).

    >>> largest_rise([0.0] * 95 + [1.0] * 5, trim=0.15)[0]  # the rise is too near the end
    85
    """
    n = len(errors)
    low, high = max(1, math.ceil(trim * n)), n - math.ceil(trim * n)
    finite = [e if math.isfinite(e) else 0.0 for e in errors]
    total = sum(finite)
    best, best_at = 0.0, 0
    before = 0.0
    for k in range(1, n):
        before += finite[k - 1]
        if not low <= k <= high:
            continue
        mean_before = before / k
        mean_after = (total - before) / (n - k)
        rise = (mean_after - mean_before) * math.sqrt(k * (n - k) / n)
        if rise > best:
            best, best_at = rise, k
    if not n:
        return 0, 0.0
    mean = total / n
    spread = math.sqrt(sum((e - mean) ** 2 for e in finite) / n)
    return best_at, best / spread if spread else 0.0
