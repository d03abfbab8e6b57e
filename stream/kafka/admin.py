"""Topic administration in one place: output topics, the produce tool's topic, counts.

Kafka's errors become :class:`~stream.exceptions.BrokerUnavailable` where a caller
outside this package sees them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from stream.exceptions import BrokerUnavailable, SettingsError
from stream.kafka.credentials import check_credentials

log = logging.getLogger(__name__)

__all__ = [
    "admin_settings",
    "check_co_partitioned",
    "ensure_topics",
    "partition_count",
    "prepare_topic",
]


def admin_settings(kafka_config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``kafka_config`` that kafka-python's admin client knows."""
    return {k: v for k, v in kafka_config.items() if k in KafkaAdminClient.DEFAULT_CONFIG}


def ensure_topics(kafka_config: dict[str, Any], topics: Iterable[str], partitions: int = 1) -> None:
    """Create the topics that do not exist yet (output topics the daemon writes to)."""
    admin = KafkaAdminClient(**kafka_config)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
                log.info("created topic(s) %s", ", ".join(missing))
            except TopicAlreadyExistsError:
                pass  # another instance was quicker
    finally:
        admin.close()


def prepare_topic(
    bootstrap_servers: str, topic: str, partitions: int | None, kafka_config: Mapping[str, Any]
) -> int:
    """Create ``topic`` when missing (``partitions`` or 1); return its partition count.

    The produce tool's first contact with the broker: refused credentials stop it here
    (:class:`~stream.exceptions.CredentialsRefused`).
    """
    check_credentials({**kafka_config, "bootstrap_servers": bootstrap_servers.split(",")})
    try:
        settings = admin_settings(kafka_config)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, **settings)
    except KafkaError as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc
    try:
        existing = partition_count(admin, topic)
        if existing is None:
            try:
                spec = {"num_partitions": partitions or 1, "replication_factor": -1}
                admin.create_topics({topic: spec})
            except TopicAlreadyExistsError:
                pass  # created meanwhile by someone else; describe it below
            admin.wait_for_topics([topic], timeout_ms=10_000)
            existing = partition_count(admin, topic) or (partitions or 1)
        return existing
    except KafkaError as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc
    finally:
        admin.close()


def partition_count(admin: KafkaAdminClient, topic: str) -> int | None:
    """How many partitions ``topic`` has; None when it does not exist."""
    (described,) = admin.describe_topics([topic])
    if described["error_code"] != 0 or not described["partitions"]:
        return None
    return len(described["partitions"])


def check_co_partitioned(kafka_config: dict[str, Any], events_topic: str, labels_topic: str) -> int:
    """The partition count both topics share; :class:`SettingsError` when a topic is
    missing or their counts differ (a label would not reach its event's partition)."""
    try:
        admin = KafkaAdminClient(**admin_settings(kafka_config))
    except KafkaError as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc
    try:
        counts = {topic: partition_count(admin, topic) for topic in (events_topic, labels_topic)}
    except KafkaError as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc
    finally:
        admin.close()
    return co_partition_count(events_topic, labels_topic, counts)


def co_partition_count(
    events_topic: str, labels_topic: str, counts: Mapping[str, int | None]
) -> int:
    """The shared partition count of ``counts``, or :class:`SettingsError` saying why not.

    >>> co_partition_count("e", "l", {"e": 3, "l": 3})
    3
    >>> co_partition_count("e", "l", {"e": 3, "l": 2})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stream.exceptions.SettingsError: the labels topic 'l' has 2 partitions and the events ...
    """
    for role, topic in (("events", events_topic), ("labels", labels_topic)):
        if counts.get(topic) is None:
            raise SettingsError(
                f"the {role} topic {topic!r} does not exist: create it with as many "
                f"partitions as the {'labels' if role == 'events' else 'events'} topic "
                "(streamlearn produce --labels-topic does)"
            )
    events, labels = counts[events_topic], counts[labels_topic]
    if events != labels:
        raise SettingsError(
            f"the labels topic {labels_topic!r} has {labels} partitions and the events "
            f"topic {events_topic!r} {events}: they must be co-partitioned (the same count, "
            "labels keyed by event id) for each label to reach the partition of its event"
        )
    assert events is not None
    return events
