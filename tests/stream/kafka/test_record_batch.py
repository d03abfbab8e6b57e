"""The record batch encoder and partitioner against kafka-python, the reference implementation.

Batches must be byte-for-byte those of kafka-python's ``DefaultRecordBatchBuilder`` and
read back through its ``MemoryRecords``/``DefaultRecordBatch``; hashes and partitions
must be those of its ``murmur2`` and ``DefaultPartitioner`` (and of the Java client).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from kafka.partitioner.default import DefaultPartitioner
from kafka.partitioner.default import murmur2 as reference_murmur2
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from stream.kafka.record_batch import BatchRecord, Headers, encode_batch, murmur2, partition_for_key

TIMESTAMP_MS = 1_700_000_123_456


Unstamped = tuple[bytes | None, bytes | None, Headers]


def stamped(records: list[Unstamped], timestamp_ms: int) -> list[BatchRecord]:
    return [(key, value, headers, timestamp_ms) for key, value, headers in records]


def reference_batch(records: list[BatchRecord]) -> bytes:
    """The batch kafka-python's own builder writes for ``records`` (as its producer does)."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 30,
    )
    for offset, (key, value, headers, timestamp_ms) in enumerate(records):
        # The builder takes [] for "no headers"; a None return means it refused a record.
        assert builder.append(offset, timestamp_ms, key, value, headers or []) is not None
    return bytes(builder.build())


def read_back(data: bytes) -> DefaultRecordBatch:
    """The only batch in ``data``, through kafka-python's reader."""
    records = MemoryRecords(data)
    batch = records.next_batch()
    assert isinstance(batch, DefaultRecordBatch)
    assert not records.has_next()
    return batch


def mixed_records(count: int, seed: int) -> list[Unstamped]:
    """Records of every shape: null/empty/short/long keys and values, with or without headers."""
    rng = random.Random(seed)
    records: list[Unstamped] = []
    for _ in range(count):
        key = rng.choice([None, b"", rng.randbytes(rng.randint(1, 40))])
        value = rng.choice([None, b"", rng.randbytes(rng.randint(1, 300)), rng.randbytes(9000)])
        headers = rng.choice(
            [None, [], [("trace", rng.randbytes(8))], [("a", b""), ("ünï", rng.randbytes(70))]]
        )
        records.append((key, value, headers))
    return records


SHAPES: dict[str, Callable[[], list[Unstamped]]] = {
    "one keyed record": lambda: [(b"sensor", b"x" * 200, None)],
    "null key and value": lambda: [(None, None, None)],
    "empty key and value": lambda: [(b"", b"", None)],
    "empty headers list": lambda: [(b"k", b"v", [])],
    "20 kB value": lambda: [(b"k", bytes(range(256)) * 80, None)],
    "200 kB value (3-byte varints)": lambda: [(None, b"\x07" * 200_000, None)],
    "several headers": lambda: [
        (b"k1", b"v1", [("trace-id", b"abc"), ("empty", b""), ("ünïcode", b"\x00\xff")]),
        (None, b"v2", [("big", b"h" * 20_000)]),
        (b"k3", None, [("x", b"y")] * 70),
    ],
    "5,000 mixed records": lambda: mixed_records(5_000, seed=5),
    "20,000 records (offset deltas past the tables)": lambda: [
        (b"key%05d" % i, b"value-%d" % i, None) for i in range(20_000)
    ],
}


@pytest.fixture(params=list(SHAPES), ids=list(SHAPES))
def records(request: pytest.FixtureRequest) -> list[Unstamped]:
    return SHAPES[request.param]()


@pytest.mark.parametrize("timestamp_ms", [TIMESTAMP_MS, 0])
def test_bytes_equal_kafka_pythons_builder(records: list[Unstamped], timestamp_ms: int) -> None:
    batch = stamped(records, timestamp_ms)
    assert encode_batch(batch) == reference_batch(batch)


def test_each_record_keeps_its_own_timestamp() -> None:
    # Later, equal, earlier than the first (a clock step back) and far later (past the
    # varint tables): all as kafka-python's builder writes them, and read back as given.
    times = [TIMESTAMP_MS, TIMESTAMP_MS + 3, TIMESTAMP_MS + 3, TIMESTAMP_MS - 50,
             TIMESTAMP_MS + 10_000_000, TIMESTAMP_MS + 1]  # fmt: skip
    batch: list[BatchRecord] = [(b"k%d" % i, b"v", None, t) for i, t in enumerate(times)]
    data = encode_batch(batch)
    assert data == reference_batch(batch)
    read = read_back(data)
    assert (read.first_timestamp, read.max_timestamp) == (TIMESTAMP_MS, max(times))
    assert [r.timestamp for r in read] == times


def test_reads_back_through_kafka_python(records: list[Unstamped]) -> None:
    batch = read_back(encode_batch(stamped(records, TIMESTAMP_MS)))

    assert batch.validate_crc()
    assert (batch.magic, batch.base_offset, batch.leader_epoch) == (2, 0, 0)
    assert (batch.compression_type, batch.timestamp_type) == (0, 0)  # none, CreateTime
    assert not batch.is_transactional
    assert not batch.is_control_batch
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (-1, -1, -1)
    assert batch.records_count == len(records)
    assert batch.last_offset_delta == len(records) - 1
    assert batch.first_timestamp == batch.max_timestamp == TIMESTAMP_MS

    read = list(batch)
    assert [r.offset for r in read] == list(range(len(records)))
    assert {r.timestamp for r in read} == {TIMESTAMP_MS}
    assert [(r.key, r.value, r.headers) for r in read] == [
        (key, value, headers or []) for key, value, headers in records
    ]


def test_crc_covers_the_records() -> None:
    data = bytearray(encode_batch([(b"k", b"value", None, TIMESTAMP_MS)]))
    data[-2] ^= 0x01  # a bit of the value
    assert not read_back(bytes(data)).validate_crc()


def test_batch_size_is_header_plus_records() -> None:
    # 61-byte header; the record: a 213-byte body (attributes, timestamp and offset deltas,
    # 1 + 6 key, 2 + 200 value, header count) after its 2-byte length varint.
    assert len(encode_batch([(b"sensor", bytes(200), None, TIMESTAMP_MS)])) == 61 + 2 + 213


def test_empty_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one record"):
        encode_batch([])


# ------------------------------------------------------------------ murmur2 and partitions


class OneTopicCluster:
    """Just the partition list of one topic: what DefaultPartitioner asks a cluster for."""

    def __init__(self, topic: str, partitions: int) -> None:
        self.topic = topic
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {self.topic}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


def random_keys(count: int, max_length: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randint(0, max_length)) for _ in range(count)]


def test_murmur2_matches_kafka_python() -> None:
    # kafka-python returns the bits unsigned; the Java client (and this module) signed.
    keys = random_keys(2_000, 40, seed=2) + random_keys(50, 600, seed=3)
    for key in keys:
        h = murmur2(key)
        assert -(2**31) <= h < 2**31
        assert h & 0xFFFFFFFF == reference_murmur2(key), key


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        # Vectors of the Java client's murmur2 (org.apache.kafka.common.utils.UtilsTest).
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_the_java_client(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_partition_for_key_matches_default_partitioner() -> None:
    rng = random.Random(7)
    partitioner = DefaultPartitioner()
    for key in random_keys(2_000, 40, seed=11):
        partitions = rng.randint(1, 50)
        cluster = OneTopicCluster("events", partitions)
        expected = partitioner.partition("events", key, key, None, None, cluster)
        assert partition_for_key(key, partitions) == expected


@pytest.mark.parametrize("partitions", [0, -1])
def test_partition_count_below_one_is_refused(partitions: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        partition_for_key(b"key", partitions)
