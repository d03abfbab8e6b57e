"""Errors raised by the pure learning code."""


class LearnersError(Exception):
    """Base class of every error raised by :mod:`learners`."""


class ModelSpecError(LearnersError, ValueError):
    """A model specification text cannot be turned into a River estimator."""


class CheckpointError(LearnersError):
    """A checkpoint cannot be trusted or loaded; ``reason`` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FeatureBudgetExceeded(LearnersError):
    """An event would take the learner past its ``--max-features`` budget; it was not
    shown to the model."""
