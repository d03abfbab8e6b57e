"""The fast fetched-batch reader inside a real consumer, against a real broker: the same
records as kafka-python's own reader, compressed with any codec or not, after seeks and
pauses."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stream.kafka.consumer import GroupSource
from stream.kafka.fetched_records import speed_up_fetches
from tests.integration.kafka_helpers import create_topic, read_all


def produce_mixed(bootstrap: str, topic: str) -> int:
    """Records in plain and compressed batches (every codec), with headers, null keys and
    null values."""
    sent = 0
    for compression in (None, "gzip", "snappy", "lz4", "zstd", None):
        producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=compression)
        for i in range(400):
            key = None if i % 5 == 0 else f"k{i}".encode()
            value = None if key and i % 97 == 1 else (f"v{i}-" * (i % 40)).encode()
            headers = [("n", str(i).encode()), ("empty", b"")] if i % 3 == 0 else []
            producer.send(topic, key=key, value=value, headers=headers, partition=0)
            sent += 1
        producer.flush()
        producer.close()
    return sent


def test_same_records_as_kafka_python(kafka_bootstrap: str, topic_name: str) -> None:
    create_topic(kafka_bootstrap, topic_name)
    sent = produce_mixed(kafka_bootstrap, topic_name)
    theirs = read_all(kafka_bootstrap, topic_name)
    ours = read_all(kafka_bootstrap, topic_name, fast_fetches=True)
    assert len(theirs) == sent
    assert ours == theirs


def test_seek_and_pause(kafka_bootstrap: str, topic_name: str) -> None:
    create_topic(kafka_bootstrap, topic_name)
    produce_mixed(kafka_bootstrap, topic_name)
    expected = read_all(kafka_bootstrap, topic_name)
    tp = TopicPartition(topic_name, 0)
    consumer = speed_up_fetches(
        KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None, max_poll_records=50)
    )
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        first = poll_some(consumer, tp, 120)
        consumer.pause(tp)
        assert consumer.poll(timeout_ms=300) == {}
        consumer.resume(tp)
        consumer.seek(tp, 777)  # inside the gzip batches
        again = poll_some(consumer, tp, len(expected) - 777)
    finally:
        consumer.close()
    assert first[:120] == expected[:120]
    assert again == expected[777:]


def poll_some(consumer: KafkaConsumer, tp: TopicPartition, count: int) -> list:
    records: list = []
    deadline = time.monotonic() + 30
    while len(records) < count and time.monotonic() < deadline:
        records += consumer.poll(timeout_ms=200).get(tp, [])
    return records


def test_a_partition_paused_mid_batch_gets_the_rest_once_resumed(
    kafka_bootstrap: str, topic_name: str
) -> None:
    # kafka-python parks the rest of a batch whose partition is paused; once the other
    # partition's batch is read to its end, the parked one must still come back on resume
    # (GroupSource.poll releases it: stream/kafka/consumer.py, release_parked).
    create_topic(kafka_bootstrap, topic_name, partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(200):
        for partition in (0, 1):
            producer.send(topic_name, value=f"{partition}-{i}".encode(), partition=partition)
    producer.flush()
    producer.close()
    tps = [TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)]
    consumer = speed_up_fetches(
        KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None, max_poll_records=50)
    )
    source = GroupSource(consumer)
    got: dict[int, list[int]] = {0: [], 1: []}

    def poll_until(done: object) -> None:
        deadline = time.monotonic() + 20
        while not done() and time.monotonic() < deadline:  # type: ignore[operator]
            for tp, records in source.poll(timeout_ms=100).items():
                got[tp.partition] += [r.offset for r in records]

    try:
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        poll_until(lambda: got[0] or got[1])
        paused = 0 if got[0] else 1
        other = 1 - paused
        assert 0 < len(got[paused]) < 200  # in the middle of its batch
        consumer.pause(tps[paused])
        poll_until(lambda: len(got[other]) == 200)
        source.poll(timeout_ms=300)  # the other partition's empty fetches come in line
        consumer.resume(tps[paused])
        poll_until(lambda: len(got[paused]) == 200)
    finally:
        consumer.close()
    assert got[other] == list(range(200))
    assert got[paused] == list(range(200))
