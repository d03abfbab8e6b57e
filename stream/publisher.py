"""Publish predictions and dead letters; report sends that failed, so nothing is lost silently."""

from __future__ import annotations

import json
import logging
from typing import Any

from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from stream.events import DeadLetter, Event
from stream.exceptions import StreamError

log = logging.getLogger(__name__)


class PublishError(StreamError):
    """Sends failed; the offsets of what they carried must not be committed."""


class Publisher:
    """Wraps one producer for both output topics; ``flush`` raises if any send failed."""

    def __init__(
        self,
        producer: KafkaProducer | None,
        predictions_topic: str | None,
        dead_letter_topic: str | None,
    ) -> None:
        self.producer = producer
        self.predictions_topic = predictions_topic
        self.dead_letter_topic = dead_letter_topic
        self._failures: list[str] = []

    def prediction(
        self,
        record: ConsumerRecord,
        event: Event,
        y_pred: Any,
        proba: dict[Any, float] | None,
        model_version: int,
    ) -> None:
        if self.producer is None or self.predictions_topic is None:
            return
        value = {
            "id": event.id,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "prediction": y_pred,
            "probabilities": {str(k): p for k, p in proba.items()} if proba else None,
            "model_version": model_version,
        }
        payload = json.dumps(value, separators=(",", ":"), default=str).encode()
        self._send(self.predictions_topic, payload, record.key, None)

    def dead_letter(self, record: ConsumerRecord, letter: DeadLetter) -> None:
        log.debug(
            "dead letter at %s[%d]@%d: %s (%s)",
            record.topic,
            record.partition,
            record.offset,
            letter.reason,
            letter.detail,
        )
        if self.producer is None or self.dead_letter_topic is None:
            return
        headers = [
            ("streamlearn.reason", letter.reason.encode()),
            ("streamlearn.detail", letter.detail.encode()),
            ("streamlearn.topic", record.topic.encode()),
            ("streamlearn.partition", str(record.partition).encode()),
            ("streamlearn.offset", str(record.offset).encode()),
        ]
        self._send(self.dead_letter_topic, record.value or b"", record.key, headers)

    def _send(self, topic: str, value: bytes, key: bytes | None, headers: Any) -> None:
        assert self.producer is not None
        future = self.producer.send(topic, value=value, key=key, headers=headers)
        future.add_errback(self._failed, topic)

    def _failed(self, exc: BaseException, topic: str) -> None:
        self._failures.append(f"{topic}: {exc!r}")

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every send; raise :class:`PublishError` if any was lost."""
        if self.producer is not None:
            self.producer.flush(timeout=timeout_s)
        if self._failures:
            failures, self._failures = self._failures, []
            raise PublishError(f"{len(failures)} send(s) failed, first: {failures[0]}")

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close(timeout=10)
