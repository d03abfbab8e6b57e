"""BatchProducer against a real broker: Kafka's partitioning, order, outages, deadlines."""

from __future__ import annotations

import collections

import pytest
from kafka.partitioner.default import murmur2

from stream.exceptions import PublishError, PublishTimeout
from stream.kafka.batch_producer import BatchProducer
from stream.kafka.broker_process import BrokerProcess
from tests.integration.kafka_helpers import create_topic, frozen, read_all

pytestmark = pytest.mark.integration


def test_keyed_records_go_where_kafkas_partitioner_puts_them_in_order(
    kafka_bootstrap: str, topic_name: str
) -> None:
    create_topic(kafka_bootstrap, topic_name, partitions=3)
    producer = BatchProducer({"bootstrap_servers": [kafka_bootstrap]})
    try:
        for i in range(3000):
            producer.send(topic_name, f"v{i}".encode(), f"key-{i % 97}".encode(), None)
            if i % 500 == 499:
                producer.ship()
        producer.flush()
    finally:
        producer.close()

    records = read_all(kafka_bootstrap, topic_name)
    assert len(records) == 3000
    for record in records:  # kafka-python's own murmur2, as its default partitioner uses it
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % 3
    per_key: dict[bytes, list[int]] = collections.defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        per_key[record.key].append(int(record.value[1:]))
    assert all(values == sorted(values) for values in per_key.values())


def test_unkeyed_records_all_arrive(kafka_bootstrap: str, topic_name: str) -> None:
    create_topic(kafka_bootstrap, topic_name, partitions=2)
    producer = BatchProducer({"bootstrap_servers": [kafka_bootstrap]})
    try:
        for i in range(1000):
            producer.send(topic_name, str(i).encode(), None, [("h", b"x")])
        producer.flush()
    finally:
        producer.close()
    records = read_all(kafka_bootstrap, topic_name)
    assert sorted(int(r.value) for r in records) == list(range(1000))
    assert all(r.headers == [("h", b"x")] for r in records)


def test_a_frozen_broker_times_the_flush_out_then_everything_arrives_once(
    spare_broker: BrokerProcess, topic_name: str
) -> None:
    bootstrap = spare_broker.bootstrap_servers
    create_topic(bootstrap, topic_name)
    producer = BatchProducer({"bootstrap_servers": [bootstrap]}, request_timeout_ms=2000)
    try:
        producer.send(topic_name, b"before", None, None)
        producer.flush()
        with frozen(spare_broker):
            for i in range(100):
                producer.send(topic_name, str(i).encode(), None, None)
            with pytest.raises(PublishTimeout):
                producer.flush(timeout_s=1.0)
        producer.flush(timeout_s=30.0)
    finally:
        producer.close()
    values = [r.value for r in read_all(bootstrap, topic_name)]
    # At-least-once: a request sent into the freeze may be written and retried.
    assert values[0] == b"before"
    assert set(values[1:]) == {str(i).encode() for i in range(100)}
    assert [v for i, v in enumerate(values) if v not in values[:i]] == values[: 1 + 100]


def test_past_the_delivery_timeout_a_batch_fails_the_flush(
    spare_broker: BrokerProcess, topic_name: str
) -> None:
    bootstrap = spare_broker.bootstrap_servers
    create_topic(bootstrap, topic_name)
    producer = BatchProducer(
        {"bootstrap_servers": [bootstrap]}, delivery_timeout_s=1.0, request_timeout_ms=1500
    )
    try:
        producer.send(topic_name, b"warm-up", None, None)
        producer.flush()
        with frozen(spare_broker):
            producer.send(topic_name, b"lost", None, None)
            with pytest.raises(PublishError, match=r"1 send.*not delivered within 1 s"):
                producer.flush(timeout_s=20.0)
    finally:
        producer.close()
