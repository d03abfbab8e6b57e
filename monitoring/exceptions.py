"""Errors raised by the monitoring package."""


class MonitoringError(Exception):
    """Base class of every error raised by :mod:`monitoring`."""


class ReportError(MonitoringError):
    """A run report cannot be produced from the given source."""
