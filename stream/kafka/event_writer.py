"""kafka-python's producer and admin client for ``streamlearn produce`` (the tools).

The tool decides what to send; this module is how it reaches Kafka: sends whose
outcome arrives through callbacks (the topic is made ready by :mod:`stream.kafka.admin`).
Kafka's errors become :class:`~stream.exceptions.BrokerUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from stream.exceptions import BrokerUnavailable

__all__ = ["PRODUCER_SETTINGS", "EventWriter"]

#: Settings kafka-python's producer knows; anything else is refused by the tool.
PRODUCER_SETTINGS = frozenset(KafkaProducer.DEFAULT_CONFIG)

_TUNING: dict[str, Any] = {"linger_ms": 20, "batch_size": 256 * 1024}


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
        timestamp_ms: int | None = None,
    ) -> None:
        """Queue one record; exactly one of ``delivered`` and ``failed`` is called later
        (``failed`` at once when the producer refuses it: buffer full, too large...).
        ``timestamp_ms`` is the record's time (None: the producer's clock)."""
        try:
            future = self._producer.send(
                topic, value=value, key=key, partition=partition, timestamp_ms=timestamp_ms
            )
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
