"""The fast fetched-batch reader against kafka-python's own, on random fetched buffers.

``test_fetched_records.py`` compares the two readers on hand-picked buffers; here
hypothesis builds them: several batches back to back, written by kafka-python's own
builders (``MemoryRecordsBuilder``), with random record counts and sizes, headers, null
keys and values, every codec, transactional and control batches, compaction gaps,
LogAppendTime, the old message formats (magic 0 and 1) and a truncated tail, read from a
random fetch offset in random chunks. Both readers must hand out the same records in the
same chunks with the same next fetch offset after each ``take``, or fail the same way.

About 360 examples run in a few seconds; ``FETCH_PROPERTY_EXAMPLES=5000`` searches deeper.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.memory_records import MemoryRecordsBuilder

from tests.stream.kafka.test_fetched_records import T0, assert_same, records_of

# Offsets of v2 batch header fields (kafka-python's DefaultRecordBase.HEADER_STRUCT).
LEADER_EPOCH_AT, CRC_AT, ATTRIBUTES_AT, LAST_DELTA_AT, MAX_TS_AT = 12, 17, 21, 23, 35
CONTROL, TRANSACTIONAL, LOG_APPEND_TIME = 0x20, 0x10, 0x08
# Offsets in an old-format (magic 1) message: CRC, then the CRC'd magic, attributes, time.
LEGACY_CRC_AT, LEGACY_MAGIC_AT, LEGACY_ATTRIBUTES_AT, LEGACY_TS_AT = 12, 16, 17, 18
EXAMPLES = int(os.environ.get("FETCH_PROPERTY_EXAMPLES", "300"))
CODECS_V2 = (0, 1, 2, 3, 4)  # none, gzip, snappy, lz4, zstd
CODECS_LEGACY = (0, 1, 2, 3)  # zstd came with message format v2
# Magic 0 with lz4 is the 0.8/0.9 brokers' broken framing (its builder needs xxhash).
CODECS_MAGIC_0 = (0, 1, 2)


@dataclass(frozen=True)
class BatchSpec:
    """What to build: records as (key, value, headers, timestamp delta, offsets skipped
    before it), and how the batch looks on the broker's side."""

    magic: int
    codec: int
    records: tuple[tuple[bytes | None, bytes | None, list, int, int], ...]
    transactional: bool = False
    control: bool = False
    log_append_time: bool = False
    trailing_gap: int = 0  # offsets compacted away after the last record (v2 keeps them)
    leader_epoch: int = 0


keys = st.one_of(st.none(), st.binary(max_size=24))
values = st.one_of(
    st.none(),
    st.binary(max_size=64),
    # Compressible values, some past a two-byte varint length (8191).
    st.builds(lambda byte, n: bytes([byte]) * n, st.integers(0, 255), st.integers(0, 9000)),
)
headers = st.lists(
    st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=16))), max_size=3
)
records_v2 = st.lists(
    st.tuples(keys, values, headers, st.integers(-5_000, 100_000), st.integers(0, 3)),
    min_size=1,
    max_size=12,
).map(tuple)
records_legacy = st.lists(
    st.tuples(keys, values, st.just([]), st.integers(0, 100_000), st.just(0)),
    min_size=1,
    max_size=6,
).map(tuple)

v2_batches = st.builds(
    BatchSpec,
    magic=st.just(2),
    codec=st.sampled_from(CODECS_V2),
    records=records_v2,
    transactional=st.booleans(),
    control=st.integers(0, 5).map(lambda n: n == 0),  # one batch in six
    log_append_time=st.booleans(),
    trailing_gap=st.sampled_from((0, 0, 0, 1, 4)),
    leader_epoch=st.integers(0, 7),
)
legacy_batches = st.one_of(
    st.builds(
        BatchSpec,
        magic=st.just(0),
        codec=st.sampled_from(CODECS_MAGIC_0),
        records=records_legacy,
    ),
    st.builds(
        BatchSpec,
        magic=st.just(1),
        codec=st.sampled_from(CODECS_LEGACY),
        records=records_legacy,
        log_append_time=st.booleans(),
    ),
)
batch_lists = st.lists(
    st.one_of(v2_batches, v2_batches, v2_batches, legacy_batches), min_size=1, max_size=5
)


def build_v2(spec: BatchSpec, base: int) -> tuple[bytes, int]:
    """A v2 batch from kafka-python's builder as a broker would serve it from ``base``;
    and the offset after it."""
    builder = MemoryRecordsBuilder(
        magic=2,
        compression_type=spec.codec,
        batch_size=1 << 30,
        transactional=spec.transactional,
        producer_id=4242 if spec.transactional else -1,
        producer_epoch=3 if spec.transactional else -1,
        base_sequence=17 if spec.transactional else -1,
    )
    for key, value, hdrs, ts_delta, skipped in spec.records:
        builder.skip(skipped)
        builder.append(T0 + ts_delta, key, value, hdrs)
    builder.close()
    data = bytearray(builder.buffer())
    struct.pack_into(">q", data, 0, base)  # the broker assigns the base offset...
    struct.pack_into(">i", data, LEADER_EPOCH_AT, spec.leader_epoch)  # ...and the epoch
    last_delta = struct.unpack_from(">i", data, LAST_DELTA_AT)[0] + spec.trailing_gap
    struct.pack_into(">i", data, LAST_DELTA_AT, last_delta)
    attributes = struct.unpack_from(">h", data, ATTRIBUTES_AT)[0]
    if spec.control:
        attributes |= CONTROL | TRANSACTIONAL
    if spec.log_append_time:
        attributes |= LOG_APPEND_TIME
        struct.pack_into(">q", data, MAX_TS_AT, T0 + 777_000)
    struct.pack_into(">h", data, ATTRIBUTES_AT, attributes)
    struct.pack_into(">I", data, CRC_AT, crc32c(bytes(data[ATTRIBUTES_AT:])))
    return bytes(data), base + last_delta + 1


def build_legacy(spec: BatchSpec, base: int) -> tuple[bytes, int]:
    """Old-format messages from ``base`` as a broker stores them: uncompressed, one
    message per offset; compressed, one wrapper whose offset is its last inner one (magic
    1 numbers the inner messages from 0, magic 0 absolutely)."""
    count = len(spec.records)
    relative = spec.codec and spec.magic == 1
    builder = MemoryRecordsBuilder(
        magic=spec.magic,
        compression_type=spec.codec,
        batch_size=1 << 30,
        offset=0 if relative else base,
    )
    for key, value, _, ts_delta, _ in spec.records:
        builder.append(T0 + ts_delta, key, value)
    builder.close()
    data = bytearray(builder.buffer())
    if spec.codec:
        struct.pack_into(">q", data, 0, base + count - 1)
        if spec.magic == 1 and spec.log_append_time:
            data[LEGACY_ATTRIBUTES_AT] |= LOG_APPEND_TIME
            struct.pack_into(">q", data, LEGACY_TS_AT, T0 + 888_000)
            crc = zlib.crc32(bytes(data[LEGACY_MAGIC_AT:]))
            struct.pack_into(">I", data, LEGACY_CRC_AT, crc)
    return bytes(data), base + count


def fetched(specs: list[BatchSpec], first_offset: int) -> tuple[bytes, int]:
    """The batches back to back from ``first_offset``, and the offset after the first
    batch on the wire (an uncompressed old-format message holds a single record)."""
    parts, ends, offset = [], [], first_offset
    for spec in specs:
        data, offset = (build_v2 if spec.magic == 2 else build_legacy)(spec, offset)
        parts.append(data)
        ends.append(offset)
    one_message = specs[0].magic < 2 and not specs[0].codec
    return b"".join(parts), first_offset + 1 if one_message else ends[0]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=batch_lists,
    first_offset=st.integers(0, 1 << 40),
    start=st.floats(0, 1, exclude_max=True),
    cut=st.one_of(st.just(None), st.floats(0, 1)),
    chunk=st.sampled_from((1, 2, 3, 7, 50, 500, None)),
)
def test_same_records_as_kafka_python(
    specs: list[BatchSpec], first_offset: int, start: float, cut: float | None, chunk: int | None
) -> None:
    buffer, first_end = fetched(specs, first_offset)
    if cut is not None:  # the broker cut the fetch at a byte limit, inside some batch
        buffer = buffer[: int(len(buffer) * cut)]
    # A broker answers from the batch that holds the fetch offset (compressed and v2
    # batches are served whole), so the fetch offset lies in the first batch.
    fetch_offset = first_offset + int((first_end - first_offset) * start)
    seen = assert_same(buffer, fetch_offset, chunk)
    assert all(record.offset >= fetch_offset for record in records_of(seen))


@settings(max_examples=max(EXAMPLES // 5, 20), deadline=None)
@given(specs=st.lists(v2_batches, min_size=1, max_size=4), chunk=st.sampled_from((1, 7, None)))
def test_whole_fetch_of_v2_batches_hands_out_every_record(
    specs: list[BatchSpec], chunk: int | None
) -> None:
    # A check of the generator as much as of the reader: every appended non-control
    # record comes out, in offset order.
    buffer, _ = fetched(specs, 0)
    seen = assert_same(buffer, 0, chunk)
    expected = sum(len(spec.records) for spec in specs if not spec.control)
    offsets = [record.offset for record in records_of(seen)]
    assert len(offsets) == expected
    assert offsets == sorted(set(offsets))
