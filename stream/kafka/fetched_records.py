# Over 400 lines on purpose: one hot loop and the framing checks it relies on, read together.
"""Fast reading of fetched record batches, plugged into kafka-python's consumer.

kafka-python turns fetched bytes into records one generator step at a time: a batch
object, a record object, two deserializer calls and a 13-field tuple per record, about
7-9 µs of Python each; a logistic regression learns an event in 15. This module reads a
whole record batch (message format v2) in one tight loop instead, about 2 µs per record,
and returns the very same :class:`ConsumerRecord` tuples.

Only the parsing changes. Group membership, positions, fetch sessions, out-of-range resets
and leader changes stay kafka-python's: :func:`speed_up_fetches` replaces the consumer's
``PartitionRecords`` factory, the one object that turns a partition's fetched bytes into
records, and keeps kafka-python's own for what this module does not read (deserializers,
and under ``read_committed`` a fetch that names aborted transactions to drop; without
any, both readers return the same records: control batches are skipped by both).
Batches in the old formats (magic 0 and 1) are read by kafka-python.

>>> from stream.kafka.record_batch import encode_batch
>>> data = encode_batch([(b"k", b"v1", None, 1000), (None, b"v2", [("h", b"x")], 1001)])
>>> batch = next(read_batches(data, "events", 0, fetch_offset=1))
>>> [(r.offset, r.key, r.value, r.headers, r.timestamp) for r in batch.records]
[(1, None, b'v2', [('h', b'x')], 1001)]
>>> batch.next_offset
2
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, NamedTuple

import kafka.errors as kafka_errors
from crc32c import crc32c
from kafka import KafkaConsumer, codec
from kafka.consumer.fetcher import ConsumerRecord, Fetcher
from kafka.protocol.consumer.offsets import IsolationLevel
from kafka.record.memory_records import MemoryRecords

# Base offset, length, leader epoch, magic, CRC, attributes, last offset delta, first
# and max timestamp, producer id, producer epoch, base sequence, record count.
_HEADER = struct.Struct(">qiibIhiqqqhii")
_LOG_OVERHEAD = 12  # base offset and length: what a batch's length does not count
_MAGIC_AT = 16
_MIN_LEGACY_LENGTH = 14  # a v0 message's CRC, magic, attributes and two null lengths
_CRC_FROM = 21  # the CRC covers everything from the attributes on
_COMPRESSION_MASK = 0x07
_LOG_APPEND_TIME = 0x08
_CONTROL = 0x20
#: Codec id -> (name, is it installed, decompress), as kafka-python has them.
_CODECS = {
    1: ("gzip", codec.has_gzip, codec.gzip_decode),
    2: ("snappy", codec.has_snappy, codec.snappy_decode),
    3: ("lz4", codec.has_lz4, codec.lz4_decode),
    4: ("zstd", codec.has_zstd, codec.zstd_decode),
}
_new = tuple.__new__


class FetchedBatch(NamedTuple):
    """The records of one batch at or after the fetch offset, and where the next batch starts."""

    records: list[ConsumerRecord]
    next_offset: int
    leader_epoch: int


def read_batches(
    buffer: bytes, topic: str, partition: int, fetch_offset: int, check_crcs: bool = True
) -> Iterator[FetchedBatch]:
    """The batches in ``buffer`` (a fetch response's records), one at a time.

    A trailing partial batch (the broker cuts fetches at a byte limit) is left out;
    a batch that fails its CRC or does not add up raises ``CorruptRecordError``.
    """
    view = memoryview(buffer)
    pos, size = 0, len(buffer)
    epoch = -1  # old-format records carry the epoch of the last v2 batch, as in kafka-python
    while pos + _LOG_OVERHEAD <= size:
        length = int.from_bytes(buffer[pos + 8 : pos + 12], "big", signed=True)
        end = pos + _LOG_OVERHEAD + length
        if end > size:
            return
        magic = buffer[pos + _MAGIC_AT] if length >= _MIN_LEGACY_LENGTH else -1
        if magic == 2 and length >= _HEADER.size - _LOG_OVERHEAD:
            batch = _batch(buffer, view, pos, end, topic, partition, fetch_offset, check_crcs)
            epoch = batch.leader_epoch
            yield batch
        elif magic in (0, 1):
            yield _legacy_batch(buffer[pos:end], topic, partition, fetch_offset, epoch)
        else:
            raise kafka_errors.CorruptRecordError(
                f"{topic}[{partition}]: a batch of length {length} and magic {magic} at byte {pos}"
            )
        pos = end


def _batch(
    buffer: bytes,
    view: memoryview,
    pos: int,
    end: int,
    topic: str,
    partition: int,
    fetch_offset: int,
    check_crcs: bool,
) -> FetchedBatch:
    """The v2 batch at ``buffer[pos:end]``: checked, decompressed if need be, and read."""
    (base, _, epoch, _, crc, attributes, last_delta, first_ts, max_ts, _, _, _, count) = (
        _HEADER.unpack_from(buffer, pos)
    )
    if check_crcs and crc32c(view[pos + _CRC_FROM : end]) != crc:
        raise kafka_errors.CorruptRecordError(
            f"record batch at offset {base} of {topic}[{partition}] failed its CRC check"
        )
    next_offset = base + last_delta + 1
    if attributes & _CONTROL or next_offset <= fetch_offset:
        return FetchedBatch([], next_offset, epoch)  # transaction markers, or all behind us
    data, start, stop = buffer, pos + _HEADER.size, end
    codec_id = attributes & _COMPRESSION_MASK
    if codec_id:
        data = _decompress(codec_id, view[start:end], base)
        start, stop = 0, len(data)
    stamp = (max_ts, 1) if attributes & _LOG_APPEND_TIME else (first_ts, 0)
    try:
        records, read_to = _records(data, start, count, base, stamp, topic, partition, epoch)
    except (IndexError, ValueError) as exc:
        raise kafka_errors.CorruptRecordError(
            f"record batch at offset {base} of {topic}[{partition}] is malformed: {exc!r}"
        ) from exc
    if read_to != stop:
        raise kafka_errors.CorruptRecordError(
            f"record batch at offset {base} of {topic}[{partition}] has bytes after its records"
        )
    if fetch_offset > base:
        records = [record for record in records if record.offset >= fetch_offset]
    return FetchedBatch(records, next_offset, epoch)


def _decompress(codec_id: int, compressed: memoryview, base: int) -> bytes:
    name, installed, decompress = _CODECS.get(codec_id, (str(codec_id), lambda: False, None))
    if decompress is None or not installed():
        raise kafka_errors.UnsupportedCodecError(
            f"record batch at offset {base} is compressed with {name}, which is not installed"
        )
    return bytes(decompress(compressed.tobytes()))


def _raw_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` (still zig-zag encoded), and the position after it."""
    byte = data[pos]
    raw, shift = byte & 0x7F, 7
    while byte & 0x80:
        pos += 1
        byte = data[pos]
        raw |= (byte & 0x7F) << shift
        shift += 7
    return raw, pos + 1


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at ``pos``, and the position after it."""
    raw, pos = _raw_varint(data, pos)
    return (raw >> 1) ^ -(raw & 1), pos


def _records(
    data: bytes,
    pos: int,
    count: int,
    base: int,
    stamp: tuple[int, int],
    topic: str,
    partition: int,
    epoch: int,
) -> tuple[list[ConsumerRecord], int]:
    """``count`` records from ``pos``, and the position after them (the hot loop)."""
    timestamp, timestamp_type = stamp
    log_append = timestamp_type == 1
    records: list[ConsumerRecord] = []
    append = records.append
    for _ in range(count):
        # Lengths and deltas mostly take one or two bytes: read those inline (a call
        # per varint costs as much as the rest of the record).
        byte = data[pos]
        if byte < 0x80:
            raw, pos = byte, pos + 1
        elif data[pos + 1] < 0x80:
            raw, pos = (byte & 0x7F) | (data[pos + 1] << 7), pos + 2
        else:
            raw, pos = _raw_varint(data, pos)
        record_end = pos + (raw >> 1)
        byte = data[pos + 1]  # after the record's attributes byte, unused by Kafka so far
        if byte < 0x80:
            raw, pos = byte, pos + 2
        else:
            raw, pos = _raw_varint(data, pos + 1)
        ts_delta = (raw >> 1) ^ -(raw & 1)
        byte = data[pos]
        if byte < 0x80:
            raw, pos = byte, pos + 1
        elif data[pos + 1] < 0x80:
            raw, pos = (byte & 0x7F) | (data[pos + 1] << 7), pos + 2
        else:
            raw, pos = _raw_varint(data, pos)
        offset_delta = raw >> 1
        byte = data[pos]
        if byte < 0x80:
            raw, pos = byte, pos + 1
        else:
            raw, pos = _raw_varint(data, pos)
        key = None
        key_size = (raw >> 1) ^ -(raw & 1)
        if key_size >= 0:
            key = data[pos : pos + key_size]
            pos += key_size
        byte = data[pos]
        if byte < 0x80:
            raw, pos = byte, pos + 1
        elif data[pos + 1] < 0x80:
            raw, pos = (byte & 0x7F) | (data[pos + 1] << 7), pos + 2
        else:
            raw, pos = _raw_varint(data, pos)
        value = None
        value_size = (raw >> 1) ^ -(raw & 1)
        if value_size >= 0:
            value = data[pos : pos + value_size]
            pos += value_size
        headers: list[tuple[str, bytes | None]] = []
        header_size = -1
        if data[pos] == 0:
            pos += 1
        else:
            headers, header_size, pos = _headers(data, pos)
        if pos != record_end:
            raise ValueError(f"record at offset {base + offset_delta}: its length does not add up")
        append(
            _new(
                ConsumerRecord,
                (
                    topic,
                    partition,
                    epoch,
                    base + offset_delta,
                    timestamp if log_append else timestamp + ts_delta,
                    timestamp_type,
                    key,
                    value,
                    headers,
                    None,  # v2 records have no checksum of their own
                    key_size,
                    value_size,
                    header_size,
                ),
            )
        )
    return records, pos


def _headers(data: bytes, pos: int) -> tuple[list[tuple[str, bytes | None]], int, int]:
    """A record's headers, their size in bytes as kafka-python counts it, and the end."""
    count, pos = _varint(data, pos)
    if count < 0:
        raise ValueError(f"negative header count {count}")
    headers: list[tuple[str, bytes | None]] = []
    size = 0
    for _ in range(count):
        name_size, pos = _varint(data, pos)
        if name_size < 0:
            raise ValueError(f"negative header name size {name_size}")
        name = bytes(data[pos : pos + name_size]).decode("utf-8")
        pos += name_size
        value_size, pos = _varint(data, pos)
        value = None
        if value_size >= 0:
            value = data[pos : pos + value_size]
            pos += value_size
        headers.append((name, value))
        size += name_size + max(value_size, 0)
    return headers, size, pos


def _legacy_batch(
    buffer: bytes, topic: str, partition: int, fetch_offset: int, epoch: int
) -> FetchedBatch:
    """A message set in the old formats (magic 0 or 1), read by kafka-python."""
    batch = MemoryRecords(buffer).next_batch()
    records: list[ConsumerRecord] = []
    next_offset = fetch_offset
    for record in batch:
        next_offset = max(next_offset, record.offset + 1)
        if record.offset >= fetch_offset:
            key, value = record.key, record.value
            records.append(
                ConsumerRecord(
                    topic,
                    partition,
                    epoch,
                    record.offset,
                    record.timestamp,
                    record.timestamp_type,
                    key,
                    value,
                    [],
                    record.checksum,
                    -1 if key is None else len(key),
                    -1 if value is None else len(value),
                    -1,
                )
            )
    return FetchedBatch(records, next_offset, epoch)


class FastPartitionRecords:
    """Stands in for kafka-python's ``Fetcher.PartitionRecords``: the records of one
    partition's fetch, handed out ``take(n)`` at a time, read a batch at a time."""

    def __init__(
        self,
        fetch_offset: int,
        tp: Any,
        records: MemoryRecords,
        check_crcs: bool = True,
        metric_aggregator: Any = None,
        on_drain: Any = None,
    ) -> None:
        self.fetch_offset = fetch_offset
        self.topic_partition = tp
        self.next_fetch_offset = fetch_offset
        self.leader_epoch = -1
        self.bytes_read = 0
        self.records_read = 0
        self.metric_aggregator = metric_aggregator
        self.on_drain = on_drain
        buffer = records._buffer
        self._size = len(buffer)
        raw = buffer if isinstance(buffer, bytes) else bytes(buffer)
        self._batches: Iterator[FetchedBatch] | None = read_batches(
            raw, tp.topic, tp.partition, fetch_offset, check_crcs
        )
        self._ready: list[ConsumerRecord] = []
        self._batch_end = fetch_offset  # where the batch ``_ready`` came from ends
        self._error: Exception | None = None

    def __bool__(self) -> bool:
        return self._batches is not None

    def take(self, n: int | None = None) -> list[ConsumerRecord]:
        """Up to ``n`` records in order; an unreadable batch raises, after the records
        before it were handed out (as kafka-python does)."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        taken: list[ConsumerRecord] = []
        while self._batches is not None and (n is None or len(taken) < n):
            if not self._ready and not self._next_batch(taken):
                break
            want = len(self._ready) if n is None else n - len(taken)
            taken += self._ready[:want]
            del self._ready[:want]
        if taken:
            self.records_read += len(taken)
            self.next_fetch_offset = taken[-1].offset + 1
            if self._batches is None:
                # Drained during this take: past the last batch's end, compacted-away
                # offsets included. A take that merely empties a batch stops at its
                # last record, as kafka-python does; the next take moves on.
                self.next_fetch_offset = max(self.next_fetch_offset, self._batch_end)
        return taken

    def _next_batch(self, taken: list[ConsumerRecord]) -> bool:
        """Read the next batch into ``_ready``; False (and drained) at the end."""
        assert self._batches is not None
        try:
            batch = next(self._batches)
        except StopIteration:
            self.next_fetch_offset = max(self.next_fetch_offset, self._batch_end)
            self.drain()
            return False
        except Exception as exc:
            if not taken:
                raise
            self._error = exc
            return False
        self._ready, self._batch_end, self.leader_epoch = batch
        if not batch.records:
            self.next_fetch_offset = max(self.next_fetch_offset, batch.next_offset)
        return True

    def drain(self) -> None:
        if self._batches is not None:
            self._batches = None
            self._ready = []
            self.bytes_read = self._size
            if self.metric_aggregator:
                tp, read = self.topic_partition, self.records_read
                self.metric_aggregator.record(tp, self.bytes_read, read)
            if self.on_drain is not None:
                self.on_drain(self)


def _partition_records_factory(original: Any) -> Any:
    def partition_records(fetch_offset: int, tp: Any, records: Any, **options: Any) -> Any:
        # read_committed needs kafka-python's reader only when the fetch names aborted
        # transactions to drop: otherwise both skip control batches and nothing else.
        plain = (
            options.get("key_deserializer") is None
            and options.get("value_deserializer") is None
            and (
                options.get("isolation_level", IsolationLevel.READ_UNCOMMITTED)
                == IsolationLevel.READ_UNCOMMITTED
                or not options.get("aborted_transactions")
            )
        )
        if not plain:
            return original(fetch_offset, tp, records, **options)
        return FastPartitionRecords(
            fetch_offset,
            tp,
            records,
            check_crcs=options.get("check_crcs", True),
            metric_aggregator=options.get("metric_aggregator"),
            on_drain=options.get("on_drain"),
        )

    return partition_records


def speed_up_fetches(consumer: KafkaConsumer) -> KafkaConsumer:
    """Make ``consumer`` read fetched batches with this module; returns it.

    Relies on kafka-python's fetcher building records through ``self.PartitionRecords``
    (kafka-python 3.0; ``tests/stream/kafka/test_fetched_records.py`` checks it still does).
    """
    fetcher = consumer._fetcher
    if not isinstance(fetcher, Fetcher) or not hasattr(Fetcher, "PartitionRecords"):
        raise RuntimeError("kafka-python's fetcher changed: cannot plug the fast reader in")
    fetcher.PartitionRecords = _partition_records_factory(Fetcher.PartitionRecords)
    return consumer
