"""Retention deletes offsets a retrain wants to replay, on Apache Kafka.

The daemon learns a first concept and stops. Its events were stamped two hours old; a
second concept arrives, and the topic gets a one-hour retention, so the broker deletes
the first concept's segments. Restarted, the daemon sees the concept change, and its
retrain asks to replay at least ``MIN_REPLAY`` events back, across the deleted offsets:
the replay is shortened to what is left, with a log line and a counted outcome, the
retrain is decided as usual, and nothing crashes or hangs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from stream.kafka.apache import ApacheKafkaBroker
from stream.tools.generators import concept_stream
from stream.tools.produce import encode_event
from tests.integration.daemon_process import (
    DaemonProcess,
    daemons,
    local_checkpoint,
    state_of,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

FIRST, SECOND = 6_000, 3_000
MIN_REPLAY = 5_000
TWO_HOURS_MS = 2 * 3600 * 1000


def produce(bootstrap: str, topic: str, events: list[tuple[int, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=10)
    for timestamp_ms, value in events:
        producer.send(topic, value=value, partition=0, timestamp_ms=timestamp_ms)
    producer.flush()
    producer.close()


def log_start(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        return int(consumer.beginning_offsets([tp])[tp])
    finally:
        consumer.close()


def test_a_retrain_whose_replay_range_expired_is_shortened_logged_and_counted(
    apache_kafka: ApacheKafkaBroker, topic_name: str, tmp_path: Path
) -> None:
    bootstrap = apache_kafka.bootstrap_servers
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    # Kept for now; segments roll every 100 ms, so retention can later delete all but the last.
    spec = {
        "num_partitions": 1,
        "replication_factor": 1,
        "configs": {"retention.ms": "-1", "segment.ms": "100"},
    }
    admin.create_topics({topic_name: spec}, wait_for_metadata=True)
    stream = list(concept_stream("sea", seed=3, count=FIRST + SECOND, drift_at=(FIRST,)))
    old = int(time.time() * 1000) - TWO_HOURS_MS
    produce(bootstrap, topic_name, [
        (old, encode_event(f"e{i}", x, y, i)) for i, (x, y) in enumerate(stream[:FIRST])
    ])  # fmt: skip

    state_dir = tmp_path / "state"
    options = {
        "state-dir": state_dir, "drift-action": "retrain", "min-retrain-events": MIN_REPLAY,
        "stop-after-idle": 3,
    }  # fmt: skip
    daemon = DaemonProcess(bootstrap, topic_name, tmp_path / "daemon.log", options)
    with daemons(daemon):
        daemon.start()
        assert daemon.wait(120) == 0, daemon.log_tail()
        time.sleep(0.3)  # the next record opens a new segment: the old ones hold old events only
        produce(bootstrap, topic_name, [
            (int(time.time() * 1000), encode_event(f"e{i}", x, y, i))
            for i, (x, y) in enumerate(stream[FIRST:], start=FIRST)
        ])  # fmt: skip
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, topic_name, configs={"retention.ms": str(3600 * 1000)}
                )
            ]
        )
        admin.close()
        # The broker looks every second here; bounded, not timed.
        wait_until(
            lambda: log_start(bootstrap, topic_name) >= FIRST - 200,
            60,
            "retention to delete the first concept's segments",
            every_s=0.5,
        )
        deleted_below = log_start(bootstrap, topic_name)

        daemon.start()
        assert daemon.wait(120) == 0, daemon.log_tail()

    log_text = daemon.log()
    assert "retention deleted" in log_text and "replay shortened to" in log_text
    final = state_of(local_checkpoint(state_dir, topic_name, 0))
    assert (final.learner.learned, final.sequence.gaps, final.sequence.duplicates) == (
        FIRST + SECOND, 0, 0,
    )  # fmt: skip
    decisions = daemon.run_log("retrain")
    assert len(decisions) == 1 and decisions[0]["result"] in {"promoted", "rejected"}
    # The replay started at the log's start, not at MIN_REPLAY events before the drift.
    assert f"from offset {deleted_below}" in log_text
