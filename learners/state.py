"""What a partition's checkpoint carries besides its offset: the learner and the sequence tracker.

Kept in ``learners`` (pure, no Kafka) so that the checkpoint's class paths do not move
when the application's modules do. Format-1 checkpoints named this class
``stream.checkpointing.PartitionState``; :mod:`learners.unpickling` maps that path here.

>>> from river import linear_model
>>> from learners.prequential import PartitionLearner
>>> state = PartitionState(PartitionLearner(linear_model.LogisticRegression()), SequenceTracker())
>>> state.learner.model_version, state.sequence.next_expected, state.labels_offset
(1, None, None)
"""

from __future__ import annotations

from dataclasses import dataclass

from learners.prequential import PartitionLearner
from learners.sequence import SequenceTracker

__all__ = ["PartitionState", "SequenceTracker"]


@dataclass
class PartitionState:
    """The learning state of one partition: model, detector, accuracy, counters, sequence."""

    learner: PartitionLearner
    sequence: SequenceTracker
    #: With a labels topic: the next offset to read of its partition of the same number
    #: (checkpointed with the events offset, so each label is joined once). A class
    #: default too, so states pickled before it existed read None.
    labels_offset: int | None = None
