"""Replay an offset range of a partition, a slice at a time: into a retrain candidate,
or into a partition's learner being rebuilt (``stream/daemon/rebuild.py``).

The log is the retraining pool. One group-less consumer reads the range; the daemon
calls :meth:`Replayer.advance` between live batches with a time budget, so a retrain
over 20,000 events (or a rebuild over 100,000) never stalls consumption for long nor
costs group membership. Tasks are served one after another, in the order submitted.

With a labels topic (``--labels-topic``) a task also reads its labels partition, over
the range :mod:`stream.daemon.labels_replay` finds, and its records are handed out
merged with the events by record time as the live loop merged them: one reader, moved
between the two partitions a chunk at a time.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from learners.retraining import RetrainJob
from learners.screening import PoolScreen
from stream.daemon.labels_replay import LabelsRange
from stream.events import Decoder, Event, LateLabel, decode
from stream.ports import LogReader, Record, TopicPartition

log = logging.getLogger(__name__)

#: Records trained between two looks at the clock.
TRAIN_RUN = 200

#: Told, when a screened replay ends, how many of its events were left out, by reason.
Screened = Callable[[TopicPartition, Counter[str]], None]


class RangeTask(Protocol):
    """What the replayer serves: a range of a partition and what its records go into."""

    tp: TopicPartition
    start_offset: int
    end_offset: int
    started: bool
    deadline: float
    #: Fetched records not taken yet (the last slice ran out of time).
    pending: list[Record]
    #: ``--labels-topic``: the labels partition's range, merged with the events.
    labels: LabelsRange | None

    def take(self, records: list[Record]) -> bool:
        """Use ``records`` (in offset order); True once nothing more is wanted."""

    def take_labels(self, records: list[Record]) -> bool:
        """Use label records of the labels topic, in the live loop's order; True once
        nothing more is wanted."""

    def finish(self) -> None:
        """The range was read (or reading it gave up); called once."""

    def cancelled(self) -> None:
        """The task was dropped unfinished (its learner is gone); ``finish`` never comes."""


@dataclass
class ReplayTask:
    """A retrain's replay: the pool range trained into the job's candidate."""

    tp: TopicPartition
    start_offset: int
    end_offset: int
    job: RetrainJob
    #: Offsets in the range the serving learner never saw (poison, refused events).
    skip: frozenset[int] = frozenset()
    #: ``--screen-pool``: duplicates and contradictions left out, told to ``on_screened``.
    screen: PoolScreen | None = None
    on_screened: Screened | None = None
    started: bool = False
    deadline: float = 0.0
    #: Fetched records not trained yet (the last slice ran out of time).
    pending: list[Record] = field(default_factory=list)
    #: Features (and offsets) of unlabelled events read so far, by id, for labels later
    #: in the range.
    held: dict[str, tuple[dict[str, Any], int]] = field(default_factory=dict)
    #: Reads the records as the loop does (number labels for a regression).
    read: Decoder = decode
    labels: LabelsRange | None = None

    def take(self, records: list[Record]) -> bool:
        """Train the candidate on ``records``; True once the range's end was reached (or
        the candidate raised: the job is abandoned, nothing more to train). Each event is
        trained at the offset of its features, as the learner recorded it: a job scores
        its candidates on, and splits its pools by, these offsets."""
        job, skip, screen, read = self.job, self.skip, self.screen, self.read
        for record in records:
            if record.offset >= self.end_offset:
                return True
            if record.offset in skip:
                continue
            event = read(record.value)
            if type(event) is Event:
                if event.label is not None:
                    if screen is None or screen.admit(event.features, event.label) is None:
                        job.train(event.features, event.label, record.offset)
                elif event.id is not None:
                    self.held[event.id] = (event.features, record.offset)
                    continue
            elif type(event) is LateLabel:
                self._join(event)
            if job.abandoned is not None:
                return True
        return records[-1].offset + 1 >= self.end_offset

    def take_labels(self, records: list[Record]) -> bool:
        """Join labels of the labels topic as in-band ones (``take``); what is not a label
        was dead-lettered live and stays out."""
        for record in records:
            event = self.read(record.value)
            if type(event) is LateLabel:
                self._join(event)
                if self.job.abandoned is not None:
                    return True
        return False

    def _join(self, label: LateLabel) -> None:
        """Train the event ``label`` is for, as the live learner joined it; labels of
        events from before the range have nothing to join (older data stays out)."""
        held = self.held.pop(label.id, None)
        if held is None:
            return
        features, origin = held
        if self.screen is None or self.screen.admit(features, label.label) is None:
            self.job.train(features, label.label, origin)

    def cancelled(self) -> None:
        pass  # the job went with its learner

    def finish(self) -> None:
        if self.screen is not None and self.on_screened is not None:
            self.on_screened(self.tp, self.screen.drain())
        self.job.replay_finished()
        if self.job.abandoned is not None:
            log.warning(
                "replay of %s offsets %d..%d abandoned: the candidate raised (%s)",
                self.tp,
                self.start_offset,
                self.end_offset - 1,
                self.job.abandoned,
            )
            return
        log.info(
            "replayed %s offsets %d..%d into a candidate (%d events)",
            self.tp,
            self.start_offset,
            self.end_offset - 1,
            self.job.trained_on,
        )


class Replayer:
    """Serves replay tasks one after another with one lazily created consumer."""

    def __init__(
        self,
        consumer_factory: Callable[[], LogReader],
        give_up_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        decode: Decoder = decode,
        screen_pool: bool = False,
        on_screened: Screened | None = None,
        on_expired: Callable[[TopicPartition, int], None] | None = None,
        labels_topic: str | None = None,
    ) -> None:
        """``decode`` reads the records as the loop reads them (number labels for a
        regression: ``stream.events.decoder_for``); ``on_expired`` is told how many
        offsets of a range retention had deleted (a metric); ``labels_topic``: late
        labels also come on that topic, and ranges are replayed with theirs."""
        self.labels_topic = labels_topic
        self.consumer_factory = consumer_factory
        self.decode = decode
        self.give_up_after_s = give_up_after_s
        self.clock = clock
        self.screen_pool = screen_pool
        self.on_screened = on_screened
        self.on_expired = on_expired
        self._consumer: LogReader | None = None
        self._tasks: deque[RangeTask] = deque()
        #: The offset the head task's next fetched record should have (-1: none fetched).
        self._next_offset = -1
        #: The partition the reader reads now (a labels task moves it between two).
        self._reading: TopicPartition | None = None

    def warm_up(self) -> None:
        """Create the consumer now: its bootstrap takes hundreds of milliseconds, which
        the first retrain would otherwise spend with consumption stalled."""
        if self._consumer is None:
            self._consumer = self.consumer_factory()

    def submit(
        self,
        tp: TopicPartition,
        start: int,
        end: int,
        job: RetrainJob,
        skip: frozenset[int] = frozenset(),
        labels_end: int | None = None,
    ) -> None:
        """Replay ``[start, end)`` of ``tp`` into ``job``; with a labels topic, with the
        labels before ``labels_end`` (the slot's labels offset when the retrain was
        requested: kept on the job, for a restart to replay the same range)."""
        screen = PoolScreen() if self.screen_pool else None
        job.labels_end = labels_end
        task = ReplayTask(tp, start, end, job, skip, screen, self.on_screened, read=self.decode)
        task.labels = self.labels_range(tp, labels_end)
        self._tasks.append(task)

    def labels_range(self, tp: TopicPartition, end: int | None) -> LabelsRange | None:
        """The labels partition of ``tp`` up to ``end``; None without a labels topic, or
        when no label was handled yet (``end`` None)."""
        if self.labels_topic is None or end is None:
            return None
        return LabelsRange(TopicPartition(self.labels_topic, tp.partition), end)

    def add(self, task: RangeTask) -> None:
        """Serve ``task`` after those already submitted."""
        self._tasks.append(task)

    def cancel(self, tp: TopicPartition) -> None:
        """The partition was revoked: its learner, and so its job, is gone."""
        kept: deque[RangeTask] = deque()
        for task in self._tasks:
            if task.tp == tp:
                task.cancelled()
            else:
                kept.append(task)
        self._tasks = kept

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def advance(self, budget_s: float) -> None:
        """Feed the current task's candidate for about ``budget_s`` seconds at most.

        The budget covers the fetch wait and the training: records are trained in small
        runs with a look at the clock between them, and what is left over waits for the
        next slice, so one slice never grows to a whole fetch's worth of training.
        """
        if not self._tasks:
            return
        task = self._tasks[0]
        consumer = self._consumer_for(task)
        if task.start_offset >= task.end_offset:  # retention left nothing to replay
            self._finish(task)
            return
        stop_at = self.clock() + budget_s
        if task.labels is not None:
            self._advance_merged(task, task.labels, consumer, stop_at)
            return
        while (remaining := stop_at - self.clock()) > 0:
            if not task.pending and not self._refill(task, consumer, remaining):
                return
            run, task.pending = task.pending[:TRAIN_RUN], task.pending[TRAIN_RUN:]
            if task.take(run):
                self._finish(task)
                return

    def _refill(self, task: RangeTask, consumer: LogReader, remaining_s: float) -> bool:
        """Read the task's next chunk into ``pending``; False when none came within
        ``remaining_s`` (and the task may have been given up)."""
        timeout_ms = max(int(remaining_s * 1000), 1)
        task.pending = consumer.read(task.tp, timeout_ms=timeout_ms, max_records=TRAIN_RUN * 10)
        if not task.pending:
            self._maybe_give_up(task, consumer)
            return False
        self._note_gap(task, task.pending[0].offset, consumer)
        self._next_offset = task.pending[-1].offset + 1
        task.deadline = self.clock() + self.give_up_after_s
        return True

    def _advance_merged(
        self, task: RangeTask, labels: LabelsRange, consumer: LogReader, stop_at: float
    ) -> None:
        """``advance`` for a task with a labels range: events and labels handed out merged
        by record time; each turn reads one chunk (of one partition) or hands out one run."""
        while (remaining := stop_at - self.clock()) > 0:
            timeout_ms = max(int(remaining * 1000), 1)
            if labels.events_done:
                if labels.wants(None):
                    self._read_labels(labels, consumer, timeout_ms)
                    continue
                task.take_labels(labels.rest())
                self._finish(task)
                return
            if not task.pending:
                self._read_at(consumer, task.tp, self._next_offset)
                if not self._refill(task, consumer, remaining):
                    return
            chunk = task.pending[:TRAIN_RUN]
            run = [r for r in chunk if r.offset < task.end_offset]
            if labels.since is None:  # no label older than the first event is wanted
                if run:
                    labels.begin(consumer, run[0].timestamp)
                    labels.deadline = self.clock() + self.give_up_after_s
                else:
                    labels.done = True  # no event replayed: no label can join one
            if labels.wants(run[-1].timestamp if run else None):
                self._read_labels(labels, consumer, timeout_ms)
                continue
            task.pending = task.pending[TRAIN_RUN:]
            ended = len(run) < len(chunk) or (bool(run) and run[-1].offset + 1 >= task.end_offset)
            if self._take_merged(task, labels, run) or ended:
                labels.events_done = True

    def _take_merged(self, task: RangeTask, labels: LabelsRange, events: list[Record]) -> bool:
        """Hand ``events`` out with the labels that go before each; True once the task
        wants no more events."""
        first = 0
        for i, event in enumerate(events):
            due = labels.before(event.timestamp)
            if not due:
                continue
            if i > first and task.take(events[first:i]):
                return True
            first = i
            if task.take_labels(due):
                return True
        return first < len(events) and task.take(events[first:])

    def _read_labels(self, labels: LabelsRange, consumer: LogReader, timeout_ms: int) -> None:
        self._read_at(consumer, labels.tp, labels.position)
        records = consumer.read(labels.tp, timeout_ms, TRAIN_RUN * 10)
        if records:
            labels.add(records)
            labels.deadline = self.clock() + self.give_up_after_s
        elif self.clock() > labels.deadline:
            log.warning(
                "replay of %s gave up reading labels at offset %d of %d; the rest of its "
                "events go without their labels",
                labels.tp, labels.position, labels.end,
            )  # fmt: skip
            labels.done = True

    def _read_at(self, consumer: LogReader, tp: TopicPartition, offset: int) -> None:
        """Move the reader to ``tp`` (at ``offset``) unless it reads ``tp`` already."""
        if self._reading != tp:
            consumer.start(tp, offset)
            self._reading = tp

    def _maybe_give_up(self, task: RangeTask, consumer: LogReader) -> None:
        if self.clock() > task.deadline:
            log.warning(
                "replay of %s gave up at offset %s; training on what was read",
                task.tp,
                consumer.position(task.tp),
            )
            self._finish(task)

    def _consumer_for(self, task: RangeTask) -> LogReader:
        if self._consumer is None:
            self._consumer = self.consumer_factory()
        if not task.started:
            self._skip_expired(task, self._consumer)
            self._consumer.start(task.tp, task.start_offset)
            self._reading = task.tp
            task.started = True
            task.deadline = self.clock() + self.give_up_after_s
        return self._consumer

    def _skip_expired(self, task: RangeTask, consumer: LogReader) -> None:
        """Start the range at the log's start when retention deleted its beginning.

        The replay is shortened to what is left; with nothing left it is skipped (a
        retrain's candidate is then trained on no event, and the holdout judges it).
        """
        log_start = consumer.log_start(task.tp)
        if log_start is not None and log_start > task.start_offset:
            self._expired(task, task.start_offset, log_start)
            task.start_offset = min(log_start, task.end_offset)
        self._next_offset = task.start_offset

    def _note_gap(self, task: RangeTask, first: int, consumer: LogReader) -> None:
        # Retention may also delete offsets while the replay runs: the reader then starts
        # again at the log's start. (Compaction and transaction markers leave gaps too.)
        if self._next_offset < 0 or first <= self._next_offset:
            return
        log_start = consumer.log_start(task.tp)
        if log_start is not None and log_start > self._next_offset:
            self._expired(task, self._next_offset, log_start)

    def _expired(self, task: RangeTask, wanted_from: int, log_start: int) -> None:
        expired = min(log_start, task.end_offset) - wanted_from
        left = max(task.end_offset - log_start, 0)
        log.warning(
            "replay of %s wanted offsets %d..%d; retention deleted %d of them: replay %s",
            task.tp, task.start_offset, task.end_offset - 1, expired,
            f"shortened to {left} events from offset {log_start}" if left else "skipped",
        )  # fmt: skip
        if self.on_expired is not None:
            self.on_expired(task.tp, expired)

    def _finish(self, task: RangeTask) -> None:
        self._tasks.popleft()
        task.finish()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
