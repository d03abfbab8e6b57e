"""The private parts of kafka-python that streamlearn relies on are all still there.

kafka-python is pinned exactly (``pyproject.toml`` lists these parts next to the pin).
Should an upgrade move or rename one of them, these checks fail with its name and the
module of ours that relies on it, before the fast reader, the batch producer or the
readiness check break in some subtler way.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import kafka
import kafka.codec
import kafka.errors
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.cluster import ClusterMetadata
from kafka.consumer.fetcher import ConsumerRecord, Fetcher
from kafka.future import Future
from kafka.record.memory_records import MemoryRecords
from kafka.structs import MemberState

from stream.kafka.batch_producer import PRODUCE_VERSIONS
from stream.kafka.fetched_records import FastPartitionRecords
from stream.kafka.record_batch import encode_batch

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


def require(owner: Any, path: str, user: str) -> Any:
    """``owner.<path>`` (dotted), or a failure naming what is gone and who needs it."""
    value = owner
    for name in path.split("."):
        if not hasattr(value, name):
            where = getattr(owner, "__name__", type(owner).__name__)
            pytest.fail(
                f"kafka-python {kafka.__version__}: {where}.{path} is gone, and {user} relies "
                "on it; see the list next to the kafka-python pin in pyproject.toml",
                pytrace=False,
            )
        value = getattr(value, name)
    return value


def test_the_installed_kafka_python_is_the_pinned_one() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    [pin] = [d for d in dependencies if re.match(r"kafka-python\b", d)]
    pinned = pin.split("==")[-1]
    assert "==" in pin, f"kafka-python must be pinned exactly, not {pin!r}"
    assert version("kafka-python") == pinned, (
        f"kafka-python {version('kafka-python')} is installed but {pinned} is pinned: after "
        "an upgrade, re-check the private parts listed next to the pin in pyproject.toml"
    )


@pytest.fixture
def consumer() -> Any:
    group_member = KafkaConsumer(
        group_id="internals", bootstrap_servers="127.0.0.1:1", api_version=(2, 5)
    )
    yield group_member
    group_member.close()


def test_the_fetcher_still_builds_records_through_a_replaceable_factory(consumer: Any) -> None:
    user = "stream/kafka/fetched_records.py (speed_up_fetches)"
    assert isinstance(require(consumer, "_fetcher", user), Fetcher), user
    require(Fetcher, "PartitionRecords", user)
    source = inspect.getsource(require(Fetcher, "_parse_fetched_data", user))
    assert "self.PartitionRecords(" in source, (
        f"kafka-python {kafka.__version__}: Fetcher._parse_fetched_data no longer builds "
        f"records through self.PartitionRecords; {user} would be bypassed"
    )
    # A new argument may carry something the fast reader ignores (ours hands the
    # deserializers and read_committed back to kafka-python's reader).
    parameters = set(inspect.signature(Fetcher.PartitionRecords.__init__).parameters)
    assert parameters == {
        "self", "fetch_offset", "tp", "records", "key_deserializer", "value_deserializer",
        "check_crcs", "isolation_level", "aborted_transactions", "metric_aggregator",
        "on_drain",
    }, f"Fetcher.PartitionRecords takes other arguments now: {sorted(parameters)}"  # fmt: skip


def test_what_the_fetcher_reads_back_exists_on_both_readers() -> None:
    tp = TopicPartition("events", 0)
    buffer = encode_batch([(None, b"v", None, 1)])
    memory = MemoryRecords(buffer)
    assert require(memory, "_buffer", "FastPartitionRecords (the fetched bytes)") is buffer
    theirs = Fetcher.PartitionRecords(0, tp, MemoryRecords(buffer))
    ours = FastPartitionRecords(0, tp, MemoryRecords(buffer))
    for name in (
        "take", "drain", "next_fetch_offset", "leader_epoch", "topic_partition", "bytes_read",
        "fetch_offset", "records_read", "__bool__",
    ):  # fmt: skip
        require(theirs, name, "FastPartitionRecords, which stands in for it")
        assert hasattr(ours, name), name


def test_consumer_record_fields_are_in_the_order_the_reader_builds_them() -> None:
    # stream/kafka/fetched_records.py builds ConsumerRecords positionally with tuple.__new__.
    assert ConsumerRecord._fields == (
        "topic", "partition", "leader_epoch", "offset", "timestamp", "timestamp_type", "key",
        "value", "headers", "checksum", "serialized_key_size", "serialized_value_size",
        "serialized_header_size",
    )  # fmt: skip


def test_codecs_and_isolation_level_where_the_reader_imports_them() -> None:
    user = "stream/kafka/fetched_records.py (decompression)"
    for name in ("gzip", "snappy", "lz4", "zstd"):
        assert require(kafka.codec, f"has_{name}", user)(), f"the {name} codec is not installed"
        require(kafka.codec, f"{name}_decode", user)
    from kafka.protocol.consumer.offsets import IsolationLevel

    require(IsolationLevel, "READ_UNCOMMITTED", "stream/kafka/fetched_records.py")


def test_the_network_client_the_batch_producer_sends_on() -> None:
    from kafka.net.compat import KafkaNetClient
    from kafka.protocol.producer import ProduceRequest, ProduceResponse

    user = "stream/kafka/batch_producer.py"
    for name in ("check_version", "send", "poll", "close", "cluster"):
        require(KafkaNetClient, name, user)
    for name in ("partitions_for_topic", "add_topic", "request_update", "leader_for_partition"):
        require(ClusterMetadata, name, user)
    for name in ("is_done", "failed", "exception", "value"):
        require(Future(), name, user)
    require(ProduceRequest, "TopicProduceData.PartitionProduceData", user)
    require(ProduceResponse, "TopicProduceResponse.PartitionProduceResponse", user)
    lowest, highest = require(ProduceRequest, "valid_versions", user)
    assert lowest <= PRODUCE_VERSIONS[0] and PRODUCE_VERSIONS[1] <= highest
    assert require(kafka.errors, "for_code", user)(6).retriable  # NOT_LEADER_OR_FOLLOWER


def test_the_connection_state_the_credentials_check_reads() -> None:
    from kafka.net.compat import KafkaNetClient
    from kafka.net.connection import KafkaConnection
    from kafka.net.manager import KafkaConnectionManager

    user = "stream/kafka/credentials.py"
    for name in ("maybe_connect", "poll", "close", "cluster"):
        require(KafkaNetClient, name, user)
    require(ClusterMetadata, "bootstrap_brokers", user)
    for name in ("auth_failure", "DEFAULT_CONFIG", "_connect"):
        require(KafkaConnectionManager, name, user)
    for name in ("init_future", "sasl_enabled", "broker_version"):
        require(KafkaConnection, name, user)
    client = KafkaNetClient(bootstrap_servers=["127.0.0.1:9"])
    try:
        require(client, "_manager._conns", user)
        [node] = client.cluster.bootstrap_brokers()
        client.maybe_connect(node.node_id)
        connection = client._manager._conns[node.node_id]
        require(connection, "broker_version_data", user)
        require(connection, "init_future.is_done", user)
    finally:
        client.close()
    require(kafka.errors, "SaslAuthenticationFailedError", user)


def test_the_group_state_the_readiness_check_reads(consumer: Any) -> None:
    user = "stream/kafka/consumer.py (readiness and shutdown)"
    require(consumer, "_client.connected", user)
    require(consumer, "_client.cluster.brokers", user)
    require(consumer, "bootstrap_connected", user)
    require(consumer, "_coordinator.state", user)
    require(consumer, "_coordinator.heartbeat.session_timeout_expired", user)
    require(MemberState, "STABLE", user)
    require(MemberState, "REBALANCING", user)


def test_the_fetcher_and_subscription_state_the_group_source_reads(consumer: Any) -> None:
    user = "stream/kafka/consumer.py (release_parked, GroupSource.position)"
    require(consumer, "_fetcher._next_partition_records", user)
    require(consumer, "_fetcher._paused_partition_records", user)
    require(consumer, "_subscription.assignment", user)
    source = inspect.getsource(Fetcher.fetched_records)
    # The restore of parked records that release_parked unblocks: still guarded this way?
    assert "if self._next_partition_records is None:" in source, user
