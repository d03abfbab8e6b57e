"""The Kafka checkpoint store: a compacted, one-partition topic every group member reads.

One record per checkpoint, keyed ``"<topic>:<partition>"``; compaction keeps only the
newest checkpoint of each key, so a partition that moves to another instance on a
rebalance carries its model with it.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from stream.checkpoints.stores import (
    DEFAULT_MAX_CHECKPOINT_BYTES,
    CheckpointStoreError,
    CheckpointTooLargeError,
    check_partition_key,
)
from stream.exceptions import SettingsError

log = logging.getLogger(__name__)

__all__ = ["KafkaTopicStore"]

# Room for the record key, headers and batch framing around the blob itself.
_RECORD_OVERHEAD_BYTES = 64 * 1024
_DEFAULT_FETCH_MAX_BYTES = 50 * 1024 * 1024  # kafka-python's own default


# Settings this store relies on for correctness; a caller may not override them.
_RESERVED_SETTINGS = frozenset({
    "bootstrap_servers", "group_id", "enable_auto_commit", "auto_offset_reset", "acks",
    "max_request_size", "max_partition_fetch_bytes", "fetch_max_bytes", "fetch_max_wait_ms",
    "isolation_level",
    "key_serializer", "value_serializer", "key_deserializer", "value_deserializer",
    "transactional_id",
})  # fmt: skip


class KafkaTopicStore:
    """Checkpoints as records of the one-partition Kafka topic ``topic``, keyed by partition.

    ``kafka_config`` holds client settings (security, client id, timeouts...); each
    client receives the ones it knows, and a setting no client knows is refused.
    Connecting is lazy, at the first save or load, so a broker that is down at start
    makes those calls fail (and be retried by the caller), not the constructor.

    Size limit: a checkpoint may be at most ``max_checkpoint_bytes`` (16 MiB by
    default). The producer's ``max_request_size`` and, when this store creates the
    topic, the topic's ``max.message.bytes`` are raised to fit it. A topic created by
    someone else must allow messages that large itself (Kafka's default is ~1 MB).
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        topic: str,
        *,
        max_checkpoint_bytes: int = DEFAULT_MAX_CHECKPOINT_BYTES,
        replication_factor: int = 1,
        timeout_s: float = 30.0,
        **kafka_config: Any,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.max_checkpoint_bytes = max_checkpoint_bytes
        self.replication_factor = replication_factor
        self.timeout_s = timeout_s
        self.kafka_config = kafka_config
        _check_settings(topic, max_checkpoint_bytes, kafka_config)
        self._record_limit = max_checkpoint_bytes + _RECORD_OVERHEAD_BYTES
        self._producer: KafkaProducer | None = None

    def open(self) -> None:
        """Connect now: create the topic if missing, refuse it if it is not one partition
        or not compacted (:class:`CheckpointStoreError`, with what to do)."""
        self._connected_producer()

    # -- the CheckpointStore protocol -------------------------------------------------

    def save(self, topic: str, partition: int, blob: bytes) -> None:
        """Send ``blob`` and wait until the broker acknowledged it on all in-sync replicas."""
        check_partition_key(topic, partition)
        if len(blob) > self.max_checkpoint_bytes:
            raise CheckpointTooLargeError(
                f"checkpoint of {topic}/{partition} is {len(blob)} bytes, more than "
                f"max_checkpoint_bytes={self.max_checkpoint_bytes}; raise that setting "
                f"(and the checkpoint topic's max.message.bytes) or use a smaller model"
            )
        producer = self._connected_producer()
        try:
            # Synchronous on purpose: offsets are committed only after this returns,
            # so an unacknowledged checkpoint must never look like a saved one.
            future = producer.send(
                self.topic, key=_record_key(topic, partition), value=blob, partition=0
            )
            future.get(timeout=self.timeout_s)
        except KafkaError as error:
            raise CheckpointStoreError(
                f"checkpoint of {topic}/{partition} was not saved to {self.topic}: {error}"
            ) from error

    def load(self, topic: str, partition: int) -> bytes | None:
        """Read the checkpoint topic from its start to its end; return the key's last value.

        A fresh consumer per load keeps no high watermark from an earlier read, so "the
        end" is never older than this call. Loads happen on assignment only, and
        compaction keeps the topic about one record per topic-partition long. A
        tombstone (null value) as the last record means "no checkpoint".
        """
        check_partition_key(topic, partition)
        self._connected_producer()  # creates the topic on first use
        wanted = _record_key(topic, partition)
        try:
            consumer = KafkaConsumer(
                **self._client_settings(KafkaConsumer), **self._consumer_settings()
            )
        except KafkaError as error:
            raise CheckpointStoreError(f"cannot read {self.topic}: {error}") from error
        try:
            return self._scan_for(consumer, wanted)
        except KafkaError as error:
            raise CheckpointStoreError(f"cannot read {self.topic}: {error}") from error
        finally:
            consumer.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=self.timeout_s)
            self._producer = None

    # -- internals --------------------------------------------------------------------

    def _scan_for(self, consumer: KafkaConsumer, wanted: bytes) -> bytes | None:
        partition = TopicPartition(self.topic, 0)
        # No group: this read must neither join the daemon's group nor commit anything.
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        deadline = time.monotonic() + self.timeout_s
        latest: bytes | None = None
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise CheckpointStoreError(
                    f"reading {self.topic} did not reach its end within {self.timeout_s}s"
                )
            batches = consumer.poll(timeout_ms=min(remaining_ms, 500))
            for record in batches.get(partition, []):
                if record.key == wanted:
                    latest = record.value
            # The high watermark that comes with each fetch, not end_offsets(): some
            # brokers (Tansu) answer ListOffsets with the last batch's base offset.
            highwater = consumer.highwater(partition)
            if highwater is not None and consumer.position(partition) >= highwater:
                return latest

    def _connected_producer(self) -> KafkaProducer:
        if self._producer is None:
            try:
                self._ensure_topic()
                self._producer = KafkaProducer(
                    **self._client_settings(KafkaProducer),
                    acks="all",
                    max_request_size=self._record_limit,
                )
            except KafkaError as error:
                raise CheckpointStoreError(
                    f"cannot reach the checkpoint topic {self.topic}: {error}"
                ) from error
        return self._producer

    def _ensure_topic(self) -> None:
        admin = KafkaAdminClient(**self._client_settings(KafkaAdminClient))
        try:
            self._create_topic(admin)
            self._check_one_partition(admin)
            self._check_compacted(admin)
        finally:
            admin.close()

    def _create_topic(self, admin: KafkaAdminClient) -> None:
        configs = {"cleanup.policy": "compact", "max.message.bytes": str(self._record_limit)}
        spec = {"num_partitions": 1, "replication_factor": self.replication_factor}
        try:
            admin.create_topics({self.topic: {**spec, "configs": configs}}, wait_for_metadata=True)
        except TopicAlreadyExistsError:
            return
        except KafkaError as error:
            # A broker that refuses these configs still stores records; load() takes the
            # last record per key, so correctness does not depend on compaction.
            log.warning(
                "broker refused configs %s for %s (%s); creating it without them",
                configs,
                self.topic,
                error,
            )
            try:
                admin.create_topics({self.topic: spec}, wait_for_metadata=True)
            except TopicAlreadyExistsError:
                return

    def _check_one_partition(self, admin: KafkaAdminClient) -> None:
        # Records of one key must stay in order on one partition, and load() reads
        # partition 0 only: a topic that someone created with more is refused.
        (description,) = admin.describe_topics([self.topic])
        if description.get("error_code"):
            raise CheckpointStoreError(
                f"cannot describe checkpoint topic {self.topic}: "
                f"error code {description['error_code']}"
            )
        count = len(description.get("partitions") or [])
        if count != 1:
            raise CheckpointStoreError(
                f"checkpoint topic {self.topic} has {count} partitions; it must have exactly 1"
            )

    def _check_compacted(self, admin: KafkaAdminClient) -> None:
        # Under "delete" retention would remove a partition's only checkpoint once it is
        # old enough, and a daemon taking the partition over would start from scratch.
        resource = ConfigResource(ConfigResourceType.TOPIC, self.topic, ["cleanup.policy"])
        try:
            answer = admin.describe_configs([resource], config_filter="all")
        except KafkaConnectionError as error:
            # Tansu drops the connection on DescribeConfigs; its topics live in memory.
            log.warning("cannot read cleanup.policy of %s (%s): not checked", self.topic, error)
            return
        entry = answer.get("topic", {}).get(self.topic, {}).get("cleanup.policy") or {}
        policy = str(entry.get("value") or "")
        if "compact" not in policy.split(","):
            raise CheckpointStoreError(
                f"checkpoint topic {self.topic} has cleanup.policy={policy or '?'}: retention "
                f"would delete checkpoints; it must be compacted (kafka-configs --alter "
                f"--entity-type topics --entity-name {self.topic} --add-config "
                f"cleanup.policy=compact), or name another --checkpoint-topic"
            )

    def _client_settings(self, client: type) -> dict[str, Any]:
        known = client.DEFAULT_CONFIG  # type: ignore[attr-defined]
        settings = {k: v for k, v in self.kafka_config.items() if k in known}
        return {"bootstrap_servers": self.bootstrap_servers, **settings}

    def _consumer_settings(self) -> dict[str, Any]:
        return {
            "group_id": None,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            # One fetch must be able to carry the largest checkpoint whole.
            "max_partition_fetch_bytes": self._record_limit,
            "fetch_max_bytes": max(self._record_limit, _DEFAULT_FETCH_MAX_BYTES),
            # A load reads to the end and stops: a broker holding each empty fetch for
            # its default 500 ms made every restore (in the rebalance listener) cost ~1 s.
            "fetch_max_wait_ms": 20,
        }


def _record_key(topic: str, partition: int) -> bytes:
    return f"{topic}:{partition}".encode()


def _check_settings(topic: str, max_checkpoint_bytes: int, kafka_config: dict[str, Any]) -> None:
    if not topic or not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic) or topic in {".", ".."}:
        raise SettingsError(f"{topic!r} is not a valid Kafka topic name")
    size = max_checkpoint_bytes
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise SettingsError(f"max_checkpoint_bytes must be a positive int, not {size!r}")
    reserved = sorted(_RESERVED_SETTINGS & kafka_config.keys())
    if reserved:
        raise SettingsError(f"the checkpoint store sets {reserved} itself; do not pass them")
    known = {
        *KafkaProducer.DEFAULT_CONFIG,
        *KafkaConsumer.DEFAULT_CONFIG,
        *KafkaAdminClient.DEFAULT_CONFIG,
    }
    unknown = sorted(kafka_config.keys() - known)
    if unknown:
        raise SettingsError(f"unknown Kafka client settings for the checkpoint store: {unknown}")
