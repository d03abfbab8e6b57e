"""How the daemon sees Kafka: a record type and the protocols of its consumers and outputs.

The daemon (:mod:`stream.daemon`) and the checkpoints never import kafka-python; the
adapters in :mod:`stream.kafka` implement these protocols, and the unit tests of the
loop drive it with fakes of them. Nothing here imports Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

from learners.origin import Origin

#: Record headers as Kafka carries them: (name, value) pairs, names may repeat.
Headers = list[tuple[str, bytes]] | None


class TopicPartition(NamedTuple):
    """A partition of a topic (equal to and hashing like kafka-python's own)."""

    topic: str
    partition: int


class Record(Protocol):
    """What the daemon reads of a fetched record (kafka-python's ``ConsumerRecord`` is one)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class SourceRecord(NamedTuple):
    """A plain :class:`Record`, for tools and tests that make records themselves."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp: int = 0


class Rebalance(Protocol):
    """Told when the group hands partitions to this instance or takes them away."""

    def assigned(self, partitions: list[TopicPartition]) -> None: ...

    def revoked(self, partitions: list[TopicPartition]) -> None: ...


class Source(Protocol):
    """The group consumer of the input topic, as the daemon loop uses it."""

    def subscribe(self, topic: str | Sequence[str], listener: Rebalance) -> None:
        """Join the group on ``topic`` (or topics: events and labels, one group)."""

    def poll(self, timeout_ms: int) -> Mapping[TopicPartition, Sequence[Record]]: ...

    def pause(self, tp: TopicPartition) -> None: ...

    def resume(self, tp: TopicPartition) -> None: ...

    def seek(self, tp: TopicPartition, offset: int) -> None: ...

    def highwater(self, tp: TopicPartition) -> int | None:
        """The high watermark that came with the last fetch (None before one)."""

    def position(self, tp: TopicPartition) -> int | None:
        """The next offset of ``tp`` to fetch (past every record polled), without a broker
        round trip: None while it is not known (a reset in flight)."""

    def log_start(self, tp: TopicPartition) -> int | None:
        """The first offset the log still holds; None when the broker did not answer."""

    def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset; None when there is none or no answer."""

    def reset_position(self, tp: TopicPartition) -> str:
        """Seek where the reset policy (``auto_offset_reset``) says; returns where, in words."""

    def origin(self, tp: TopicPartition) -> Origin:
        """Who the partition is (cluster, topic incarnation, partition count), from the
        client's cached metadata: no broker round trip, so safe in a rebalance callback."""

    def commit(self, offsets: Mapping[TopicPartition, int], blocking: bool = True) -> None:
        """Commit; raises :class:`~stream.exceptions.CommitRefused` after a rebalance and
        :class:`~stream.exceptions.BrokerUnavailable` when the broker did not answer."""

    def reachable(self) -> bool:
        """True while a broker answers and, as a group member, heartbeats are answered."""

    def joining(self) -> bool:
        """True while a group join is in flight."""

    def settle(self) -> None:
        """Drive the client once without taking records (lets a join in flight finish)."""

    def close(self) -> None: ...


class LogReader(Protocol):
    """Reads one offset range of one partition at a time (the retrain replay; with a
    labels topic it switches between the events and the labels partition)."""

    def start(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` on (forgetting any earlier range)."""

    def read(self, tp: TopicPartition, timeout_ms: int, max_records: int) -> list[Record]: ...

    def position(self, tp: TopicPartition) -> int | None: ...

    def log_start(self, tp: TopicPartition) -> int | None:
        """The partition's first offset still in the log (retention deletes below it);
        None when the broker did not answer."""

    def offset_for_time(self, tp: TopicPartition, timestamp_ms: int) -> int | None:
        """The first offset whose record time is ``timestamp_ms`` or later; None when no
        record is that late. A broker may answer an earlier offset (Tansu answers the
        log's start; the reader answers it too when the broker does not answer): the
        caller skips the records older than it wants."""

    def close(self) -> None: ...


class Sink(Protocol):
    """Where the daemon's outputs go (a batch producer, in this process or a child)."""

    def send(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None: ...

    def ship(self) -> None: ...

    def flush(self, timeout_s: float = 30.0) -> None: ...

    def close(self) -> None: ...
