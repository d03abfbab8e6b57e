"""A bound on the distinct feature names one partition's learner takes in.

Every new feature name makes a River model grow (a weight, a running mean, a tree
split candidate), so a producer that keeps inventing names grows the model without
end. The budget remembers the names admitted so far; an event that would take them
past ``limit`` is refused whole, and events made only of known names always pass.

>>> budget = FeatureBudget(limit=3)
>>> budget.admit({"a": 1.0, "b": 2.0})
True
>>> budget.admit({"a": 0.5, "c": 1.0})
True
>>> budget.admit({"d": 1.0})
False
>>> budget.admit({"c": 3.0, "b": 1.0})
True
>>> sorted(budget.known)
['a', 'b', 'c']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class FeatureBudget:
    """At most ``limit`` distinct feature names, first come first served."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self.known: set[Any] = set()

    def admit(self, features: Mapping[Any, Any]) -> bool:
        """True (and the new names remembered) unless ``features`` would pass the limit."""
        known = self.known
        if known.issuperset(features):  # the common case: one C-level pass over the keys
            return True
        new = features.keys() - known
        if len(known) + len(new) > self.limit:
            return False
        known.update(new)
        return True

    def unknown(self, features: Mapping[Any, Any]) -> list[Any]:
        """The names of ``features`` not admitted yet (for the dead letter's detail)."""
        return sorted(features.keys() - self.known, key=str)
