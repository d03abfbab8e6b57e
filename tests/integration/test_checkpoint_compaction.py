"""The Kafka checkpoint topic is compacted, on Apache Kafka (Tansu neither compacts nor
answers DescribeConfigs).

The store creates it with ``cleanup.policy=compact``; a daemon refuses at start, with a
message, a checkpoint topic someone made with retention instead; and a hand-off through
a checkpoint topic that the log cleaner has compacted (short ``segment.ms``, any dirty
ratio) is as exact as one through an uncompacted one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from stream.checkpoints.stores import CheckpointStoreError
from stream.kafka.apache import ApacheKafkaBroker
from stream.kafka.checkpoint_topic import KafkaTopicStore
from tests.integration.daemon_process import (
    DaemonProcess,
    Feeder,
    daemons,
    kafka_checkpoint,
    state_of,
)
from tests.integration.kafka_helpers import create_topic, read_all
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

# The Kafka store refuses unsigned checkpoints unless told otherwise.
KEY = {"STREAMLEARN_CHECKPOINT_KEY": "compaction-test-key"}
LEARNING = {"checkpoint-every-events": 100, "checkpoint-interval": 0.2, "max-poll-records": 100}


def make_topic(bootstrap: str, topic: str, configs: dict[str, str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        spec = {"num_partitions": 1, "replication_factor": 1, "configs": configs}
        admin.create_topics({topic: spec}, wait_for_metadata=True)
    finally:
        admin.close()


def cleanup_policy(bootstrap: str, topic: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, ["cleanup.policy"])
        answer = admin.describe_configs([resource], config_filter="all")
    finally:
        admin.close()
    return str(answer["topic"][topic]["cleanup.policy"]["value"])


def test_the_store_creates_its_topic_compacted(
    apache_kafka: ApacheKafkaBroker, topic_name: str
) -> None:
    store = KafkaTopicStore(apache_kafka.bootstrap_servers, topic_name)
    try:
        store.open()
    finally:
        store.close()
    assert cleanup_policy(apache_kafka.bootstrap_servers, topic_name) == "compact"


def test_a_checkpoint_topic_under_retention_is_refused_at_start(
    apache_kafka: ApacheKafkaBroker, topic_name: str, tmp_path: Path
) -> None:
    bootstrap = apache_kafka.bootstrap_servers
    checkpoints = f"{topic_name}-checkpoints"
    make_topic(bootstrap, checkpoints, {"cleanup.policy": "delete"})
    store = KafkaTopicStore(bootstrap, checkpoints)
    with pytest.raises(CheckpointStoreError, match=r"cleanup\.policy=delete"):
        store.open()
    store.close()

    create_topic(bootstrap, topic_name, 1)
    options = {"checkpoint-store": "kafka", "checkpoint-topic": checkpoints}
    daemon = DaemonProcess(bootstrap, topic_name, tmp_path / "daemon.log", options, env=KEY)
    with daemons(daemon):
        daemon.start()
        assert daemon.wait(90) == 2
    assert f"checkpoint topic {checkpoints} has cleanup.policy=delete" in daemon.log()
    assert "must be compacted" in daemon.log()


def test_hand_off_through_a_compacted_checkpoint_topic_is_exact(
    apache_kafka: ApacheKafkaBroker, topic_name: str, tmp_path: Path
) -> None:
    bootstrap = apache_kafka.bootstrap_servers
    checkpoints = f"{topic_name}-checkpoints"
    # Segments roll every 200 ms and any dirty share is worth cleaning: the broker's log
    # cleaner (it looks every second here) compacts while the daemons run.
    make_topic(bootstrap, checkpoints, {
        "cleanup.policy": "compact", "segment.ms": "200", "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "100",
    })  # fmt: skip
    create_topic(bootstrap, topic_name, 1)
    feeder = Feeder(bootstrap, topic_name, seed=23)
    feeder.send(4_000)
    options = {"checkpoint-store": "kafka", "checkpoint-topic": checkpoints, **LEARNING}
    first = DaemonProcess(bootstrap, topic_name, tmp_path / "first.log", options, env=KEY)
    second = DaemonProcess(
        bootstrap, topic_name, tmp_path / "second.log", {**options, "stop-after-idle": 3}, env=KEY
    )
    with daemons(first, second):
        first.start()
        wait_until(
            lambda: first.metric_sum("streamlearn_checkpoints_total") >= 20,
            90,
            "checkpoints to pile up",
        )
        saved = first.metric("streamlearn_checkpoints_total")
        # Compaction ran: fewer records are left than were written (the one key each time).
        wait_until(
            lambda: len(read_all(bootstrap, checkpoints, quiet_s=0.2)) < saved,
            90,
            "the log cleaner to compact the checkpoint topic",
            every_s=1.0,
        )
        assert first.terminate() == 0
        feeder.send(3_000)
        feeder.close()
        second.start()
        assert second.wait(120) == 0, second.log_tail()
    assert second.restored() == [0]
    key = KEY["STREAMLEARN_CHECKPOINT_KEY"].encode()
    checkpoint = kafka_checkpoint(bootstrap, checkpoints, topic_name, 0, key=key)
    state = state_of(checkpoint)
    assert checkpoint is not None and checkpoint.next_offset == 7_000
    assert (state.learner.learned, state.sequence.gaps, state.sequence.duplicates) == (7_000, 0, 0)
