"""A bound on the distinct features one partition's learner takes in.

Every new feature makes a model grow (a weight, a running mean, a tree split
candidate), so a producer that keeps inventing them grows the model without end. A
feature is a name with a number (or any non-string value), or a name *with its value*
when the value is a string: River's one-hot encoders, a Hoeffding tree's nominal splits
and the ``sklearn:`` wrapper each grow by one for every new string value, so an
identifier sent as a string ("user-81734") would otherwise grow the model under a
single name. The budget remembers the features admitted so far; an event that would
take them past ``limit`` is refused whole, and events made only of known features
always pass.

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
>>> colours = FeatureBudget(limit=2)
>>> colours.admit({"colour": "red"}), colours.admit({"colour": "blue"})
(True, True)
>>> colours.admit({"colour": "green"}), colours.unknown({"colour": "green"})
(False, ['colour=green'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class FeatureBudget:
    """At most ``limit`` distinct features, first come first served."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        #: Names, and (name, value) pairs for string values.
        self.known: set[Any] = set()

    def admit(self, features: Mapping[Any, Any]) -> bool:
        """True (and the new features remembered) unless ``features`` would pass the limit."""
        known = self.known
        keys = _keys(features)
        if known.issuperset(keys):  # the common case: one C-level pass
            return True
        new = set(keys) - known
        if len(known) + len(new) > self.limit:
            return False
        known.update(new)
        return True

    def unknown(self, features: Mapping[Any, Any]) -> list[str]:
        """The features of ``features`` not admitted yet, readable (for the dead letter)."""
        return sorted(map(_readable, set(_keys(features)) - self.known))


def _keys(features: Mapping[Any, Any]) -> Iterable[Any]:
    # map(type, ...) runs in C: events without strings (most) cost one pass more.
    if str not in set(map(type, features.values())):
        return features.keys()
    return [(name, value) if type(value) is str else name for name, value in features.items()]


def _readable(key: Any) -> str:
    return f"{key[0]}={key[1]}" if type(key) is tuple and len(key) == 2 else str(key)
