"""A paired sequential test: is a candidate better than the serving model, event by event?

Both models predict the same live events before learning them, so their errors are
*paired*. Only the events on which they differ say anything about which is better: for a
classifier those where exactly one of them was right (McNemar's test), for a regressor
those where one had the smaller absolute error (the sign test). Under "no difference"
each such event is a fair coin, so with ``wins`` for the candidate and ``losses`` the
statistic ``(wins - losses) / sqrt(wins + losses)`` is approximately standard normal.

The test is read after every event (a sequential test), so its bounds are wider than a
one-look test's: :data:`PROMOTE_Z` and :data:`REJECT_Z` (2.58, a one-look 1 % two-sided
bound) keep the chance of a wrong early decision small over a few thousand looks of a
slowly moving statistic, and a cap on the events decides what is still open.

>>> test = SignTest()
>>> for candidate, serving in [(0, 1)] * 12 + [(1, 0)] * 2 + [(0, 0)] * 5:
...     test.add(candidate, serving)
>>> test.wins, test.losses, test.ties, round(test.statistic, 2)
(12, 2, 5, 2.67)
>>> test.clearly_better(min_discordant=10)
True
"""

from __future__ import annotations

import math

#: The statistic at or above which a candidate is clearly better (promoted early).
PROMOTE_Z = 2.58
#: The statistic at or below which a candidate is clearly worse (rejected early).
REJECT_Z = 2.58
#: Events on which the models differed before the test may say "clearly".
MIN_DISCORDANT = 10
#: How clearly the serving model's error must have risen after a candidate started (the
#: standardised rise of ``learners.changepoint.largest_rise``, searched away from the ends:
#: ``TRIM``) for the candidate to start again instead of being promoted. 3.5 is the 1 %
#: critical value of the sup-Wald test for one break with 15 % trimming (Andrews 1993,
#: 12.35 for the squared statistic).
RISE_Z = 3.5
TRIM = 0.15
#: Weight kept by the older differing events at each new one (1: none forgotten).
DECAY = 1.0


class SignTest:
    """Counts of paired comparisons: candidate better (``wins``), worse, or equal."""

    def __init__(self, decay: float | None = None) -> None:
        self.decay = DECAY if decay is None else decay
        self.wins = 0
        self.losses = 0
        self.ties = 0
        # The weighted counts the statistic reads.
        self._wins = 0.0
        self._losses = 0.0

    def add(self, candidate_error: float, serving_error: float) -> None:
        """One event both models predicted before learning it, by their errors (0 or 1
        for a classifier's miss, the absolute error for a regressor's)."""
        if candidate_error < serving_error:
            self.wins += 1
            self._wins = self._wins * self.decay + 1.0
            self._losses *= self.decay
        elif candidate_error > serving_error:
            self.losses += 1
            self._losses = self._losses * self.decay + 1.0
            self._wins *= self.decay
        else:
            self.ties += 1

    @property
    def discordant(self) -> int:
        return self.wins + self.losses

    @property
    def statistic(self) -> float:
        """``(wins - losses) / sqrt(wins + losses)``: 0 before any discordant event."""
        n = self._wins + self._losses
        return (self._wins - self._losses) / math.sqrt(n) if n else 0.0

    def clearly_better(self, z: float = PROMOTE_Z, min_discordant: int = MIN_DISCORDANT) -> bool:
        return self.discordant >= min_discordant and self.statistic >= z

    def clearly_worse(self, z: float = REJECT_Z, min_discordant: int = MIN_DISCORDANT) -> bool:
        return self.discordant >= min_discordant and self.statistic <= -z
