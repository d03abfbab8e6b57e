"""Late labels on their own topic (``--labels-topic``), co-partitioned with the events topic.

The daemon subscribes to both topics in one group. The range assignor (the only one the
consumer is given then) hands partition p of both topics to the same member, as both
have the same partition count: the label keyed by an event's id lands on the partition
number of its event, and so in the pending store of the learner holding its prediction.
Any other assignment is refused (:func:`co_partitioned`): a label elsewhere would be
``unknown`` there, and its event would expire here.

The two partitions are merged by record time, as if the labels had come in-band: a label
record is handled just before the first event whose time is later than its own (an event
and a label of the same millisecond: the event first, as a label never precedes its own
event). Labels fetched ahead of their events wait in a bounded queue (the labels
partition is paused while it is full); once the events partition is caught up (its
position at the high watermark of the last fetch) the queued labels are handled at once.
So a daemon that catches up on a backlog of both topics joins each label as live, rather
than finding labels of events it has not read yet.

Events wait, the other way round, for labels not fetched yet (:meth:`LabelsTopic.ready`):
an event goes once the labels partition was read up to a record later than it, or up to
the high watermark of its last fetch (labels may stop coming: an idle labels topic holds
nothing back). A labels partition that is neither (never fetched, or fetched too slowly)
holds its events back at most ``max_wait_s``; then they go, counted in
``streamlearn_label_waits_expired_total`` and logged. Without this wait the first events
would be handled before the labels preceding them whenever the labels partition's first
fetch comes after the events partition's.

Each slot's ``state.labels_offset`` is the next labels offset to handle: it is
checkpointed with the events offset and the pending store, and restored (the labels
partition is sought to it) on assignment, so after a crash every label is joined once.
Labels queued but not handled are not covered: they are read again.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from monitoring.metrics import StreamlearnMetrics
from stream.daemon.partitions import PartitionSlot
from stream.events import NOT_A_LABEL, DeadLetter, LateLabel
from stream.ports import Record, Source, TopicPartition

if TYPE_CHECKING:
    from stream.daemon.loop import Daemon

log = logging.getLogger(__name__)

#: Label records queued per partition before its labels partition is paused.
MAX_QUEUED = 20_000
#: Longest the events of a partition wait for its labels partition to be fetched, in
#: seconds: a fetch takes milliseconds, so only a labels partition whose broker does not
#: answer (or answers very slowly) holds events back that long.
MAX_WAIT_S = 30.0


class LabelsTopic:
    """The label records of each partition, waiting for their turn in record-time order."""

    def __init__(
        self,
        topic: str,
        events_topic: str,
        consumer: Source,
        metrics: StreamlearnMetrics | None = None,
        max_wait_s: float = MAX_WAIT_S,
    ) -> None:
        self.topic = topic
        self.events_topic = events_topic
        self.consumer = consumer
        self.metrics = metrics
        self.max_wait_s = max_wait_s
        self._queues: dict[int, deque[Record]] = {}
        self._paused: set[int] = set()
        #: Record time (ms) of the last label fetched, per partition.
        self._fetched_time: dict[int, int] = {}
        #: Since when (the loop's clock) the events of a partition wait for labels.
        self._waiting_since: dict[int, float] = {}
        #: Partitions whose events stopped waiting after ``max_wait_s``.
        self._given_up: set[int] = set()

    def labels_of(self, tp: TopicPartition) -> TopicPartition:
        """The labels partition co-partitioned with the events partition ``tp``."""
        return TopicPartition(self.topic, tp.partition)

    def split(self, partitions: Iterable[TopicPartition]) -> tuple[list[TopicPartition], set[int]]:
        """The events partitions of ``partitions``, and the numbers of its labels ones."""
        events, labels = [], set()
        for tp in partitions:
            if tp.topic == self.topic:
                labels.add(tp.partition)
            else:
                events.append(tp)
        return events, labels

    def take(
        self, batches: Mapping[TopicPartition, Sequence[Record]]
    ) -> dict[TopicPartition, Sequence[Record]]:
        """Queue the label records of a poll; the events records are returned."""
        events = {}
        for tp, records in batches.items():
            if tp.topic != self.topic:
                events[tp] = records
                continue
            if not records:
                continue
            queue = self._queues.setdefault(tp.partition, deque())
            queue.extend(records)
            self._fetched_time[tp.partition] = records[-1].timestamp
            if len(queue) >= MAX_QUEUED and tp.partition not in self._paused:
                self._paused.add(tp.partition)
                self.consumer.pause(tp)
        return events

    def ready(self, tp: TopicPartition, records: Sequence[Record], now: float) -> int:
        """How many of ``records`` (events of ``tp``, in order) may be handled now: every
        one when the labels partition is caught up, else those not later than the last
        label fetched; 0 means they wait. After ``max_wait_s`` of waiting, every one."""
        partition = tp.partition
        if self._labels_caught_up(partition):
            return self._stop_waiting(partition, len(records))
        fetched = self._fetched_time.get(partition)
        count = 0
        if fetched is not None:
            for record in records:
                if record.timestamp > fetched:
                    break
                count += 1
        if count:
            return self._stop_waiting(partition, count)
        since = self._waiting_since.setdefault(partition, now)
        if now - since < self.max_wait_s:
            return 0
        if partition not in self._given_up:
            self._given_up.add(partition)
            self._count_wait_expired(tp)
        return len(records)

    def waiting(self, tp: TopicPartition) -> bool:
        """True while the events of ``tp`` are held back for labels not fetched yet."""
        partition = tp.partition
        return partition in self._waiting_since and partition not in self._given_up

    def _labels_caught_up(self, partition: int) -> bool:
        """The labels partition was read up to the high watermark of its last fetch."""
        labels = TopicPartition(self.topic, partition)
        end = self.consumer.highwater(labels)
        if end is None:
            return False
        position = self.consumer.position(labels)
        return position is not None and position >= end

    def _stop_waiting(self, partition: int, count: int) -> int:
        self._waiting_since.pop(partition, None)
        self._given_up.discard(partition)
        return count

    def _count_wait_expired(self, tp: TopicPartition) -> None:
        log.warning(
            "%s[%d]: events handled without waiting longer for labels partition %s[%d], "
            "neither fetched past them nor caught up after %.0f s: labels before them in "
            "time may come after them",
            tp.topic,
            tp.partition,
            self.topic,
            tp.partition,
            self.max_wait_s,
        )
        if self.metrics is not None:
            self.metrics.label_waits_expired.labels(tp.topic, str(tp.partition)).inc()

    def queued(self, tp: TopicPartition) -> int:
        queue = self._queues.get(tp.partition)
        return len(queue) if queue else 0

    def before(self, tp: TopicPartition, timestamp: int) -> list[Record]:
        """Dequeue the labels of ``tp``'s partition older than ``timestamp`` (ms)."""
        queue = self._queues.get(tp.partition)
        due: list[Record] = []
        while queue and queue[0].timestamp < timestamp:
            due.append(queue.popleft())
        self._maybe_resume(tp.partition)
        return due

    def prefix(self, tp: TopicPartition, records: Sequence[Record]) -> int:
        """How many of ``records`` (events) come before the next queued label."""
        queue = self._queues.get(tp.partition)
        if not queue:
            return len(records)
        label_time = queue[0].timestamp
        for n, record in enumerate(records):
            if record.timestamp > label_time:
                return n
        return len(records)

    def all(self, tp: TopicPartition) -> list[Record]:
        """Dequeue every label of ``tp``'s partition (its events are caught up)."""
        queue = self._queues.pop(tp.partition, None)
        self._maybe_resume(tp.partition)
        return list(queue) if queue else []

    def drop(self, partition: int) -> None:
        """Forget the queued labels of ``partition`` (revoked, or read from a refused place).

        Called while the partition is still assigned (kafka-python drops a revoked one
        only after the listener returns; resuming one it does not hold raises): a pause
        of ours is undone, as the consumer keeps a partition's paused flag while it stays
        assigned, also through an eager rebalance that gives it back."""
        self._queues.pop(partition, None)
        if partition in self._paused:
            self._paused.discard(partition)
            self.consumer.resume(TopicPartition(self.topic, partition))
        self._fetched_time.pop(partition, None)
        self._stop_waiting(partition, 0)

    def _maybe_resume(self, partition: int) -> None:
        if partition in self._paused and self.queued(TopicPartition(self.topic, partition)) < (
            MAX_QUEUED // 2
        ):
            self._paused.discard(partition)
            self.consumer.resume(TopicPartition(self.topic, partition))


def co_partitioned(events: Iterable[TopicPartition], labels: set[int]) -> str | None:
    """None when the member holds the same partition numbers of both topics, else why not.

    >>> co_partitioned([TopicPartition("e", 0), TopicPartition("e", 1)], {0, 1}) is None
    True
    >>> co_partitioned([TopicPartition("e", 0)], {1})
    'events partitions [0] but labels partitions [1]'
    """
    numbers = {tp.partition for tp in events}
    if numbers == labels:
        return None
    return f"events partitions {sorted(numbers)} but labels partitions {sorted(labels)}"


def caught_up(consumer: Source, slot: PartitionSlot) -> bool:
    """True when the events partition was read up to the high watermark of its last fetch."""
    end = consumer.highwater(slot.tp)
    return end is not None and (slot.next_offset or 0) >= end


def join_labels(daemon: Daemon, slot: PartitionSlot, records: Sequence[Record]) -> None:
    """Handle label records of the labels topic for ``slot``, as ``Daemon._handle`` handles
    in-band ones: join each to its prediction, dead-letter what is not a label, undo a
    join the model raised on. The labels offset advances past each record handled."""
    if not records or slot.halted is not None:
        return
    started = daemon._cycle_clock()
    journal = slot.journal or daemon.model_errors.open(slot)
    publisher, decode, state = daemon.publisher, daemon.decode, slot.state
    # The events position stands for where the label came: drifts are told in
    # events offsets, and the journal redoes the join with the same one.
    at_event = -1 if slot.next_offset is None else slot.next_offset - 1
    dead = handled = 0
    for record in records:
        handled += 1
        state.labels_offset = record.offset + 1
        label = decode(record.value)
        if type(label) is not LateLabel:
            letter = label if type(label) is DeadLetter else _not_a_label()
            publisher.dead_letter(record, letter)
            daemon.metrics.dead_letters.labels(letter.reason).inc()
            dead += 1
            continue
        at = record.timestamp * 0.001
        journal.kept.append((None, label.id, label.label, at, at_event))
        try:
            slot.learner.join(label.id, label.label, at, at_event)
        except Exception as exc:  # the model raised on the features it predicted on
            dead += 1
            if daemon._undone_halted(slot, record, exc):
                break
            continue
        outcomes = slot.learner.drain_outcomes()
        if outcomes:
            daemon._on_outcomes(slot, outcomes)
    publisher.ship()
    slot.events_since_checkpoint += handled
    daemon._record_batch(slot, handled, dead, started, None)
    if journal.due:
        journal.snapshot(slot.learner)


def _not_a_label() -> DeadLetter:
    return DeadLetter(
        NOT_A_LABEL,
        "a record of the labels topic has features: events go to the events topic, the "
        'labels topic takes only {"id", "label"} records',
    )
