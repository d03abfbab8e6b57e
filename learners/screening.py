"""Screening the pool: leave exact duplicates and contradictory labels out of what a model
relearns from (``--screen-pool``).

Two places learn from the pool at once rather than event by event as they come: a
``sklearn:`` model's refit on its window (:class:`learners.batch.WindowedClassifier`,
which screens the whole window, so every copy of a contradiction goes), and a retrain's
replay of the log into a candidate, screened here as it streams by :class:`PoolScreen`.
A replay cannot see ahead, so its first copy of a contradiction is learned and later
copies with another label are left out. Two events are the same when their feature dicts
are equal (``1 == 1.0 == True`` as in Python).

>>> screen = PoolScreen()
>>> [screen.admit({"a": 1}, y) for y in (True, True, False)]
[None, 'duplicate', 'contradiction']
>>> screen.drain(), screen.drain()
(Counter({'duplicate': 1, 'contradiction': 1}), Counter())
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["REASONS", "PoolScreen", "drain_screened", "screening"]

REASONS = ("duplicate", "contradiction")


class PoolScreen:
    """Remembers the (features, label) pairs of one replay and judges each new one."""

    def __init__(self) -> None:
        self._labels: dict[frozenset[tuple[Any, Any]], Any] = {}
        #: Events left out since the last ``drain``, by reason.
        self.counts: Counter[str] = Counter()

    def admit(self, x: dict[Any, Any], y: Any) -> str | None:
        """None when ``(x, y)`` may be learned, else why it is left out (and counted)."""
        try:
            key = frozenset(x.items())
        except TypeError:  # an unhashable value: never equal to another event, learn it
            return None
        if key not in self._labels:
            self._labels[key] = y
            return None
        reason = "duplicate" if self._labels[key] == y else "contradiction"
        self.counts[reason] += 1
        return reason

    def drain(self) -> Counter[str]:
        counts, self.counts = self.counts, Counter()
        return counts


def screening(model: Any) -> Any:
    """``model`` with window screening on, when it refits from a window (else as it is)."""
    from learners.batch import WindowedClassifier

    if isinstance(model, WindowedClassifier):
        return model.clone({"screen": True})
    return model


def drain_screened(learner: Any) -> Counter[str]:
    """Events the serving model's, a retrain candidate's and the challengers' refits left
    out since the last call, by reason (empty unless they are screening ``sklearn:`` models)."""
    total: Counter[str] = Counter()
    retrain = getattr(learner, "retrain", None)
    challengers = getattr(learner, "challengers", None)
    shadows = challengers.models() if challengers is not None else []
    for model in (learner.model, getattr(retrain, "candidate", None), *shadows):
        drain = getattr(model, "drain_screened", None)
        if drain is not None:
            total.update(drain())
    return total
