"""The labels of a replayed range (``--labels-topic``): a retrain's pool or a rebuild reads
the labels partition next to the events partition and merges the two by record time
exactly as the live loop does (``daemon/labels_topic.py``): a label goes just before the
first event whose record time is later than its own (same millisecond: the event first),
and the labels left after the range's last event go after it.

Where the labels range ends is known: the slot's labels offset when the retrain was
requested (kept on the job, so a restart replays the same range), or the labels offset
a rebuild resumes at. Where it starts is found by time: the first label whose record time
is not older than the first replayed event's (``LogReader.offset_for_time``, Kafka's
``offsets_for_times``). A label older than that event went, live, before it: its event
lies before the range, and the replay could not join it anyway. So the labels read are
exactly the ones that may join an event of the range. A broker that answers an earlier
offset (Tansu answers the log's start) costs reading more, not a different result: the
labels older than the first event are skipped as they are read.

Labels whose event lies before the range find nothing to join in the replay (the live
learner joined them): they stay out of a retrain's pool, and a rebuilt learner counts
them ``unknown`` in its own counters, never in the metrics (those were counted live).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from stream.ports import LogReader, Record, TopicPartition


@dataclass(eq=False)
class LabelsRange:
    """The labels partition ``tp`` up to ``end`` (exclusive), read on demand, handed out
    in the live loop's order."""

    tp: TopicPartition
    end: int
    #: The first replayed event's record time (ms); None until it was read.
    since: int | None = None
    #: The next labels offset to read.
    position: int = 0
    #: Read up to ``end`` (or the log gave no more in time): nothing more to read.
    done: bool = False
    #: The events partition reached the range's end: only labels are left.
    events_done: bool = False
    #: Give up reading when nothing came by then (the replayer's clock).
    deadline: float = 0.0
    #: Labels read and not handed out yet, in offset order.
    queue: deque[Record] = field(default_factory=deque)
    #: Labels skipped as older than ``since`` (the broker's answer was early).
    skipped: int = 0
    _found: bool = False

    def begin(self, reader: LogReader, first_event_time: int) -> None:
        """Find the first label to read: the first not older than the first event."""
        self.since = first_event_time
        offset = reader.offset_for_time(self.tp, first_event_time)
        if offset is None or offset >= self.end:
            self.done = True  # no label that late before the range's end
        else:
            self.position = offset

    def wants(self, timestamp: int | None) -> bool:
        """True when labels must be read before the events up to record time
        ``timestamp`` (None: the range's end) can go: none queued is that late yet."""
        if self.done:
            return False
        return timestamp is None or not self.queue or self.queue[-1].timestamp < timestamp

    def add(self, records: list[Record]) -> None:
        """Queue labels read in offset order (those from ``end`` on are not ours)."""
        since = self.since or 0
        for record in records:
            if record.offset >= self.end:
                self.done = True
                break
            if not self._found and record.timestamp < since:
                self.skipped += 1
                continue
            self._found = True
            self.queue.append(record)
        if records:
            self.position = records[-1].offset + 1
        if self.position >= self.end:
            self.done = True

    def before(self, timestamp: int) -> list[Record]:
        """The queued labels that go before an event of record time ``timestamp``."""
        queue, due = self.queue, []
        while queue and queue[0].timestamp < timestamp:
            due.append(queue.popleft())
        return due

    def rest(self) -> list[Record]:
        """Every queued label (the range's events are all handed out)."""
        rest = list(self.queue)
        self.queue.clear()
        return rest
