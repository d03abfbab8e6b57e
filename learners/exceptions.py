"""Errors raised by the pure learning code."""


class LearnersError(Exception):
    """Base class of every error raised by :mod:`learners`."""


class ModelSpecError(LearnersError, ValueError):
    """A model specification text cannot be turned into a River estimator."""


class CheckpointError(LearnersError):
    """A checkpoint cannot be trusted or loaded; ``reason`` is machine-readable.

    ``next_offset`` is the offset the refused checkpoint recorded when its header is
    authentic (signed with a configured key, or unsigned with none configured) and it
    names this partition: a position in this log that a rebuild may replay up to.
    ``None`` when nothing in the checkpoint can be believed.
    """

    def __init__(self, reason: str, message: str, next_offset: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.next_offset = next_offset


class FeatureBudgetExceeded(LearnersError):
    """An event would take the learner past its ``--max-features`` budget; it was not
    shown to the model."""
