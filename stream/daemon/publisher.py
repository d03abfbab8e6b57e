"""Build prediction and dead-letter records and hand them to a sink (:mod:`stream.ports`)."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from stream.events import DeadLetter, Event
from stream.exceptions import PublishError
from stream.ports import Record, Sink

log = logging.getLogger(__name__)

__all__ = ["PublishError", "Publisher"]

_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class Publisher:
    """One sink for both output topics; ``flush`` raises if any send failed."""

    def __init__(
        self,
        sink: Sink | None,
        predictions_topic: str | None,
        dead_letter_topic: str | None,
    ) -> None:
        self.sink = sink
        self.predictions_topic = predictions_topic if sink is not None else None
        self.dead_letter_topic = dead_letter_topic if sink is not None else None

    def prediction(
        self,
        record: Record,
        event: Event,
        y_pred: Any,
        proba: dict[Any, float] | None,
        model_version: int,
        model: str | None = None,
    ) -> None:
        """``model`` names the model that made the prediction (its spec, or the name given
        with ``--challenger NAME=SPEC``)."""
        if self.sink is None or self.predictions_topic is None:
            return
        value = {
            "id": event.id,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "prediction": y_pred,
            "probabilities": proba or None,
            "model_version": model_version,
            "model": model,
        }
        # orjson: 0.3 µs instead of json's 4 µs per event. Class keys are written as
        # the JSON text of the label ("true", "1", "cat"), so they match "prediction".
        payload = orjson.dumps(value, default=str, option=_JSON_OPTIONS)
        # orjson's bytes keep its whole 4 KiB write buffer: a poll's worth of them held
        # until shipped made malloc grow and trim the heap every batch (measured 0.4-2 µs
        # an event, 25-33 MB). A right-sized copy costs 0.1 µs.
        payload = memoryview(payload).tobytes()
        self.sink.send(self.predictions_topic, payload, record.key, None)

    def dead_letter(self, record: Record, letter: DeadLetter) -> None:
        log.debug(
            "dead letter at %s[%d]@%d: %s (%s)",
            record.topic,
            record.partition,
            record.offset,
            letter.reason,
            letter.detail,
        )
        if self.sink is None or self.dead_letter_topic is None:
            return
        headers = [
            ("streamlearn.reason", letter.reason.encode()),
            ("streamlearn.detail", letter.detail.encode()),
            ("streamlearn.topic", record.topic.encode()),
            ("streamlearn.partition", str(record.partition).encode()),
            ("streamlearn.offset", str(record.offset).encode()),
        ]
        self.sink.send(self.dead_letter_topic, record.value or b"", record.key, headers)

    def ship(self) -> None:
        """End of a batch: let the sink move what it holds on."""
        if self.sink is not None:
            self.sink.ship()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every send; raise :class:`PublishError` if any was lost."""
        if self.sink is not None:
            self.sink.flush(timeout_s)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
