"""The codec's key ring (rotation) and the offset a refusal may carry for a rebuild."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any

import pytest
import river
from crc32c import crc32c

from learners.checkpoint import decode_checkpoint, encode_checkpoint
from learners.exceptions import CheckpointError
from learners.origin import Origin

OLD, NEW, GONE = b"old-key", b"new-key", b"retired-key"
HERE = Origin("events", 0, cluster_id="c1", topic_id="t1", partitions=2)
STATE = {"learned": 3}


def _refusal(blob: bytes, **kwargs: Any) -> CheckpointError:
    with pytest.raises(CheckpointError) as refused:
        decode_checkpoint(blob, **kwargs)
    return refused.value


def test_a_checkpoint_signed_with_any_key_of_the_ring_is_accepted() -> None:
    by_old = encode_checkpoint(STATE, next_offset=7, key=OLD)
    by_new = encode_checkpoint(STATE, next_offset=8, key=NEW)
    ring = (NEW, OLD)
    assert decode_checkpoint(by_old, key=ring).next_offset == 7
    assert decode_checkpoint(by_new, key=ring).next_offset == 8
    assert decode_checkpoint(by_new, key=[NEW]).next_offset == 8


def test_a_key_no_longer_in_the_ring_is_a_bad_signature_with_no_offset() -> None:
    blob = encode_checkpoint(STATE, next_offset=7, key=GONE)
    refusal = _refusal(blob, key=(NEW, OLD))
    assert refusal.reason == "bad_signature"
    assert refusal.next_offset is None  # anyone could have written that header


def test_an_empty_key_in_the_ring_is_a_mistake() -> None:
    blob = encode_checkpoint(STATE, next_offset=7, key=NEW)
    with pytest.raises(ValueError, match="non-empty"):
        decode_checkpoint(blob, key=(NEW, b""))


class _Trap:
    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, str]]:
        return io.open, ("/nonexistent/never", "w")


def _other_river(monkeypatch: pytest.MonkeyPatch, origin: Origin | None = HERE) -> bytes:
    with monkeypatch.context() as patch:
        patch.setattr(river, "__version__", "0.0.1")
        return encode_checkpoint(STATE, next_offset=42, key=NEW, origin=origin)


def test_an_authentic_refusal_carries_the_recorded_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    refusal = _refusal(_other_river(monkeypatch), key=NEW, origin=HERE)
    assert (refusal.reason, refusal.next_offset) == ("river_version", 42)
    forbidden = encode_checkpoint(_Trap(), next_offset=43, key=NEW, origin=HERE)
    refusal = _refusal(forbidden, key=NEW, origin=HERE)
    assert (refusal.reason, refusal.next_offset) == ("forbidden_class", 43)
    # Unsigned with no key configured: trusted as much as an accepted one would be.
    unsigned = encode_checkpoint(_Trap(), next_offset=44, key=None, origin=HERE)
    assert _refusal(unsigned, key=None, origin=HERE).next_offset == 44


def test_a_refusal_of_another_partition_carries_no_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    elsewhere = Origin("events", 0, cluster_id="c0", topic_id="t1", partitions=2)
    refusal = _refusal(_other_river(monkeypatch, elsewhere), key=NEW, origin=HERE)
    assert refusal.reason == "river_version"  # checked first, as before
    assert refusal.next_offset is None  # but its offset is no position in this log
    foreign = encode_checkpoint(STATE, next_offset=42, key=NEW, origin=elsewhere)
    refusal = _refusal(foreign, key=NEW, origin=HERE)
    assert (refusal.reason, refusal.next_offset) == ("foreign_cluster", None)


def test_unauthentic_or_damaged_checkpoints_carry_no_offset() -> None:
    signed = encode_checkpoint(STATE, next_offset=42, key=NEW, origin=HERE)
    body = bytearray(signed[:-4])
    body[-40] ^= 1  # a payload byte, the CRC-32C fixed as a forger would
    tampered = bytes(body) + struct.pack(">I", crc32c(bytes(body)))
    corrupt = signed[:30] + bytes([signed[30] ^ 4]) + signed[31:]
    unsigned = encode_checkpoint(STATE, next_offset=42, key=None, origin=HERE)
    for blob, reason in (
        (tampered, "bad_signature"),
        (corrupt, "corrupt"),
        (unsigned, "unsigned"),
        (signed[:10], "truncated"),
    ):
        refusal = _refusal(blob, key=NEW, origin=HERE)
        assert (refusal.reason, refusal.next_offset) == (reason, None)
