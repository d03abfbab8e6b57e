"""Errors raised by the application layer."""


class StreamError(Exception):
    """Base class of every error raised by :mod:`stream`."""


class SettingsError(StreamError, ValueError):
    """Settings are unknown, invalid or contradict each other; refused at start-up."""


class BrokerError(StreamError):
    """The embedded broker could not be started or did not become ready."""


class PublishError(StreamError):
    """Sends failed; the offsets of what they carried must not be committed."""


class PublishTimeout(PublishError):
    """The broker did not confirm the sends in time (an outage?); nothing failed yet."""


class BrokerUnavailable(StreamError):
    """The broker did not answer a call in time; the caller retries later."""


class CommitRefused(StreamError):
    """The group refused a commit: a rebalance took the partitions."""


class CredentialsRefused(StreamError):
    """The broker refused our credentials or certificate, or we refused its certificate:
    no retry can fix that, so a client stops at start with the reason."""
