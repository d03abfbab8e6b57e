"""Encode and decode a learner's checkpoint: versioned, length-checked, optionally signed.

**A pickled model is code.** Unpickling runs whatever the bytes tell it to run, so a
checkpoint is as dangerous as a script: anyone who can write the checkpoint store
(the state directory, the checkpoint topic) could run code inside the daemon by
planting a crafted checkpoint. The HMAC key (``STREAMLEARN_CHECKPOINT_KEY``) is what
stops them: with a key configured, a checkpoint is unpickled only if its HMAC-SHA256,
computed over everything before it, matches; without the key nobody can forge one.
Run without a key only where the store is writable by nobody but the daemon.

Layout of a checkpoint (all integers big-endian)::

    MAGIC (8 bytes) | header length (4 bytes) | header (JSON, UTF-8) | payload (pickle)
    | HMAC-SHA256 of all the preceding bytes (32 bytes, only when the header says signed)

The header carries the format version, River version, Python ``major.minor``,
``next_offset``, ``created_at`` (unix seconds), the payload length and whether the
checkpoint is signed. :func:`decode_checkpoint` checks all of it before unpickling,
and refuses with a :class:`~learners.exceptions.CheckpointError` whose ``reason`` is
one of :data:`REFUSAL_REASONS`. :func:`encode_checkpoint` raises one with reason
``pickle_failed`` when the state itself cannot be pickled.

>>> blob = encode_checkpoint({"learned": 3}, next_offset=42, key=b"secret")
>>> checkpoint = decode_checkpoint(blob, key=b"secret")
>>> checkpoint.state, checkpoint.next_offset
({'learned': 3}, 42)
>>> decode_checkpoint(blob[:-1], key=b"secret")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
learners.exceptions.CheckpointError: checkpoint is truncated: ...

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
from typing import Any

import river

from learners.exceptions import CheckpointError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "REFUSAL_REASONS",
    "Checkpoint",
    "decode_checkpoint",
    "encode_checkpoint",
]

MAGIC = b"SLCKPT\x00\x01"
FORMAT_VERSION = 1
REFUSAL_REASONS = (
    "bad_magic",
    "bad_header",
    "format_version",
    "python_version",
    "river_version",
    "truncated",
    "unsigned",
    "bad_signature",
    "unpickle_failed",
)

_LENGTH = struct.Struct(">I")
_MAC_SIZE = hashlib.sha256().digest_size
# A real header is ~200 bytes; a huge declared length means garbage, not a header.
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


def running_python_version() -> str:
    """The ``major.minor`` of this interpreter; pickles are only trusted within one."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def encode_checkpoint(state: object, *, next_offset: int, key: bytes | None) -> bytes:
    """Serialise ``state`` with the offset its partition resumes from; sign it if ``key``."""
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
    }
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    body = MAGIC + _LENGTH.pack(len(header_bytes)) + header_bytes + payload
    return body + _mac(key, body) if key is not None else body


def decode_checkpoint(data: bytes, *, key: bytes | None) -> Checkpoint:
    """Check ``data`` completely, then unpickle it; refuse with ``CheckpointError`` otherwise."""
    _check_key(key)
    header, payload_start = _read_header(data)
    payload_end = payload_start + header["payload_length"]
    _check_length(data, payload_end, header["signed"])
    # Authenticity before believing any other header field: with a key, a forged
    # header must fail as a bad signature, not pass as the "right" versions.
    _check_signature(data, payload_end, header["signed"], key)
    _check_versions(header)
    state = _unpickle(data[payload_start:payload_end])
    return Checkpoint(
        state=state,
        next_offset=header["next_offset"],
        created_at=float(header["created_at"]),
        format_version=header["format_version"],
        river_version=header["river_version"],
        python_version=header["python_version"],
    )


def _check_key(key: bytes | None) -> None:
    # An empty key would make the HMAC forgeable by anyone; treat it as a mistake.
    if key is not None and (not isinstance(key, bytes) or not key):
        raise ValueError("checkpoint key must be non-empty bytes or None")


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()


def _read_header(data: bytes) -> tuple[dict[str, Any], int]:
    """Return the validated header and the offset where the payload starts."""
    prefix = len(MAGIC) + _LENGTH.size
    # A blob cut inside the magic is a truncated checkpoint; any other mismatch is not one.
    if not data or data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise CheckpointError("bad_magic", "not a streamlearn checkpoint (bad magic bytes)")
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
    _check_header_fields(header)
    return header, prefix + header_length


def _check_header_fields(header: object) -> None:
    if not isinstance(header, dict):
        raise CheckpointError("bad_header", "checkpoint header is not a JSON object")
    for name, kind in _HEADER_FIELDS.items():
        value = header.get(name)
        # bool is an int subclass: only the "signed" field may be a bool.
        wrong_bool = isinstance(value, bool) and kind is not bool
        if not isinstance(value, kind) or wrong_bool:
            raise CheckpointError("bad_header", f"checkpoint header field {name!r} is invalid")
    if header["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            "format_version",
            f"checkpoint format version {header['format_version']} is not the supported "
            f"{FORMAT_VERSION}",
        )
    if header["next_offset"] < 0 or header["payload_length"] < 0:
        raise CheckpointError("bad_header", "checkpoint header has a negative offset or length")


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


def _check_signature(data: bytes, payload_end: int, signed: bool, key: bytes | None) -> None:
    if key is None:
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
    if not hmac.compare_digest(mac, _mac(key, body)):
        raise CheckpointError(
            "bad_signature", "checkpoint HMAC does not match: tampered with, or another key"
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
        return pickle.loads(payload)
    except Exception as error:  # a bad pickle can raise almost any exception type
        raise CheckpointError(
            "unpickle_failed", f"checkpoint payload cannot be unpickled: {error}"
        ) from error
