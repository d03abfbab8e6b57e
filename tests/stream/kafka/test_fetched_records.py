"""The fast fetched-batch reader against kafka-python's own ``PartitionRecords``.

For every kind of fetched buffer the two must hand out the same records, in the same
chunks, with the same next fetch offset after each ``take``, and fail the same way.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import pytest
from crc32c import crc32c
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError, UnsupportedCodecError
from kafka.protocol.consumer.offsets import IsolationLevel
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from stream.kafka.fetched_records import FastPartitionRecords, speed_up_fetches
from stream.kafka.record_batch import encode_batch

TP = TopicPartition("events", 3)
T0 = 1_700_000_000_000
ATTRIBUTES_AT = 21
LAST_OFFSET_DELTA_AT = 23
CONTROL = 0x20
LOG_APPEND_TIME = 0x08
READ_COMMITTED = IsolationLevel.READ_COMMITTED


def rebased(batch: bytes | bytearray, base_offset: int) -> bytes:
    """``batch`` with another base offset (outside the CRC, as the broker assigns it)."""
    return struct.pack(">q", base_offset) + bytes(batch[8:])


def with_attributes(batch: bytes, extra: int) -> bytes:
    """``batch`` with attribute bits added and its CRC made right again."""
    data = bytearray(batch)
    attributes = struct.unpack_from(">h", data, ATTRIBUTES_AT)[0] | extra
    struct.pack_into(">h", data, ATTRIBUTES_AT, attributes)
    struct.pack_into(">I", data, 17, crc32c(bytes(data[ATTRIBUTES_AT:])))
    return bytes(data)


def with_last_offset_delta(batch: bytes, last_delta: int) -> bytes:
    """``batch`` as compaction leaves it when its last records are removed: v2 keeps the
    batch's last offset delta (CRC made right again)."""
    data = bytearray(batch)
    struct.pack_into(">i", data, LAST_OFFSET_DELTA_AT, last_delta)
    return with_attributes(bytes(data), 0)


def plain(base: int, count: int, value_size: int = 40) -> bytes:
    records = [
        (str(base + i).encode(), bytes([65 + i % 26]) * value_size, None, T0 + i)
        for i in range(count)
    ]
    return rebased(encode_batch(records), base)


def built(base: int, records: list[tuple[Any, Any, Any]], compression: int = 0) -> bytes:
    """A batch written by kafka-python's builder: compression, headers, null keys and values."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=compression,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 30,
    )
    for delta, (key, value, headers) in enumerate(records):
        builder.append(delta, timestamp=T0 + 5 * delta, key=key, value=value, headers=headers)
    return rebased(builder.build(), base)


def legacy(base: int, count: int) -> bytes:
    builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 30)
    for i in range(count):
        builder.append(base + i, timestamp=T0 + i, key=b"k%d" % i, value=b"v%d" % i)
    return bytes(builder.build())


def takes(factory: Any, buffer: bytes, fetch_offset: int, chunk: int | None) -> list[Any]:
    """What a fetcher sees: (records, next fetch offset) per take until drained, or up to
    the error a take raised."""
    part = factory(fetch_offset, TP, MemoryRecords(buffer))
    seen: list[Any] = []
    for _ in range(10_000):
        if not part:
            return seen
        try:
            records = part.take(chunk)
        except Exception as exc:  # compared with kafka-python's
            seen.append(type(exc))
            return seen
        seen.append((records, part.next_fetch_offset))
    raise AssertionError("never drained")


def assert_same(buffer: bytes, fetch_offset: int = 0, chunk: int | None = 7) -> list[Any]:
    ours = takes(FastPartitionRecords, buffer, fetch_offset, chunk)
    theirs = takes(Fetcher.PartitionRecords, buffer, fetch_offset, chunk)
    assert ours == theirs
    return ours


def records_of(seen: list[Any]) -> list[Any]:
    return [record for entry in seen if isinstance(entry, tuple) for record in entry[0]]


@pytest.mark.parametrize("chunk", [1, 7, 500, None])
def test_plain_batches_in_chunks(chunk: int | None) -> None:
    buffer = plain(0, 30) + plain(30, 1) + plain(31, 45)
    seen = assert_same(buffer, chunk=chunk)
    assert [r.offset for r in records_of(seen)] == list(range(76))


@pytest.mark.parametrize("fetch_offset", [1, 29, 30, 50, 75, 76])
def test_fetch_from_inside_a_batch(fetch_offset: int) -> None:
    buffer = plain(0, 30) + plain(30, 46)
    seen = assert_same(buffer, fetch_offset)
    assert [r.offset for r in records_of(seen)] == list(range(fetch_offset, 76))


def test_long_varints_big_values_and_deltas() -> None:
    # Offset deltas past 8191 and value sizes past 8191 take three varint bytes.
    many = plain(0, 9000, value_size=3)
    big = rebased(encode_batch([(None, b"x" * 70_000, None, T0), (b"", b"", None, T0)]), 9000)
    seen = assert_same(many + big, chunk=4000)
    assert len(records_of(seen)) == 9002


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4], ids=["none", "gzip", "snappy", "lz4", "zstd"])
def test_headers_null_keys_and_values_each_codec(codec: int) -> None:
    records = [
        (None, b"v0", [("trace", b"abc"), ("ünïcode", None)]),
        (b"k1", None, []),
        (b"", b"", [("empty", b"")]),
        (b"k3", b"x" * 5000, []),
    ]
    seen = assert_same(built(10, records) + built(14, records, compression=codec), 11)
    assert [r.offset for r in records_of(seen)] == list(range(11, 18))


def test_control_batches_are_skipped_but_passed() -> None:
    marker = with_attributes(plain(5, 1), CONTROL)
    seen = assert_same(plain(0, 5) + marker + plain(6, 3))
    assert [r.offset for r in records_of(seen)] == [0, 1, 2, 3, 4, 6, 7, 8]
    assert assert_same(plain(0, 5) + marker, chunk=None)[-1][1] == 6


def test_batch_whose_last_records_were_compacted_away() -> None:
    # Found by the property test: a take that empties such a batch stops at its last
    # record (we jumped past the gap at once); the next take moves past it.
    gapped = with_last_offset_delta(plain(0, 3), 5)  # offsets 3..5 compacted away
    assert [entry[1] for entry in assert_same(gapped, chunk=3)] == [3, 6]
    seen = assert_same(gapped + plain(6, 2), chunk=3)
    assert [entry[1] for entry in seen] == [3, 8]


def test_log_append_time() -> None:
    seen = assert_same(with_attributes(plain(0, 4), LOG_APPEND_TIME))
    assert {(r.timestamp, r.timestamp_type) for r in records_of(seen)} == {(T0 + 3, 1)}


def test_old_message_format() -> None:
    assert_same(legacy(0, 6) + plain(6, 3), fetch_offset=2)
    assert len(legacy(9, 1)) < 61  # shorter than a v2 batch header: still whole
    seen = assert_same(plain(0, 9) + legacy(9, 1))
    assert [r.offset for r in records_of(seen)] == list(range(10))


@pytest.mark.parametrize("length", [-5, 0, 13, 30])
def test_impossible_batch_lengths(length: int) -> None:
    batch = bytearray(plain(0, 2))
    struct.pack_into(">i", batch, 8, length)
    with pytest.raises(CorruptRecordError):
        FastPartitionRecords(0, TP, MemoryRecords(bytes(batch))).take()


def test_partial_trailing_batch_is_left_for_the_next_fetch() -> None:
    whole = plain(0, 10) + plain(10, 10)
    seen = assert_same(whole[:-17])
    assert seen[-1][1] == 10


def test_corrupt_batch_after_good_records_fails_on_the_next_take() -> None:
    bad = bytearray(plain(10, 5))
    bad[-3] ^= 0xFF
    seen = assert_same(plain(0, 10) + bytes(bad), chunk=None)
    assert CorruptRecordError in seen


def test_record_length_that_does_not_add_up() -> None:
    batch = bytearray(plain(0, 2, value_size=10))
    batch[61] += 2  # the first record's length varint (one byte for short records)
    with pytest.raises(CorruptRecordError):
        FastPartitionRecords(0, TP, MemoryRecords(with_attributes(bytes(batch), 0))).take()


def test_unknown_codec() -> None:
    unknown = with_attributes(plain(0, 3), 5)
    with pytest.raises(UnsupportedCodecError):
        FastPartitionRecords(0, TP, MemoryRecords(unknown)).take()


class Aborted(NamedTuple):
    producer_id: int
    first_offset: int


def transactional(base: int, count: int, producer_id: int = 7, control: bool = False) -> bytes:
    """A transactional producer's batch, or its commit marker (a control batch)."""
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=True, producer_id=producer_id,
        producer_epoch=0, base_sequence=base, batch_size=1 << 30,
    )  # fmt: skip
    for delta in range(count):
        key = struct.pack(">hh", 0, 1) if control else b"k%d" % delta  # version 0, COMMIT
        builder.append(delta, timestamp=T0 + delta, key=key, value=b"v", headers=[])
    batch = rebased(builder.build(), base)
    return with_attributes(batch, CONTROL) if control else batch


def test_read_committed_without_aborted_transactions_reads_as_kafka_python() -> None:
    # What a read_committed fetch brings when no transaction in it was aborted: committed
    # transactional batches, their markers and plain batches; the fast reader serves it.
    buffer = plain(0, 3) + transactional(3, 4) + transactional(7, 1, control=True) + plain(8, 2)

    def theirs(*args: Any, **options: Any) -> Any:
        options.update(isolation_level=READ_COMMITTED, aborted_transactions=[])
        return Fetcher.PartitionRecords(*args, **options)

    ours = takes(FastPartitionRecords, buffer, 0, 3)
    assert ours == takes(theirs, buffer, 0, 3)
    assert [r.offset for r in records_of(ours)] == [0, 1, 2, 3, 4, 5, 6, 8, 9]


def test_installed_on_a_consumer_only_for_plain_reads() -> None:
    consumer = KafkaConsumer(bootstrap_servers="127.0.0.1:1", api_version=(2, 5))
    try:
        factory = speed_up_fetches(consumer)._fetcher.PartitionRecords
        assert isinstance(factory(0, TP, MemoryRecords(plain(0, 1))), FastPartitionRecords)
        committed = factory(
            0,
            TP,
            MemoryRecords(plain(0, 1)),
            isolation_level=READ_COMMITTED,
            aborted_transactions=[],
        )
        assert isinstance(committed, FastPartitionRecords)
        aborted = Aborted(producer_id=7, first_offset=0)  # as a fetch response lists it
        to_filter = factory(
            0,
            TP,
            MemoryRecords(plain(0, 1)),
            isolation_level=READ_COMMITTED,
            aborted_transactions=[aborted],
        )
        deserialized = factory(0, TP, MemoryRecords(plain(0, 1)), value_deserializer=bytes)
        for part in (to_filter, deserialized):
            assert isinstance(part, Fetcher.PartitionRecords)
    finally:
        consumer.close()
