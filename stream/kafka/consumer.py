"""kafka-python's consumers behind the daemon's own protocols (:mod:`stream.ports`).

:class:`GroupSource` is the group member that feeds the loop; :class:`RangeReader` reads
offset ranges for the retrain replay. Both hand out kafka-python's ``ConsumerRecord``
as they come (it already is a :class:`~stream.ports.Record`): converting a million
records a second would cost more than the whole decode.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka import TopicPartition as KafkaPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import MemberState, OffsetAndMetadata

from learners.origin import Origin
from stream.exceptions import BrokerUnavailable, CommitRefused
from stream.kafka.identity import current_origin
from stream.ports import Rebalance, Record, TopicPartition

log = logging.getLogger(__name__)

__all__ = ["GroupSource", "RangeReader"]


def _theirs(tp: TopicPartition) -> KafkaPartition:
    return KafkaPartition(tp.topic, tp.partition)


def _ours(partitions: Any) -> list[TopicPartition]:
    return [TopicPartition(tp.topic, tp.partition) for tp in partitions]


class GroupSource:
    """A :class:`~stream.ports.Source` on a subscribed :class:`KafkaConsumer`."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer
        self._position_unknown = False  # warned once that positions cannot be read

    def subscribe(self, topic: str | Sequence[str], listener: Rebalance) -> None:
        topics = [topic] if isinstance(topic, str) else list(topic)
        self.consumer.subscribe(topics, listener=_Listener(listener))

    def poll(self, timeout_ms: int) -> Mapping[TopicPartition, Sequence[Record]]:
        release_parked(self.consumer)
        # kafka-python's TopicPartition is a namedtuple equal to ours: no copy needed.
        return cast(
            Mapping[TopicPartition, Sequence[Record]], self.consumer.poll(timeout_ms=timeout_ms)
        )

    def pause(self, tp: TopicPartition) -> None:
        self.consumer.pause(_theirs(tp))

    def resume(self, tp: TopicPartition) -> None:
        self.consumer.resume(_theirs(tp))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.consumer.seek(_theirs(tp), offset)

    def highwater(self, tp: TopicPartition) -> int | None:
        return cast("int | None", self.consumer.highwater(_theirs(tp)))

    def position(self, tp: TopicPartition) -> int | None:
        # KafkaConsumer.position() waits for a reset or a validation to finish: the
        # subscription state answers at once (kafka-python has no public call for it).
        try:
            state = self.consumer._subscription.assignment.get(_theirs(tp))
            position = None if state is None else state.position
        except Exception:  # an internal API changed: unknown, as before a fetch
            if not self._position_unknown:
                self._position_unknown = True
                log.warning("cannot read the position of %s", tp, exc_info=True)
            return None
        return None if position is None else int(position.offset)

    def log_start(self, tp: TopicPartition) -> int | None:
        try:
            return int(self.consumer.beginning_offsets([_theirs(tp)])[_theirs(tp)])
        except KafkaError:
            return None

    def committed(self, tp: TopicPartition) -> int | None:
        try:
            offset = self.consumer.committed(_theirs(tp))
        except KafkaError:
            return None
        return None if offset is None else int(offset)

    def reset_position(self, tp: TopicPartition) -> str:
        if self.consumer.config.get("auto_offset_reset") == "latest":
            self.consumer.seek_to_end(_theirs(tp))
            return "the end of the log (auto_offset_reset=latest)"
        self.consumer.seek_to_beginning(_theirs(tp))
        return "the start of the log (auto_offset_reset=earliest)"

    def origin(self, tp: TopicPartition) -> Origin:
        return current_origin(self.consumer, tp)

    def commit(self, offsets: Mapping[TopicPartition, int], blocking: bool = True) -> None:
        theirs = {_theirs(tp): OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()}
        if not blocking:
            # Inside a rebalance listener (kafka-python's IO thread) nothing may block.
            self.consumer.commit_async(theirs)
            return
        try:
            self.consumer.commit(theirs)
        except CommitFailedError as exc:
            raise CommitRefused(str(exc)) from exc
        except KafkaError as exc:
            raise BrokerUnavailable(str(exc)) from exc

    def reachable(self) -> bool:
        """A connection to some broker is up and, as a member, heartbeats are answered
        (kafka-python has no public call for either)."""
        try:
            client = self.consumer._client
            connected = bool(self.consumer.bootstrap_connected()) or any(
                client.connected(broker.node_id) for broker in client.cluster.brokers()
            )
            return connected and not self._heartbeats_lapsed()
        except Exception:  # an internal API changed: never let health checks kill the daemon
            # ...but say so: a check that always answers "reachable" hides every outage.
            log.warning("cannot tell whether the broker is reachable", exc_info=True)
            return True

    def _heartbeats_lapsed(self) -> bool:
        # A frozen or hung broker keeps its TCP connections open, so only its silence tells.
        coordinator = self.consumer._coordinator
        if coordinator.state != MemberState.STABLE:
            return False
        return bool(coordinator.heartbeat.session_timeout_expired())

    def joining(self) -> bool:
        state = getattr(getattr(self.consumer, "_coordinator", None), "state", None)
        return bool(state == MemberState.REBALANCING)

    def settle(self) -> None:
        self.consumer.poll(timeout_ms=100, max_records=1)

    def close(self) -> None:
        # Leaving the group revokes the partitions; the daemon commits what it checkpointed.
        self.consumer.close(autocommit=False)


def release_parked(consumer: KafkaConsumer) -> None:
    """Let kafka-python hand back the records it parked for a partition paused mid-batch.

    kafka-python 3.0.12 parks the rest of a fetched batch when its partition is paused,
    and takes it back once resumed only if no batch is in line; but a batch read to its
    end stays in line (empty, not None) until another fetch completes. With nothing else
    to fetch the resumed partition then never gets its records, nor is fetched again (a
    partition with parked records is not). Clearing the empty batch lets the next poll
    take the parked one back."""
    fetcher = consumer._fetcher
    current = fetcher._next_partition_records
    if current is not None and not current:
        fetcher._next_partition_records = None


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base
    def __init__(self, listener: Rebalance) -> None:
        self.listener = listener

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.listener.revoked(_ours(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.listener.assigned(_ours(assigned))


class RangeReader:
    """A :class:`~stream.ports.LogReader` on a group-less :class:`KafkaConsumer`."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer

    def start(self, tp: TopicPartition, offset: int) -> None:
        self.consumer.assign([_theirs(tp)])
        self.consumer.seek(_theirs(tp), offset)

    def read(self, tp: TopicPartition, timeout_ms: int, max_records: int) -> list[Record]:
        batches = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return list(batches.get(_theirs(tp), []))

    def position(self, tp: TopicPartition) -> int | None:
        try:
            return int(self.consumer.position(_theirs(tp)))
        except KafkaError:
            return None

    def log_start(self, tp: TopicPartition) -> int | None:
        try:
            return int(self.consumer.beginning_offsets([_theirs(tp)])[_theirs(tp)])
        except KafkaError:
            return None

    def offset_for_time(self, tp: TopicPartition, timestamp_ms: int) -> int | None:
        try:
            found = self.consumer.offsets_for_times({_theirs(tp): timestamp_ms})[_theirs(tp)]
        except KafkaError:
            return self.log_start(tp) or 0  # earlier is safe: the caller skips what it reads
        return None if found is None else int(found.offset)

    def close(self) -> None:
        self.consumer.close()
