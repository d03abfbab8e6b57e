"""Where checkpoints live: the store protocol, and the local directory store.

A store keeps opaque blobs (made by :mod:`learners.checkpoint`) keyed by the
topic-partition they belong to, and hands back the newest one. It does not look
inside them: integrity, versions and signatures are checked by the decoder.

- :class:`LocalDirectoryStore` (``--state-dir``): one file per topic-partition,
  replaced atomically. Instances share partitions' models only if they share the
  directory (one host, or a file system that honours ``rename`` and ``fsync``).
- :class:`~stream.kafka.checkpoint_topic.KafkaTopicStore`: one record per checkpoint
  in a compacted, one-partition Kafka topic keyed ``"<topic>:<partition>"``, which
  every member of the consumer group can read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import quote

from stream.exceptions import StreamError

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_CHECKPOINT_BYTES",
    "CheckpointStore",
    "CheckpointStoreError",
    "CheckpointTooLargeError",
    "LocalDirectoryStore",
]

# Kafka's default message limit is ~1 MB; a forest model pickles to several MB.
DEFAULT_MAX_CHECKPOINT_BYTES = 16 * 1024 * 1024


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


def check_partition_key(topic: str, partition: int) -> None:
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
        check_partition_key(topic, partition)
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
