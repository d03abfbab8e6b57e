"""Per-partition sequence numbers: count what was skipped (gaps) and seen twice (duplicates).

Producers stamp each event with its partition's next ``seq``. The tracker lives in the
checkpoint next to the model, so after a restart it expects exactly the event after the
checkpoint: a re-read event that the restored model never saw is not a duplicate, and
an event the model lost would show as a gap.

>>> tracker = SequenceTracker()
>>> for seq in (0, 1, 1, 4):
...     tracker.observe(seq)
>>> tracker.duplicates, tracker.gaps, tracker.next_expected
(1, 2, 5)
"""

from __future__ import annotations


class SequenceTracker:
    def __init__(self) -> None:
        self.next_expected: int | None = None
        self.gaps = 0
        self.duplicates = 0

    def observe(self, seq: int) -> None:
        expected = self.next_expected
        if expected is None or seq == expected:
            self.next_expected = seq + 1
        elif seq < expected:
            self.duplicates += 1
        else:
            self.gaps += seq - expected
            self.next_expected = seq + 1
