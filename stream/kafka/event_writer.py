"""kafka-python's producer and admin client for ``streamlearn produce`` (the tools).

The tool decides what to send; this module is how it reaches Kafka: the topic made
ready with the partitions asked for, and sends whose outcome arrives through callbacks.
Kafka's errors become :class:`~stream.exceptions.BrokerUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError, TopicAlreadyExistsError

from stream.exceptions import BrokerUnavailable

__all__ = ["PRODUCER_SETTINGS", "EventWriter", "prepare_topic"]

#: Settings kafka-python's producer knows; anything else is refused by the tool.
PRODUCER_SETTINGS = frozenset(KafkaProducer.DEFAULT_CONFIG)

_TUNING: dict[str, Any] = {"linger_ms": 20, "batch_size": 256 * 1024}


def prepare_topic(
    bootstrap_servers: str, topic: str, partitions: int | None, kafka_config: Mapping[str, Any]
) -> int:
    """Create ``topic`` when missing (``partitions`` or 1); return its partition count."""
    admin_config = {k: v for k, v in kafka_config.items() if k in KafkaAdminClient.DEFAULT_CONFIG}
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, **admin_config)
    except KafkaError as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc
    try:
        existing = _partition_count(admin, topic)
        if existing is None:
            try:
                spec = {"num_partitions": partitions or 1, "replication_factor": -1}
                admin.create_topics({topic: spec})
            except TopicAlreadyExistsError:
                pass  # created meanwhile by someone else; describe it below
            admin.wait_for_topics([topic], timeout_ms=10_000)
            existing = _partition_count(admin, topic) or (partitions or 1)
        return existing
    except KafkaError as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc
    finally:
        admin.close()


def _partition_count(admin: KafkaAdminClient, topic: str) -> int | None:
    (described,) = admin.describe_topics([topic])
    if described["error_code"] != 0 or not described["partitions"]:
        return None
    return len(described["partitions"])


class EventWriter:
    """Sends records without waiting for each; ``flush`` waits for all of them.

    kafka-python's producer is idempotent by default, so its retries neither
    duplicate nor reorder records within a partition.
    """

    def __init__(self, bootstrap_servers: str, kafka_config: Mapping[str, Any]) -> None:
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap_servers, **{**_TUNING, **kafka_config}
            )
        except KafkaError as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        partition: int,
        delivered: Callable[[object], None],
        failed: Callable[[BaseException], None],
    ) -> None:
        """Queue one record; exactly one of ``delivered`` and ``failed`` is called later
        (``failed`` at once when the producer refuses it: buffer full, too large...)."""
        try:
            future = self._producer.send(topic, value=value, key=key, partition=partition)
        except KafkaError as exc:
            failed(exc)
            return
        future.add_callback(delivered)
        future.add_errback(failed)

    def flush(self) -> None:
        try:
            self._producer.flush()
        except KafkaError as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._producer.close()
