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
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from learners.retraining import RetrainJob
from stream.events import Event, decode

log = logging.getLogger(__name__)


@dataclass
class ReplayTask:
    tp: TopicPartition
    start_offset: int
    end_offset: int
    job: RetrainJob
    started: bool = False
    deadline: float = 0.0


class Replayer:
    """Serves replay tasks one after another with one lazily created consumer."""

    def __init__(
        self,
        consumer_factory: Callable[[], KafkaConsumer],
        give_up_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer_factory = consumer_factory
        self.give_up_after_s = give_up_after_s
        self.clock = clock
        self._consumer: KafkaConsumer | None = None
        self._tasks: deque[ReplayTask] = deque()

    def submit(self, tp: TopicPartition, start: int, end: int, job: RetrainJob) -> None:
        self._tasks.append(ReplayTask(tp, start, end, job))

    def cancel(self, tp: TopicPartition) -> None:
        """The partition was revoked: its learner, and so its job, is gone."""
        self._tasks = deque(t for t in self._tasks if t.tp != tp)

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def advance(self, budget_s: float) -> None:
        """Feed the current task's candidate for at most about ``budget_s`` seconds."""
        if not self._tasks:
            return
        task = self._tasks[0]
        consumer = self._consumer_for(task)
        stop_at = self.clock() + budget_s
        while self.clock() < stop_at:
            batches = consumer.poll(timeout_ms=int(budget_s * 1000), max_records=2000)
            records = batches.get(task.tp, [])
            if not records:
                if self.clock() > task.deadline:
                    log.warning(
                        "replay of %s gave up at %s; training on what was read",
                        task.tp,
                        consumer.position(task.tp),
                    )
                    self._finish(task)
                return
            task.deadline = self.clock() + self.give_up_after_s
            for record in records:
                if record.offset >= task.end_offset:
                    self._finish(task)
                    return
                event = decode(record.value)
                if isinstance(event, Event) and event.label is not None:
                    task.job.train(event.features, event.label)
            if records[-1].offset + 1 >= task.end_offset:
                self._finish(task)
                return

    def _consumer_for(self, task: ReplayTask) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = self.consumer_factory()
        if not task.started:
            self._consumer.assign([task.tp])
            self._consumer.seek(task.tp, task.start_offset)
            task.started = True
            task.deadline = self.clock() + self.give_up_after_s
        return self._consumer

    def _finish(self, task: ReplayTask) -> None:
        task.job.replay_finished()
        self._tasks.popleft()
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
