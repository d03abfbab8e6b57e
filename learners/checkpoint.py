"""Encode and decode a learner's checkpoint: checksummed, versioned, optionally signed.

**A pickled model is code.** Unpickling runs whatever the bytes tell it to run, so a
checkpoint is as dangerous as a script: anyone who can write the checkpoint store
(the state directory, the checkpoint topic) could run code inside the daemon by
planting a crafted checkpoint. The HMAC key (``STREAMLEARN_CHECKPOINT_KEY``) is what
stops them: with a key configured, a checkpoint is unpickled only if its HMAC-SHA256,
computed over everything before it, matches; without the key nobody can forge one.
Run without a key only where the store is writable by nobody but the daemon. Either
way the payload is unpickled through an allow-list (:mod:`learners.unpickling`).

Keys rotate: :func:`decode_checkpoint` takes one key or several, and accepts a
checkpoint signed with any of them; the writer signs with one (the daemon: the first
of ``STREAMLEARN_CHECKPOINT_KEY``'s comma-separated list).

Layout of a format-2 checkpoint (all integers big-endian)::

    MAGIC (8 bytes, "SLCKPT\\0\\2") | header length (4 bytes) | header (JSON, UTF-8)
    | payload (pickle) | HMAC-SHA256 of all the preceding bytes (32 bytes, only when signed)
    | CRC-32C of all the preceding bytes (4 bytes)

The CRC-32C catches what a disk, a copy or a network did to the bytes, with or without
a key; it is checked before anything else in the blob is believed. The header carries
the format version, River version, Python ``major.minor``, ``next_offset``,
``created_at`` (unix seconds), the payload length, whether the checkpoint is signed and
the :class:`~learners.origin.Origin` it was taken from (``null`` when unknown).

Format 1 (releases up to 0.1.0) is the same without the CRC and the origin, under the
magic "SLCKPT\\0\\1"; it is still read. :func:`decode_checkpoint` checks, in order:
magic, checksum, header, format version, length, signature, Python and River versions,
origin; then it unpickles. It refuses with a :class:`~learners.exceptions.CheckpointError`
whose ``reason`` is one of :data:`REFUSAL_REASONS`. A refusal that comes after the
signature checked out (versions, class allow-list, unpickling) carries the recorded
``next_offset`` too, unless the header names another partition's log: a position in
this log that a rebuild can use. :func:`encode_checkpoint` raises one with reason
``pickle_failed`` when the state itself cannot be pickled.

>>> blob = encode_checkpoint({"learned": 3}, next_offset=42, key=b"secret")
>>> checkpoint = decode_checkpoint(blob, key=b"secret")
>>> checkpoint.state, checkpoint.next_offset, checkpoint.format_version
({'learned': 3}, 42, 2)
>>> decode_checkpoint(blob, key=[b"new", b"secret"]).next_offset  # a rotated key ring
42
>>> damaged = blob[:20] + bytes([blob[20] ^ 1]) + blob[21:]
>>> decode_checkpoint(damaged, key=b"secret")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
learners.exceptions.CheckpointError: checkpoint checksum (CRC-32C) does not match: ...

"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import pickle
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

import river
from crc32c import crc32c

from learners.exceptions import CheckpointError
from learners.origin import FOREIGN_REASONS, Origin, foreign_reason
from learners.unpickling import restricted_loads

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "REFUSAL_REASONS",
    "Checkpoint",
    "Keys",
    "decode_checkpoint",
    "encode_checkpoint",
    "key_ring",
]

FORMAT_VERSION = 2
#: Every format shares the first 7 bytes; the 8th is the format version.
_MAGIC_STEM = b"SLCKPT\x00"
MAGIC = _MAGIC_STEM + bytes([FORMAT_VERSION])
LEGACY_MAGIC = _MAGIC_STEM + b"\x01"
REFUSAL_REASONS = (
    "bad_magic",
    "corrupt",
    "bad_header",
    "format_version",
    "python_version",
    "river_version",
    "truncated",
    "unsigned",
    "bad_signature",
    *FOREIGN_REASONS,
    "forbidden_class",
    "unpickle_failed",
)

#: What verifies a checkpoint: no key, one key, or several (any of them may have signed it).
Keys = bytes | Sequence[bytes] | None

_LENGTH = struct.Struct(">I")
_CRC = struct.Struct(">I")
_MAC_SIZE = hashlib.sha256().digest_size
# A real header is ~300 bytes; a huge declared length means garbage, not a header.
_MAX_HEADER_SIZE = 64 * 1024
_HEADER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format_version": int,
    "river_version": str,
    "python_version": str,
    "next_offset": int,
    "created_at": (int, float),
    "payload_length": int,
    "signed": bool,
}


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A decoded checkpoint: the learner's state and where its partition resumes."""

    state: object
    next_offset: int
    created_at: float
    format_version: int
    river_version: str
    python_version: str
    #: Where it was taken; ``None`` for format 1 or when the writer did not know.
    origin: Origin | None = None


def running_python_version() -> str:
    """The ``major.minor`` of this interpreter; pickles are only trusted within one."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def encode_checkpoint(
    state: object, *, next_offset: int, key: bytes | None, origin: Origin | None = None
) -> bytes:
    """Serialise ``state`` with the offset its partition resumes from and where it was
    taken; sign it if ``key``; always end it with a CRC-32C."""
    _check_key(key)
    if isinstance(next_offset, bool) or not isinstance(next_offset, int) or next_offset < 0:
        raise ValueError(f"next_offset must be a non-negative int, got {next_offset!r}")
    try:
        payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:  # pickle raises several unrelated types
        raise CheckpointError("pickle_failed", f"state cannot be pickled: {error}") from error
    header = {
        "format_version": FORMAT_VERSION,
        "river_version": river.__version__,
        "python_version": running_python_version(),
        "next_offset": next_offset,
        "created_at": time.time(),
        "payload_length": len(payload),
        "signed": key is not None,
        "origin": None if origin is None else origin.to_json(),
    }
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    body = MAGIC + _LENGTH.pack(len(header_bytes)) + header_bytes + payload
    if key is not None:
        body += _mac(key, body)
    return body + _CRC.pack(crc32c(body))


def decode_checkpoint(data: bytes, *, key: Keys, origin: Origin | None = None) -> Checkpoint:
    """Check ``data`` completely, then unpickle it; refuse with ``CheckpointError`` otherwise.

    ``key`` is the verification key, or several: a checkpoint signed with any of them is
    authentic. With ``origin`` (the partition being restored), a checkpoint that records
    another cluster, topic incarnation or partition is refused before it is unpickled.
    """
    keys = key_ring(key)
    version = _format_of(data)
    if version != 1:
        data = _verified_body(data)
        if version != FORMAT_VERSION:
            raise CheckpointError(
                "format_version",
                f"checkpoint format version {version} is not one this release reads "
                f"(1, {FORMAT_VERSION})",
            )
    header, payload_start = _read_header(data, version)
    payload_end = payload_start + header["payload_length"]
    _check_length(data, payload_end, header["signed"])
    # Authenticity before believing any other header field: with a key, a forged
    # header must fail as a bad signature, not pass as the "right" versions.
    _check_signature(data, payload_end, header["signed"], keys)
    try:
        _check_versions(header)
        recorded = _origin_of(header)
        if origin is not None and recorded is not None:
            foreign = foreign_reason(recorded, origin)
            if foreign is not None:
                raise CheckpointError(*foreign)
        state = _unpickle(data[payload_start:payload_end])
    except CheckpointError as error:
        # The header is authentic from here on: say where the refused state stood.
        error.next_offset = _position_in_this_log(header, origin)
        raise
    return Checkpoint(
        state=state,
        next_offset=header["next_offset"],
        created_at=float(header["created_at"]),
        format_version=header["format_version"],
        river_version=header["river_version"],
        python_version=header["python_version"],
        origin=recorded,
    )


def _check_key(key: bytes | None) -> None:
    # An empty key would make the HMAC forgeable by anyone; treat it as a mistake.
    if key is not None and (not isinstance(key, bytes) or not key):
        raise ValueError("checkpoint key must be non-empty bytes or None")


def key_ring(key: Keys) -> tuple[bytes, ...]:
    """``key`` as a tuple of keys (empty: none); each must be non-empty bytes."""
    if key is None:
        return ()
    keys = (key,) if isinstance(key, bytes) else tuple(key)
    for one in keys:
        _check_key(one)
    return keys


def _position_in_this_log(header: dict[str, Any], origin: Origin | None) -> int | None:
    """The authentic header's ``next_offset`` unless it records another partition's log
    (then that offset means nothing here)."""
    try:
        recorded = _origin_of(header)
    except CheckpointError:
        return None
    if origin is not None and recorded is not None and foreign_reason(recorded, origin):
        return None
    offset: int = header["next_offset"]
    return offset


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()


def _format_of(data: bytes) -> int:
    """The format the magic announces (1, 2, or a future one); refuse what is not ours."""
    stem = len(_MAGIC_STEM)
    # A blob cut inside the magic is a truncated checkpoint; any other mismatch is not one.
    if data and len(data) <= stem and _MAGIC_STEM.startswith(data):
        raise CheckpointError("truncated", "checkpoint is truncated: ends inside its magic")
    if data[:stem] != _MAGIC_STEM:
        raise CheckpointError("bad_magic", "not a streamlearn checkpoint (bad magic bytes)")
    return data[stem]


def _verified_body(data: bytes) -> bytes:
    """The blob without its CRC-32C trailer, once the trailer matches."""
    if len(data) < len(MAGIC) + _LENGTH.size + _CRC.size:
        raise CheckpointError("truncated", "checkpoint is truncated: ends inside its prefix")
    body, (stored,) = data[: -_CRC.size], _CRC.unpack(data[-_CRC.size :])
    if crc32c(body) != stored:
        raise CheckpointError(
            "corrupt",
            f"checkpoint checksum (CRC-32C) does not match: its {len(data)} bytes were "
            f"damaged, cut short or extended after it was written",
        )
    return body


def _read_header(data: bytes, version: int) -> tuple[dict[str, Any], int]:
    """Return the validated header and the offset where the payload starts."""
    prefix = len(MAGIC) + _LENGTH.size
    if len(data) < prefix:
        raise CheckpointError("truncated", "checkpoint is truncated: ends inside its prefix")
    (header_length,) = _LENGTH.unpack_from(data, len(MAGIC))
    if header_length > _MAX_HEADER_SIZE:
        raise CheckpointError("bad_header", f"checkpoint header length {header_length} is absurd")
    if len(data) < prefix + header_length:
        raise CheckpointError("truncated", "checkpoint is truncated: ends inside its header")
    try:
        header = json.loads(data[prefix : prefix + header_length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError("bad_header", f"checkpoint header is not JSON: {error}") from error
    _check_header_fields(header, version)
    return header, prefix + header_length


def _check_header_fields(header: object, version: int) -> None:
    if not isinstance(header, dict):
        raise CheckpointError("bad_header", "checkpoint header is not a JSON object")
    for name, kind in _HEADER_FIELDS.items():
        value = header.get(name)
        # bool is an int subclass: only the "signed" field may be a bool.
        wrong_bool = isinstance(value, bool) and kind is not bool
        if not isinstance(value, kind) or wrong_bool:
            raise CheckpointError("bad_header", f"checkpoint header field {name!r} is invalid")
    if header["format_version"] != version:
        raise CheckpointError(
            "format_version",
            f"checkpoint header says format version {header['format_version']}, its magic "
            f"says {version}",
        )
    if header["next_offset"] < 0 or header["payload_length"] < 0:
        raise CheckpointError("bad_header", "checkpoint header has a negative offset or length")
    if version >= 2 and "origin" not in header:
        raise CheckpointError("bad_header", "checkpoint header has no 'origin' field")


def _origin_of(header: dict[str, Any]) -> Origin | None:
    recorded = header.get("origin")
    if recorded is None:
        return None
    try:
        return Origin.from_json(recorded)
    except ValueError as error:
        raise CheckpointError("bad_header", f"checkpoint header: {error}") from error


def _check_length(data: bytes, payload_end: int, signed: bool) -> None:
    expected = payload_end + (_MAC_SIZE if signed else 0)
    if len(data) < expected:
        raise CheckpointError(
            "truncated", f"checkpoint is truncated: {len(data)} bytes of {expected} expected"
        )
    if len(data) > expected:
        # Trailing bytes are not truncation but still mean the blob is not what was written.
        raise CheckpointError(
            "bad_header", f"checkpoint has {len(data) - expected} bytes after its declared end"
        )


def _check_signature(data: bytes, payload_end: int, signed: bool, keys: tuple[bytes, ...]) -> None:
    if not keys:
        if signed:
            # We cannot verify it, and the header's "signed" flag proves its writer
            # expected verification: this instance most likely lost its key setting.
            # Loading it unverified would silently downgrade the protection; refuse.
            raise CheckpointError(
                "bad_signature",
                "checkpoint is signed but no checkpoint key is configured: cannot verify it "
                "(set STREAMLEARN_CHECKPOINT_KEY)",
            )
        return
    if not signed:
        raise CheckpointError(
            "unsigned", "checkpoint is unsigned but a checkpoint key is configured; refusing it"
        )
    body, mac = data[:payload_end], data[payload_end:]
    if not any(hmac.compare_digest(mac, _mac(key, body)) for key in keys):
        raise CheckpointError(
            "bad_signature",
            f"checkpoint HMAC does not match any of the {len(keys)} configured key(s): "
            "tampered with, or signed with a key no longer configured",
        )


def _check_versions(header: dict[str, Any]) -> None:
    # Pickles of River objects are only trusted by the versions that wrote them: a
    # class layout may change between releases and unpickle into a broken model.
    if header["python_version"] != running_python_version():
        raise CheckpointError(
            "python_version",
            f"checkpoint written by Python {header['python_version']}, "
            f"this is Python {running_python_version()}",
        )
    if header["river_version"] != river.__version__:
        raise CheckpointError(
            "river_version",
            f"checkpoint written by River {header['river_version']}, "
            f"this is River {river.__version__}",
        )


def _unpickle(payload: bytes) -> object:
    try:
        # Reached only when every check passed; with no key that is trust in the store.
        return restricted_loads(payload)
    except CheckpointError:
        raise
    except Exception as error:  # a bad pickle can raise almost any exception type
        raise CheckpointError(
            "unpickle_failed", f"checkpoint payload cannot be unpickled: {error}"
        ) from error
