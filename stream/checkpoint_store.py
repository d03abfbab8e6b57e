"""Where checkpoints live: a local directory, or a Kafka topic every instance can reach.

A store keeps opaque blobs (made by :mod:`learners.checkpoint`) keyed by the
topic-partition they belong to, and hands back the newest one. It does not look
inside them: integrity, versions and signatures are checked by the decoder.

- :class:`LocalDirectoryStore` (``--state-dir``): one file per topic-partition,
  replaced atomically. Instances share partitions' models only if they share the
  directory (one host, or a file system that honours ``rename`` and ``fsync``).
- :class:`KafkaTopicStore`: one record per checkpoint in a compacted, one-partition
  Kafka topic keyed ``"<topic>:<partition>"``. Any member of the consumer group can
  read it, so a partition that moves to another instance on a rebalance carries its
  model with it; compaction keeps only the newest checkpoint of each key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from stream.exceptions import SettingsError, StreamError

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_CHECKPOINT_BYTES",
    "CheckpointStore",
    "CheckpointStoreError",
    "CheckpointTooLargeError",
    "KafkaTopicStore",
    "LocalDirectoryStore",
]

# Kafka's default message limit is ~1 MB; a forest model pickles to several MB.
DEFAULT_MAX_CHECKPOINT_BYTES = 16 * 1024 * 1024
# Room for the record key, headers and batch framing around the blob itself.
_RECORD_OVERHEAD_BYTES = 64 * 1024
_DEFAULT_FETCH_MAX_BYTES = 50 * 1024 * 1024  # kafka-python's own default


class CheckpointStoreError(StreamError):
    """A checkpoint could not be written to, or read from, its store."""


class CheckpointTooLargeError(CheckpointStoreError, ValueError):
    """A checkpoint is larger than the store accepts (``max_checkpoint_bytes``)."""


@runtime_checkable
class CheckpointStore(Protocol):
    """Keeps the newest checkpoint blob of each topic-partition."""

    def save(self, topic: str, partition: int, blob: bytes) -> None:
        """Store ``blob`` durably; return only once a later ``load`` will see it."""

    def load(self, topic: str, partition: int) -> bytes | None:
        """Return the newest blob saved for the topic-partition, or ``None``."""

    def close(self) -> None:
        """Release connections and files; the store is not used afterwards."""


def _check_partition_key(topic: str, partition: int) -> None:
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic must be a non-empty string, got {topic!r}")
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        raise ValueError(f"partition must be a non-negative int, got {partition!r}")


class LocalDirectoryStore:
    """Checkpoints as files in ``directory``, one per topic-partition, replaced atomically.

    A save writes a temporary file next to the target, fsyncs it, renames it over the
    target and fsyncs the directory, so after a crash the file holds either the old
    checkpoint or the new one, never a mix. Temporary files are never loaded; those
    older than ``stale_temp_s`` (left by a crash mid-save) are removed on start.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as state_dir:
    ...     store = LocalDirectoryStore(state_dir)
    ...     missing = store.load("events", 0)
    ...     store.save("events", 0, b"blob")
    ...     (missing, store.load("events", 0), store.path_for("events", 0).name)
    (None, b'blob', 'events-0.ckpt')
    """

    _SUFFIX = ".ckpt"
    _TEMP_SUFFIX = ".tmp"

    def __init__(self, directory: str | os.PathLike[str], stale_temp_s: float = 3600.0) -> None:
        self.directory = directory
        self.stale_temp_s = stale_temp_s
        self._path = Path(directory)
        self._path.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()

    def path_for(self, topic: str, partition: int) -> Path:
        """The file holding the checkpoint of ``topic``/``partition``."""
        _check_partition_key(topic, partition)
        # Percent-encoding is reversible, so two topics never share a file; the
        # partition follows the last "-", which a quoted topic may contain but an int cannot.
        return self._path / f"{quote(topic, safe='')}-{partition}{self._SUFFIX}"

    def save(self, topic: str, partition: int, blob: bytes) -> None:
        target = self.path_for(topic, partition)
        # Same directory as the target: os.replace is only atomic within one file system.
        # The leading "." and the suffix keep temporaries out of every target's name.
        fd, temp_name = tempfile.mkstemp(
            dir=self._path, prefix=f".{target.name}.", suffix=self._TEMP_SUFFIX
        )
        try:
            with os.fdopen(fd, "wb") as temp:
                temp.write(blob)
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        self._fsync_directory()

    def load(self, topic: str, partition: int) -> bytes | None:
        try:
            return self.path_for(topic, partition).read_bytes()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        """Nothing stays open between calls: every save and load opens its own file."""

    def _fsync_directory(self) -> None:
        # The rename lives in the directory entry; without this a power loss may
        # bring back the old file (or none) even though save() returned.
        fd = os.open(self._path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _remove_stale_temps(self) -> None:
        # Only old ones: a directory shared by several processes on one host may hold
        # a temporary that another live process is about to rename.
        cutoff = time.time() - self.stale_temp_s
        for temp in self._path.glob(f".*{self._SUFFIX}.*{self._TEMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
                    log.info("removed stale checkpoint temporary %s", temp)


# Settings this store relies on for correctness; a caller may not override them.
_RESERVED_SETTINGS = frozenset({
    "bootstrap_servers", "group_id", "enable_auto_commit", "auto_offset_reset", "acks",
    "max_request_size", "max_partition_fetch_bytes", "fetch_max_bytes", "isolation_level",
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

    # -- the CheckpointStore protocol -------------------------------------------------

    def save(self, topic: str, partition: int, blob: bytes) -> None:
        """Send ``blob`` and wait until the broker acknowledged it on all in-sync replicas."""
        _check_partition_key(topic, partition)
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
        _check_partition_key(topic, partition)
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
