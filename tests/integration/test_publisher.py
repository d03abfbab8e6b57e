"""Both sinks deliver every record in order, and a failed send surfaces at flush."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stream.exceptions import PublishError
from stream.kafka.batch_producer import BatchProducer
from stream.kafka.clients import producer_config
from stream.kafka.process_producer import ProcessSink
from stream.ports import Sink
from tests.integration.kafka_helpers import create_topic, read_all

pytestmark = pytest.mark.integration


@pytest.fixture(params=["inline", "process"])
def sink(request: pytest.FixtureRequest, kafka_bootstrap: str) -> Iterator[Sink]:
    config = {"bootstrap_servers": [kafka_bootstrap]}
    made: Sink = (
        BatchProducer(**producer_config(config))
        if request.param == "inline"
        else ProcessSink(producer_config(config))
    )
    yield made
    made.close()


def test_every_record_arrives_in_order_with_key_and_headers(
    sink: Sink, kafka_bootstrap: str, topic_name: str
) -> None:
    create_topic(kafka_bootstrap, topic_name)
    for i in range(5000):
        headers = [("n", str(i).encode())] if i % 2 else None
        sink.send(topic_name, f"value-{i}".encode(), f"key-{i}".encode(), headers)
        if i % 700 == 0:
            sink.ship()
    sink.flush()

    records = read_all(kafka_bootstrap, topic_name)
    assert [r.value for r in records] == [f"value-{i}".encode() for i in range(5000)]
    assert [r.key for r in records] == [f"key-{i}".encode() for i in range(5000)]
    assert dict(records[1].headers) == {"n": b"1"}


def test_a_refused_send_fails_the_flush(sink: Sink, topic_name: str) -> None:
    too_large = b"x" * (17 * 1024 * 1024)  # over the producer's max_request_size
    sink.send(topic_name, too_large, None, None)
    with pytest.raises(PublishError, match="1 send"):
        sink.flush()
    sink.flush()  # the failure was reported once; the sink goes on
