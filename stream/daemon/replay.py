"""Replay an offset range of a partition into a retrain candidate, a slice at a time.

The log is the retraining pool. One group-less consumer reads the range; the daemon
calls :meth:`Replayer.advance` between live batches with a time budget, so a retrain
over 20,000 events never stalls consumption for long nor costs group membership.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from learners.retraining import RetrainJob
from stream.events import Decoder, Event, LateLabel, decode
from stream.ports import LogReader, Record, TopicPartition

log = logging.getLogger(__name__)

#: Records trained between two looks at the clock.
TRAIN_RUN = 200


@dataclass
class ReplayTask:
    tp: TopicPartition
    start_offset: int
    end_offset: int
    job: RetrainJob
    #: Offsets in the range the serving learner never saw (poison, refused events).
    skip: frozenset[int] = frozenset()
    started: bool = False
    deadline: float = 0.0
    #: Fetched records not trained yet (the last slice ran out of time).
    pending: list[Record] = field(default_factory=list)
    #: Features of unlabelled events read so far, by id, for labels later in the range.
    held: dict[str, dict[str, Any]] = field(default_factory=dict)


class Replayer:
    """Serves replay tasks one after another with one lazily created consumer."""

    def __init__(
        self,
        consumer_factory: Callable[[], LogReader],
        give_up_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        decode: Decoder = decode,
    ) -> None:
        """``decode`` reads the records as the loop reads them (number labels for a
        regression: ``stream.events.decoder_for``)."""
        self.consumer_factory = consumer_factory
        self.decode = decode
        self.give_up_after_s = give_up_after_s
        self.clock = clock
        self._consumer: LogReader | None = None
        self._tasks: deque[ReplayTask] = deque()

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
    ) -> None:
        self._tasks.append(ReplayTask(tp, start, end, job, skip))

    def cancel(self, tp: TopicPartition) -> None:
        """The partition was revoked: its learner, and so its job, is gone."""
        self._tasks = deque(t for t in self._tasks if t.tp != tp)

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
        stop_at = self.clock() + budget_s
        while (remaining := stop_at - self.clock()) > 0:
            if not task.pending:
                task.pending = consumer.read(
                    task.tp, timeout_ms=max(int(remaining * 1000), 1), max_records=TRAIN_RUN * 10
                )
                if not task.pending:
                    self._maybe_give_up(task, consumer)
                    return
                task.deadline = self.clock() + self.give_up_after_s
            run, task.pending = task.pending[:TRAIN_RUN], task.pending[TRAIN_RUN:]
            if self._train(task, run):
                self._finish(task)
                return

    def _train(self, task: ReplayTask, records: list[Record]) -> bool:
        """Train the candidate on ``records``; True once the range's end was reached (or
        the candidate raised: the job is abandoned, nothing more to train)."""
        job, skip, decode = task.job, task.skip, self.decode
        for record in records:
            if record.offset >= task.end_offset:
                return True
            if record.offset in skip:
                continue
            event = decode(record.value)
            if type(event) is Event:
                if event.label is not None:
                    job.train(event.features, event.label)
                elif event.id is not None:
                    task.held[event.id] = event.features
                    continue
            elif type(event) is LateLabel:
                # Joined within the range as the live learner joined it; labels of events
                # from before the range have nothing to join (older data stays out).
                features = task.held.pop(event.id, None)
                if features is None:
                    continue
                job.train(features, event.label)
            if job.abandoned is not None:
                return True
        return records[-1].offset + 1 >= task.end_offset

    def _maybe_give_up(self, task: ReplayTask, consumer: LogReader) -> None:
        if self.clock() > task.deadline:
            log.warning(
                "replay of %s gave up at offset %s; training on what was read",
                task.tp,
                consumer.position(task.tp),
            )
            self._finish(task)

    def _consumer_for(self, task: ReplayTask) -> LogReader:
        if self._consumer is None:
            self._consumer = self.consumer_factory()
        if not task.started:
            self._consumer.start(task.tp, task.start_offset)
            task.started = True
            task.deadline = self.clock() + self.give_up_after_s
        return self._consumer

    def _finish(self, task: ReplayTask) -> None:
        task.job.replay_finished()
        self._tasks.popleft()
        if task.job.abandoned is not None:
            log.warning(
                "replay of %s offsets %d..%d abandoned: the candidate raised (%s)",
                task.tp,
                task.start_offset,
                task.end_offset - 1,
                task.job.abandoned,
            )
            return
        log.info(
            "replayed %s offsets %d..%d into a candidate (%d events)",
            task.tp,
            task.start_offset,
            task.end_offset - 1,
            task.job.trained_on,
        )

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
