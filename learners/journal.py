"""Undo an event a model choked on: a snapshot of the learner plus what it stepped since.

A model that raises in ``learn_one`` may have updated half of itself first (a pipeline's
scaler learned the event, its classifier did not); even ``StandardScaler.transform_one``
inserts the new names into its running statistics before the arithmetic fails. Nothing
short of the state from before the event is trustworthy. The journal keeps a pickled
snapshot of the whole :class:`PartitionLearner` and the ``(x, y, offset)`` of every event
stepped since; :meth:`Journal.undo_last` unpickles the snapshot and steps the kept
events again, all but the last one (the poison), then takes a fresh snapshot.

A retrain in flight is the exception: its job sees an event only after the serving
model learned it, so the job of the learner that raised never saw the poison, and it
carries over to the rebuilt learner as it is (with the replay feeding it), rather than
its copy in the snapshot, which would have to replay its pool again.

Cost: one ``list.append`` per event; one pickle of the learner every ``every`` events
(and after every drift, reset or retrain decision, so that a rebuild never crosses
one); memory for the snapshot and at most ``every`` kept events; a rebuild re-steps up
to ``every`` events (about ``every`` times the model's step time).

>>> from river import linear_model, preprocessing
>>> from learners.prequential import PartitionLearner
>>> learner = PartitionLearner(preprocessing.StandardScaler() | linear_model.LogisticRegression())
>>> journal = Journal(learner, every=100)
>>> stream = [({"a": 0.1}, False), ({"a": 0.9}, True), ({"a": "red"}, True), ({"a": 0.8}, True)]
>>> for offset, (x, y) in enumerate(stream):
...     journal.kept.append((x, y, offset))
...     try:
...         _ = learner.step(x, y, offset)
...     except TypeError:
...         learner = journal.undo_last(learner).learner
>>> learner.learned, sorted(journal.skipped), journal.consecutive_errors
(3, [2], 1)
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

from learners.prequential import PartitionLearner

#: One thing the learner was told, its offset last. Three kinds, told apart by length:
#: ``(x, y, offset)`` an event stepped (``y`` None when unlabelled and never to be
#: labelled); ``(x, event_id, at, offset)`` an unlabelled event held for its label;
#: ``(None, event_id, y, at, offset)`` a label that came later (``join``).
Kept = tuple[Any, ...]


@dataclass(frozen=True)
class Rebuilt:
    """A learner rebuilt without the poison event."""

    learner: PartitionLearner
    poison_offset: int
    #: Events stepped again on the snapshot.
    replayed: int
    #: Offsets that raised when stepped again, though they had not the first time (a
    #: model that is not deterministic); they are left out of the rebuilt learner too.
    lost: tuple[int, ...]
    #: Model errors on this partition with no event stepped successfully in between.
    consecutive_errors: int


class Journal:
    """The snapshot and the events since; the caller appends to ``kept`` before each step."""

    def __init__(
        self, learner: PartitionLearner, every: int = 10_000, remember: int = 10_000
    ) -> None:
        if every < 1 or remember < 1:
            raise ValueError(f"every and remember must be at least 1, got {every}, {remember}")
        self.every = every
        self.remember = remember
        #: Events stepped since the snapshot, in order, the one being stepped last.
        self.kept: list[Kept] = []
        #: Offsets the learner never saw (model errors, refused events), the most recent
        #: ``remember`` of them: a retrain replaying the log must skip them too.
        self.skipped: set[int] = set()
        self.consecutive_errors = 0
        self._successes_at_last_error = -1
        self._snapshot = b""
        self.snapshot(learner)

    @property
    def due(self) -> bool:
        """True once ``every`` events were kept: time for a fresh snapshot."""
        return len(self.kept) >= self.every

    def snapshot(self, learner: PartitionLearner) -> None:
        """Remember ``learner`` as it is now; the kept events are no longer needed."""
        self._snapshot = pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)
        self.kept.clear()  # in place: the caller may hold ``kept.append``

    def refuse_last(self) -> int:
        """The last kept event never reached the model (refused before it): forget it."""
        offset: int = self.kept.pop()[-1]
        self._skip(offset)
        return offset

    def undo_last(self, failed: PartitionLearner) -> Rebuilt:
        """The learner as if the last kept event had never been stepped; ``failed`` is the
        learner that raised on it (its retrain job in flight carries over).

        Outcomes re-derived on the way (drifts, resets, decisions) are dropped: they were
        reported when the events were first stepped. A snapshot is taken after each of
        them, so no rebuild crosses one.
        """
        poison = self.kept.pop()[-1]
        learner: PartitionLearner = pickle.loads(self._snapshot)
        lost = []
        for kept in self.kept:
            try:
                redo(learner, kept)
            except Exception:
                lost.append(kept[-1])
        learner.drain_outcomes()
        learner.retrain = failed.retrain
        if learner.pending is not None and failed.pending is not None:
            # Delays of joins not reported yet are the failed learner's; the ones the
            # replay re-derived before them were reported already.
            learner.pending.delays = failed.pending.delays
        replayed = len(self.kept)
        self.snapshot(learner)  # the next rebuild starts here
        for offset in (poison, *lost):
            self._skip(offset)
        self._count_error(learner)
        return Rebuilt(learner, poison, replayed, tuple(lost), self.consecutive_errors)

    def _count_error(self, learner: PartitionLearner) -> None:
        # Lifetime counts of events stepped successfully: unchanged since the last error
        # means no success in between. Costs the hot path nothing.
        successes = learner.learned + learner.predicted
        consecutive = successes == self._successes_at_last_error
        self.consecutive_errors = self.consecutive_errors + 1 if consecutive else 1
        self._successes_at_last_error = successes

    def _skip(self, offset: int) -> None:
        self.skipped.add(offset)
        if len(self.skipped) > self.remember:  # keep the newer half: replays read recent ranges
            self.skipped = set(sorted(self.skipped)[len(self.skipped) // 2 :])


def redo(learner: PartitionLearner, kept: Kept) -> None:
    """Tell ``learner`` again what ``kept`` records (see :data:`Kept`)."""
    if len(kept) == 3:
        learner.stepper()(*kept)
    elif len(kept) == 4:
        learner.hold(*kept)
    else:
        learner.join(*kept[1:])
