"""Predictions waiting for their label: the pending store of one partition.

An event that comes without a label is predicted at once; its features, the prediction,
the model version that made it, its arrival time and its offset wait here, keyed by the
event's id, for a label record that comes later. The store is bounded twice: an entry
older than ``ttl_s`` (by the arrival times the caller gives, the Kafka record times, so a
replay after a crash decides exactly as the first pass did) and the oldest entries beyond
``max_pending`` are dropped. Every label is counted by what became of it:

- ``joined``: its entry was waiting, and is handed back to be scored and learned;
- ``expired``: its entry was dropped (too old, or pushed out by newer ones);
- ``duplicate``: its entry was joined already (a label sent twice);
- ``unknown``: no event with that id is remembered (never seen, or too long ago).

Ids of joined and dropped entries are remembered, the last ``max(max_pending,
REMEMBER_AT_LEAST)`` of them, to tell ``duplicate`` and ``expired`` from ``unknown``.
The store pickles with the learner, so it is part of every checkpoint.

>>> store = PendingLabels(max_pending=2, ttl_s=60.0)
>>> store.add("a", {"x": 1.0}, True, 1, at=0.0, offset=0)
>>> store.add("b", {"x": 2.0}, False, 1, at=1.0, offset=1)
>>> store.add("c", {"x": 3.0}, True, 1, at=2.0, offset=2)  # pushes "a" out
>>> store.take("b", at=5.0).prediction
False
>>> store.take("b", at=6.0), store.take("a", at=6.0), store.take("z", at=6.0)
(None, None, None)
>>> store.joined, store.duplicate, store.expired, store.unknown, len(store)
(1, 1, 1, 1, 1)
>>> store.take("c", at=100.0)  # 98 s after it arrived: past the 60 s time to live
>>> store.expired, store.delays
(2, [4.0])
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

#: Gone ids remembered at least, whatever ``max_pending`` (an id costs about 150 bytes).
REMEMBER_AT_LEAST = 10_000
JOINED = "joined"
EXPIRED = "expired"
#: What a label can become, in the order the metrics export them.
LABEL_OUTCOMES = (JOINED, "expired", "unknown", "duplicate")


class Pending(NamedTuple):
    """One prediction waiting for its label."""

    features: dict[Any, Any]
    prediction: Any
    model_version: int
    #: Arrival time of the event, in seconds (its Kafka record time).
    at: float
    offset: int
    #: The no-change baseline's prediction: the last label seen when the event came
    #: (None before any, and in entries pickled before the baseline existed).
    baseline: Any = None
    #: Every model's prediction by name, when the learner has challengers
    #: (``learners/challengers.py``); None without them.
    models: dict[str, Any] | None = None


class PendingLabels:
    """Entries keyed by event id, oldest first; ``add`` and ``take`` are O(1)."""

    def __init__(self, max_pending: int = 100_000, ttl_s: float = 86_400.0) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self.max_pending = max_pending
        self.ttl_s = ttl_s
        # An OrderedDict, not a dict: dropping the oldest entry is O(1) however many
        # were joined out of the middle (a dict's first key is found by a scan).
        self._entries: OrderedDict[str, Pending] = OrderedDict()
        self._gone: OrderedDict[str, str] = OrderedDict()
        #: Labels by outcome, over the learner's life.
        self.joined = self.expired = self.unknown = self.duplicate = 0
        #: Entries dropped without their label (too old, or beyond ``max_pending``).
        self.dropped = 0
        #: Seconds from event to label of each join since the caller last drained them.
        self.delays: list[float] = []
        self._now = float("-inf")

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._entries

    def add(
        self,
        event_id: str,
        features: dict[Any, Any],
        prediction: Any,
        model_version: int,
        at: float,
        offset: int,
        baseline: Any = None,
        models: dict[str, Any] | None = None,
    ) -> None:
        """Keep a prediction until its label comes; an id already waiting is replaced
        (the older entry is dropped: its label would now join the newer one)."""
        self._advance(at)
        entries = self._entries
        if entries.pop(event_id, None) is not None:
            self.dropped += 1
        entries[event_id] = Pending(
            features, prediction, model_version, at, offset, baseline, models
        )
        if len(entries) > self.max_pending:
            self._drop_oldest()

    def take(self, event_id: str, at: float) -> Pending | None:
        """The entry a label at time ``at`` joins, counted, or None (the label's outcome is
        counted as expired, duplicate or unknown)."""
        self._advance(at)
        entry = self._entries.pop(event_id, None)
        if entry is None:
            gone = self._gone.get(event_id)
            if gone == JOINED:
                self.duplicate += 1
            elif gone == EXPIRED:
                self.expired += 1
            else:
                self.unknown += 1
            return None
        self.joined += 1
        self._forget(event_id, JOINED)
        self.delays.append(max(at - entry.at, 0.0))
        return entry

    def resize(self, max_pending: int, ttl_s: float) -> None:
        """New bounds (another run's settings); entries beyond them go on the next call."""
        if max_pending < 1 or not ttl_s > 0:
            raise ValueError(f"bad bounds: max_pending={max_pending}, ttl_s={ttl_s}")
        self.max_pending, self.ttl_s = max_pending, ttl_s
        while len(self._entries) > max_pending:
            self._drop_oldest()

    def drain_delays(self) -> list[float]:
        delays, self.delays = self.delays, []
        return delays

    def _advance(self, at: float) -> None:
        """Move the clock to ``at`` (never back) and drop the entries older than the ttl."""
        if at > self._now:
            self._now = at
        horizon = self._now - self.ttl_s
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if oldest.at >= horizon:
                return
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        event_id, _ = self._entries.popitem(last=False)
        self.dropped += 1
        self._forget(event_id, EXPIRED)

    def _forget(self, event_id: str, outcome: str) -> None:
        gone = self._gone
        gone[event_id] = outcome
        gone.move_to_end(event_id)
        if len(gone) > max(self.max_pending, REMEMBER_AT_LEAST):
            gone.popitem(last=False)
