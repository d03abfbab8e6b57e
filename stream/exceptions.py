"""Errors raised by the application layer."""


class StreamError(Exception):
    """Base class of every error raised by :mod:`stream`."""


class SettingsError(StreamError, ValueError):
    """Settings are unknown, invalid or contradict each other; refused at start-up."""


class BrokerError(StreamError):
    """The embedded broker could not be started or did not become ready."""
