"""The daemon, run offline: the real loop over records in memory, on a logical clock.

``streamlearn evaluate`` hands :func:`run_offline` the records ``streamlearn produce``
would write to a one-partition topic. They go through the same composition as ``run``
(``app.assemble_daemon``: the learner factory, partition table, replayer, model-error
handling, all from the same settings) with in-memory ports (``daemon/memory.py``) in
place of Kafka's, so what it measures is what the daemon does on that stream. The
learner's figures do not depend on batch boundaries or on how fast the loop runs (a
retrain holds its partition back and judges the same events either way), which is
what lets a test compare them with a real daemon's on a real broker to the last digit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from learners.prequential import PartitionLearner
from monitoring.metrics import StreamlearnMetrics
from stream.checkpoints.checkpointer import Checkpointer
from stream.daemon.app import assemble_daemon, learner_factory, make_replayer
from stream.daemon.loop import LoopTiming
from stream.daemon.memory import LogicalClock, MemoryLogReader, MemorySink, MemorySource
from stream.daemon.publisher import Publisher
from stream.daemon.run_log import RunLog
from stream.events import decoder_for
from stream.ports import SourceRecord, TopicPartition
from stream.settings import RunSettings

PREDICTIONS = "predictions"
DEAD_LETTERS = "dead-letters"
#: Logical time each record costs: the stream is taken to arrive at 1,000 events/s.
RECORD_COST_S = 0.001
RECORDS_PER_POLL = 500
#: One accuracy (or MAE) line in the run log per poll's worth of records, and the idle
#: stop two empty polls after the last record (after a last accuracy line).
TIMING = LoopTiming(
    poll_timeout_s=0.5,
    accuracy_log_interval_s=RECORDS_PER_POLL * RECORD_COST_S,
    status_interval_s=float("inf"),
    stop_after_idle_s=1.0,
    outage_timeout_s=float("inf"),
)


@dataclass
class OfflineRun:
    """What an offline run leaves: the partition's learner, its outputs and metrics."""

    learner: PartitionLearner
    #: The predictions and dead letters, as the daemon would have published them.
    sink: MemorySink
    registry: CollectorRegistry
    run_log: Path | None

    def predictions(self) -> list[bytes]:
        return self.sink.values(PREDICTIONS)

    def dead_letters(self) -> list[bytes]:
        return self.sink.values(DEAD_LETTERS)


def run_offline(
    settings: RunSettings,
    records: Sequence[SourceRecord],
    run_log: Path | None = None,
    *,
    records_per_poll: int = RECORDS_PER_POLL,
    records_per_read: int = 2_000,
) -> OfflineRun:
    """Run the daemon's loop over ``records`` (one partition of ``settings.topic``, offsets
    0, 1, 2, ...) until it has handled them all and finished any retrain; the run log goes
    to ``run_log``. Checkpoints are off: the run starts from nothing and keeps nothing.

    A retrain's replay costs no clock time, so it ends in the cycle it starts in, before
    any held-back live record is served: what a daemon does whenever the replay fits in
    one slice (``LoopTiming.retrain_budget_s``). A replay that takes a live daemon several
    slices lets live records through meanwhile, and the decision then waits for the last
    of them (``RetrainJob.replay_finished``): the promoted model serves later there.
    The batch sizes (a poll's, a replay read's) change how the work is cut, not what is
    learned: the tests vary them to show it."""
    tp = TopicPartition(settings.topic, 0)
    clock = LogicalClock()
    source = MemorySource(clock, records_per_poll, RECORD_COST_S)
    source.append(records)
    new_learner = learner_factory(settings)
    registry = CollectorRegistry()
    metrics = StreamlearnMetrics(registry)
    decode = decoder_for(new_learner.task)
    reader = MemoryLogReader(source.logs, clock, records_per_read, read_cost_s=0.0)
    replayer = make_replayer(settings, lambda: reader, metrics, decode, clock=clock)
    sink = MemorySink()
    daemon = assemble_daemon(
        settings,
        source,
        new_learner,
        Publisher(sink, PREDICTIONS, DEAD_LETTERS),
        Checkpointer(None, None, metrics, clock=clock),
        replayer,
        metrics,
        RunLog(run_log),
        TIMING,
        decode,
        clock=clock,
        cycle_clock=clock,
    )
    source.assign_on_next_poll(tp)
    daemon.run()
    return OfflineRun(daemon.slots[tp].learner, sink, registry, run_log)
