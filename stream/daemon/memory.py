"""The daemon's ports (``stream/ports.py``) over records held in memory, and a logical clock.

``streamlearn evaluate`` runs the real loop (``Daemon``, ``PartitionTable``, ``Replayer``)
on these, offline: one consumer-group member that owns every partition, a retrain's
replay read from the same in-memory log, outputs kept in a list. The loop unit tests
(tests/stream/daemon/fakes.py) extend them with what a test scripts or checks.

Time is logical: :class:`LogicalClock` moves only when something is said to cost time
(a poll that finds nothing waits its timeout, a replay read, each record handed out
when ``record_cost_s`` is set), so intervals, deadlines and the idle stop are exact
and a run never sleeps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

from learners.origin import Origin
from stream.ports import Headers, Rebalance, Record, SourceRecord, TopicPartition


class LogicalClock:
    """Seconds that pass only when :meth:`advance` is called.

    >>> clock = LogicalClock(start=5.0)
    >>> clock.advance(0.5)
    >>> clock()
    5.5
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemorySource:
    """A group consumer over in-memory partition logs, the group's only member.

    ``poll`` first runs a pending rebalance (in the listener, as kafka-python does inside
    ``poll``), then answers up to ``max_records`` from each assigned, unpaused partition's
    position, each costing ``record_cost_s`` of clock time; a poll that finds nothing
    waits its whole timeout on the clock.
    """

    def __init__(
        self, clock: LogicalClock, max_records: int = 500, record_cost_s: float = 0.0
    ) -> None:
        self.clock = clock
        self.max_records = max_records
        self.record_cost_s = record_cost_s
        self.logs: dict[TopicPartition, list[SourceRecord]] = {}
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.committed_offsets: dict[TopicPartition, int] = {}
        self.listener: Rebalance | None = None
        self.subscribed: str | Sequence[str] | None = None
        self._rebalances: deque[tuple[str, list[TopicPartition]]] = deque()

    def append(self, records: Sequence[SourceRecord]) -> None:
        """Add records to their partitions' logs (offsets 0, 1, 2, ... in order)."""
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            log = self.logs.setdefault(tp, [])
            if record.offset != len(log):
                raise ValueError(f"{tp}: offset {record.offset} appended after {len(log)} records")
            log.append(record)

    def assign_on_next_poll(self, *tps: TopicPartition) -> None:
        self._rebalances.append(("assigned", list(tps)))

    def revoke_on_next_poll(self, *tps: TopicPartition) -> None:
        self._rebalances.append(("revoked", list(tps)))

    # Source

    def subscribe(self, topic: str | Sequence[str], listener: Rebalance) -> None:
        self.subscribed, self.listener = topic, listener

    def poll(self, timeout_ms: int) -> Mapping[TopicPartition, Sequence[Record]]:
        self._run_rebalances()
        return self._fetch(timeout_ms)

    def _run_rebalances(self) -> bool:
        """Run the rebalances asked for; True when there was one."""
        rebalanced = bool(self._rebalances)
        while self._rebalances:
            self._rebalance(*self._rebalances.popleft())
        return rebalanced

    def _fetch(self, timeout_ms: int) -> dict[TopicPartition, Sequence[Record]]:
        answer: dict[TopicPartition, Sequence[Record]] = {}
        for tp, position in self.positions.items():
            if not self._fetchable(tp):
                continue
            records = self.logs.get(tp, [])[position : position + self.max_records]
            if records:
                answer[tp] = records
                self.positions[tp] = records[-1].offset + 1
                self.clock.advance(len(records) * self.record_cost_s)
        if not answer:
            self.clock.advance(timeout_ms / 1000)
        return answer

    def _fetchable(self, tp: TopicPartition) -> bool:
        return tp not in self.paused

    def _rebalance(self, kind: str, tps: list[TopicPartition]) -> None:
        if self.listener is None:
            raise RuntimeError("a rebalance before subscribe")
        if kind == "assigned":
            for tp in tps:
                # Like auto_offset_reset=earliest: the committed offset, else the start.
                self.positions[tp] = self.committed_offsets.get(tp, 0)
            self.listener.assigned(tps)
        else:
            self.listener.revoked(tps)
            for tp in tps:
                self.positions.pop(tp, None)
                self.paused.discard(tp)

    def pause(self, tp: TopicPartition) -> None:
        self.paused.add(tp)

    def resume(self, tp: TopicPartition) -> None:
        self.paused.discard(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def highwater(self, tp: TopicPartition) -> int | None:
        return len(self.logs.get(tp, []))

    def position(self, tp: TopicPartition) -> int | None:
        return self.positions.get(tp)

    def log_start(self, tp: TopicPartition) -> int | None:
        return 0

    def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offsets.get(tp)

    def reset_position(self, tp: TopicPartition) -> str:
        self.seek(tp, 0)
        return "the start of the log (auto_offset_reset=earliest)"

    def origin(self, tp: TopicPartition) -> Origin:
        # One cluster, one incarnation of each topic: checkpoints made here belong here.
        return Origin(tp.topic, tp.partition, cluster_id="memory", topic_id=f"id-{tp.topic}")

    def commit(self, offsets: Mapping[TopicPartition, int], blocking: bool = True) -> None:
        self.committed_offsets.update(offsets)

    def reachable(self) -> bool:
        return True

    def joining(self) -> bool:
        return False

    def settle(self) -> None:
        pass

    def close(self) -> None:
        pass


class MemoryLogReader:
    """Reads a partition's log from ``logs`` (a :class:`MemorySource`'s), ``per_read``
    records a call, each call costing ``read_cost_s`` of clock time (a fetch's round trip)."""

    def __init__(
        self,
        logs: dict[TopicPartition, list[SourceRecord]],
        clock: LogicalClock,
        per_read: int = 100,
        read_cost_s: float = 0.02,
    ) -> None:
        self.logs = logs
        self.clock = clock
        self.per_read = per_read
        self.read_cost_s = read_cost_s
        self.positions: dict[TopicPartition, int] = {}

    def start(self, tp: TopicPartition, offset: int) -> None:
        self.positions = {tp: offset}

    def read(self, tp: TopicPartition, timeout_ms: int, max_records: int) -> list[Record]:
        position = self.positions[tp]
        records = self.logs.get(tp, [])[position : position + min(self.per_read, max_records)]
        if records:
            self.positions[tp] = records[-1].offset + 1
            self.clock.advance(self.read_cost_s)
        else:
            self.clock.advance(timeout_ms / 1000)
        return list(records)

    def position(self, tp: TopicPartition) -> int | None:
        return self.positions.get(tp)

    def log_start(self, tp: TopicPartition) -> int | None:
        log = self.logs.get(tp, [])
        return log[0].offset if log else 0

    def offset_for_time(self, tp: TopicPartition, timestamp_ms: int) -> int | None:
        for record in self.logs.get(tp, []):
            if record.timestamp >= timestamp_ms:
                return record.offset
        return None

    def close(self) -> None:
        pass


class MemorySink:
    """Keeps every output record it is sent, in order: ``(topic, value, key, headers)``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, Headers]] = []

    def send(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        self.sent.append((topic, value, key, headers))

    def ship(self) -> None:
        pass

    def flush(self, timeout_s: float = 30.0) -> None:
        pass

    def close(self) -> None:
        pass

    def values(self, topic: str) -> list[bytes]:
        """The values sent to ``topic``, in sending order."""
        return [value for sent_to, value, _, _ in self.sent if sent_to == topic]
