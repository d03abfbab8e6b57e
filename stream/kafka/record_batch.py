"""A pure, fast encoder of Kafka record batches (message format v2) and Kafka's partitioner.

kafka-python's ``KafkaProducer.send`` spends ~20 µs of Python per record; building the
batch here and handing it to ``ProduceRequest`` costs a small fraction of that. The
bytes are exactly those kafka-python's ``DefaultRecordBatchBuilder`` (magic 2, no
compression, no producer id) writes for the same records and timestamps.

>>> partition_for_key(b"21", 7)
3
>>> murmur2(b"21")
-973932308

A record with a 6-byte key, a 200-byte value and no headers has a 213-byte body:
attributes, timestamp delta and offset delta (1 byte each), key length + key (1 + 6),
value length + value (2 + 200) and the header count (1). With its 2-byte length that is
215 bytes, after the batch's 61-byte header:

>>> len(encode_batch([(b"sensor", bytes(200), None, 1_700_000_000_000)]))
276
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from crc32c import crc32c

from stream.ports import Headers

#: (key, value, headers, timestamp in ms since the epoch: the record's CreateTime)
BatchRecord = tuple[bytes | None, bytes | None, Headers, int]

# Varints below this are looked up rather than computed: covers offset deltas of
# batches up to 16384 records and keys, values and records up to 16 kB.
_TABLE_SIZE = 1 << 14

# Everything after the CRC, before the records: attributes, last offset delta, first
# and max timestamp, producer id, producer epoch, base sequence, record count.
_TAIL_HEADER = struct.Struct(">hiqqqhii")
# Base offset, batch length (counted after this field), partition leader epoch,
# magic, CRC. kafka-python writes leader epoch 0 (the broker assigns it, and it is
# outside the CRC); it is matched here so the bytes are the builder's.
_HEAD = struct.Struct(">qiibI")
_LENGTH_FIELD_END = 12  # base offset (8) + batch length (4)
_MAGIC = 2
_LEADER_EPOCH = 0
_NO_PRODUCER_ID = -1
_NO_PRODUCER_EPOCH = -1
_NO_SEQUENCE = -1
_ATTRIBUTES = 0  # no compression, CreateTime, not transactional, not control

_NULL = b"\x01"  # zig-zag varint of -1: a null key, value or header value
_NO_HEADERS = b"\x00"


def _varint(value: int) -> bytes:
    """The zig-zag varint Kafka writes for ``value`` (a non-negative int in practice)."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append(0x80 | (zigzag & 0x7F))
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


_VARINTS: tuple[bytes, ...] = tuple(_varint(n) for n in range(_TABLE_SIZE))
_NO_RECORD_ATTRIBUTES = b"\x00"


def _encode_headers(headers: list[tuple[str, bytes]]) -> bytes:
    parts = [_varint(len(headers))]
    for name, value in headers:
        raw = name.encode("utf-8")
        parts += (_varint(len(raw)), raw, _varint(len(value)), value)
    return b"".join(parts)


def _encode_record(
    offset: int, delta: int, key: bytes | None, value: bytes | None, hdrs: Headers
) -> bytes:
    """One record with no size limits: the slow path behind the tables in ``encode_batch``."""
    body = b"".join(
        (
            _NO_RECORD_ATTRIBUTES,
            _varint(delta),
            _varint(offset),
            _NULL if key is None else _varint(len(key)) + key,
            _NULL if value is None else _varint(len(value)) + value,
            _encode_headers(hdrs) if hdrs else _NO_HEADERS,
        )
    )
    return _varint(len(body)) + body


def encode_batch(records: Sequence[BatchRecord]) -> bytes:
    """One Kafka v2 record batch (magic 2) holding ``records`` in order.

    Base offset 0, offset deltas 0..n-1, each record's own timestamp (CreateTime, as a
    delta from the first record's), no compression, not transactional, producer id -1,
    producer epoch -1, base sequence -1, CRC-32C over attributes..end. The partition
    leader epoch is written as 0, as kafka-python's builder does (brokers overwrite it
    and it is outside the CRC). ``None`` headers and ``[]`` encode alike (no headers).
    """
    count = len(records)
    if count == 0:
        raise ValueError("a record batch needs at least one record")
    first = records[0][3]
    latest = max(record[3] for record in records)
    parts = [
        _TAIL_HEADER.pack(
            _ATTRIBUTES,
            count - 1,
            first,
            latest,
            _NO_PRODUCER_ID,
            _NO_PRODUCER_EPOCH,
            _NO_SEQUENCE,
            count,
        )
    ]
    _append_records(records, first, parts)
    tail = b"".join(parts)
    head = _HEAD.pack(
        0, len(tail) + _HEAD.size - _LENGTH_FIELD_END, _LEADER_EPOCH, _MAGIC, crc32c(tail)
    )
    return head + tail


def _append_records(records: Sequence[BatchRecord], first: int, parts: list[bytes]) -> None:
    """Append every record's parts: the hot loop, inlined and table-driven for speed."""
    varints, attributes = _VARINTS, _NO_RECORD_ATTRIBUTES
    for offset, (key, value, headers, timestamp) in enumerate(records):
        delta = timestamp - first
        # Tables cover the usual sizes; an IndexError (a big value, offset or record, or
        # a clock that went back) sends just this record down the general path. Try is
        # free in Python 3.11.
        try:
            if delta < 0:  # a negative index would read the table from its end
                raise IndexError(delta)
            delta_v, offset_v = varints[delta], varints[offset]
            if key is None:
                key_len, key = _NULL, b""
            else:
                key_len = varints[len(key)]
            if value is None:
                value_len, value = _NULL, b""
            else:
                value_len = varints[len(value)]
            hdrs = _encode_headers(headers) if headers else _NO_HEADERS
            size = (
                1 + len(delta_v) + len(offset_v) + len(key_len) + len(key)
                + len(value_len) + len(value) + len(hdrs)
            )  # fmt: skip
            parts += (varints[size], attributes, delta_v, offset_v, key_len, key, value_len, value,
                      hdrs)  # fmt: skip
        except IndexError:
            key, value, headers, _ = records[offset]
            parts.append(_encode_record(offset, delta, key, value, headers))


# Unpackers of n little-endian 32-bit words for keys up to 252 bytes: one C call per key
# instead of a Python step per block. Constants are literals below (LOAD_CONST is the
# cheapest load), masked once per step since xor and the 32-bit mask commute.
_WORD_UNPACKERS = tuple(struct.Struct(f"<{n}I").unpack_from for n in range(64))


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the Java client's, seed 0x9747b28c), as a signed 32-bit int.

    kafka-python's ``murmur2`` returns the same bits as an unsigned int.
    """
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    # (struct caches the compiled format of longer keys itself.)
    blocks = _WORD_UNPACKERS[words](data) if words < 64 else struct.unpack_from(f"<{words}I", data)
    for k in blocks:
        k = (k * 0x5BD1E995) & 0xFFFFFFFF
        h = (h * 0x5BD1E995 ^ (k ^ k >> 24) * 0x5BD1E995) & 0xFFFFFFFF
    if length & 3:
        # Java xors the 1..3 trailing bytes in little-endian order, then multiplies.
        tail = int.from_bytes(data[words << 2 :], "little")
        h = ((h ^ tail) * 0x5BD1E995) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0x5BD1E995) & 0xFFFFFFFF
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key``.

    That is ``(murmur2(key) & 0x7fffffff) % partitions``.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
