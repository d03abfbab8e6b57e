"""A retrain on a stream of late labels: the range to replay starts at the features of the
oldest event in ADWIN's window and ends after the last label learned; the replay joins the
labels inside the range to their events, as the live learner did."""

from __future__ import annotations

import json
from typing import Any

from learners.journal import redo
from learners.outcomes import RetrainRequested
from learners.prequential import PartitionLearner
from learners.retraining import RetrainJob
from stream.daemon.replay import Replayer
from stream.ports import SourceRecord, TopicPartition
from stream.tools.generators import concept_stream
from stream.tools.produce import encode_event, encode_label
from tests.learners.test_late_labels import MODELS, delayed
from tests.stream.daemon.test_model_errors import TP, ReplayConsumer


class OffsetConsumer(ReplayConsumer):
    """Starts at an offset, not a list index (the stream's first offsets are unused)."""

    def start(self, tp: TopicPartition, offset: int) -> None:
        self.position_at = next(i for i, r in enumerate(self.records) if r.offset >= offset)


def _record(op: tuple[Any, ...]) -> SourceRecord:
    if op[0] is None:
        value = encode_label(op[1], op[2])
    else:
        value = encode_event(op[1], op[0], None, op[-1])
    return SourceRecord(TP.topic, TP.partition, op[-1], value)


def test_a_retrain_replays_the_late_labels_joined_since_the_change() -> None:
    pairs = list(concept_stream("sine", seed=11, drift_at=[1500], count=3000))
    ops = sorted(delayed(pairs, 50), key=lambda op: op[-1])
    learner = PartitionLearner(MODELS["scaler-lr"](), drift_action="retrain")
    requested = None
    for op in ops:
        redo(learner, op)
        requests = [o for o in learner.drain_outcomes() if isinstance(o, RetrainRequested)]
        if requests:
            requested = requests[0]
            break
    assert requested is not None, "no retrain: the concept change was not detected"
    start, end = requested.start_offset, requested.end_offset
    assert start % 2 == 1  # the features of an event (events sit at odd offsets)
    assert end == learner.last_offset + 1 and (end - 1) % 2 == 0  # just after a label

    records = [_record(op) for op in ops]
    job = RetrainJob(MODELS["scaler-lr"](), pool=(start, end))
    replayer = Replayer(lambda: OffsetConsumer(records), give_up_after_s=0.0)
    replayer.submit(TP, start, end, job)
    for _ in range(50):
        if not replayer.busy:
            break
        replayer.advance(0.5)
    assert not replayer.busy and job.abandoned is None
    # Every event whose features and label both lie in the range, and no other.
    inside = {op[1] for op in ops if op[0] is not None and start <= op[-1] < end}
    joined = [op for op in ops if op[0] is None and op[1] in inside and op[-1] < end]
    assert job.trained_on == len(joined) > 0
    first = next(r for r in records if r.offset == start)
    assert json.loads(first.value)["label"] is None
