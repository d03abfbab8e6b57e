"""Checkpoint codec: round trips, and every refusal happening before any unpickling."""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import river
from river import linear_model

from learners.checkpoint import (
    FORMAT_VERSION,
    MAGIC,
    REFUSAL_REASONS,
    Checkpoint,
    decode_checkpoint,
    encode_checkpoint,
)
from learners.exceptions import CheckpointError

KEY = b"test-key-0123456789"
PREFIX = len(MAGIC) + 4
UNPICKLED: list[str] = []


def _record_unpickling(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Trap:
    """Unpickling this calls ``_record_unpickling``: proof that a payload was loaded."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_record_unpickling, ("trap",))


@pytest.fixture(autouse=True)
def _no_unpickling_yet() -> Iterator[None]:
    UNPICKLED.clear()
    yield
    UNPICKLED.clear()


def _split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """Header and payload of a blob, read with the documented layout."""
    length = int.from_bytes(blob[len(MAGIC) : PREFIX], "big")
    header = json.loads(blob[PREFIX : PREFIX + length])
    payload = blob[PREFIX + length : PREFIX + length + header["payload_length"]]
    return header, payload


def _build(header: dict[str, Any], payload: bytes, key: bytes | None) -> bytes:
    """A blob as another writer (another version, a forger holding the key) would make it."""
    header_bytes = json.dumps(header).encode()
    body = MAGIC + len(header_bytes).to_bytes(4, "big") + header_bytes + payload
    return body + hmac.new(key, body, hashlib.sha256).digest() if key else body


def _rewritten(blob: bytes, key: bytes | None, **changes: Any) -> bytes:
    header, payload = _split(blob)
    header.update(changes)
    return _build(header, payload, key)


def _refused(blob: bytes, key: bytes | None) -> str:
    with pytest.raises(CheckpointError) as caught:
        decode_checkpoint(blob, key=key)
    assert caught.value.reason in REFUSAL_REASONS
    assert str(caught.value)  # a message a person can read
    return caught.value.reason


def _trap_blob(key: bytes | None) -> bytes:
    return encode_checkpoint({"model": Trap()}, next_offset=7, key=key)


# -- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, KEY])
def test_round_trip_keeps_state_offset_and_versions(key: bytes | None) -> None:
    state = {"learned": 12, "weights": [0.5, -1.25], "name": "été"}
    checkpoint = decode_checkpoint(encode_checkpoint(state, next_offset=99, key=key), key=key)
    assert isinstance(checkpoint, Checkpoint)
    assert checkpoint.state == state
    assert checkpoint.next_offset == 99
    assert checkpoint.format_version == FORMAT_VERSION
    assert checkpoint.river_version == river.__version__
    assert checkpoint.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert isinstance(checkpoint.created_at, float)
    assert checkpoint.created_at > 0


def test_round_trip_of_a_trained_river_model_predicts_the_same() -> None:
    model = linear_model.LogisticRegression()
    for i in range(50):
        model.learn_one({"x": i % 7, "y": (i * 3) % 5}, i % 7 > 3)
    restored = decode_checkpoint(encode_checkpoint(model, next_offset=50, key=KEY), key=KEY).state
    assert isinstance(restored, linear_model.LogisticRegression)
    probes = [{"x": x, "y": y} for x in range(7) for y in range(5)]
    assert [restored.predict_proba_one(p) for p in probes] == [
        model.predict_proba_one(p) for p in probes
    ]


def test_signed_blob_is_the_unsigned_one_plus_an_hmac_of_it() -> None:
    signed = _trap_blob(KEY)
    header, _ = _split(signed)
    assert header["signed"] is True
    body, mac = signed[:-32], signed[-32:]
    assert mac == hmac.new(KEY, body, hashlib.sha256).digest()
    assert _split(_trap_blob(None))[0]["signed"] is False


def test_the_trap_does_run_when_a_checkpoint_is_accepted() -> None:
    # Positive control for every "not unpickled" assertion below.
    assert decode_checkpoint(_trap_blob(KEY), key=KEY).state == {"model": "trap"}
    assert UNPICKLED == ["trap"]


def test_encode_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="next_offset"):
        encode_checkpoint({}, next_offset=-1, key=None)
    with pytest.raises(ValueError, match="next_offset"):
        encode_checkpoint({}, next_offset=True, key=None)
    with pytest.raises(ValueError, match="key"):
        encode_checkpoint({}, next_offset=0, key=b"")
    with pytest.raises(CheckpointError) as caught:
        encode_checkpoint({"f": lambda: 0}, next_offset=0, key=None)
    assert caught.value.reason == "pickle_failed"


# -- refusals: each from a real damaged or foreign blob, none unpickled ----------------


def test_bad_magic() -> None:
    blob = _trap_blob(KEY)
    assert _refused(b"X" + blob[1:], KEY) == "bad_magic"
    assert _refused(b"", KEY) == "bad_magic"
    assert _refused(pickle.dumps({"model": Trap()}), None) == "bad_magic"
    assert UNPICKLED == []


def test_bad_header() -> None:
    blob = _trap_blob(None)
    header_start = PREFIX
    not_json = blob[:header_start] + b"!" + blob[header_start + 1 :]
    assert _refused(not_json, None) == "bad_header"
    header, payload = _split(blob)
    del header["next_offset"]
    assert _refused(_build(header, payload, None), None) == "bad_header"
    assert _refused(_rewritten(blob, None, payload_length="12"), None) == "bad_header"
    assert _refused(_rewritten(blob, None, next_offset=-3), None) == "bad_header"
    assert _refused(blob + b"extra", None) == "bad_header"
    absurd = MAGIC + (10**9).to_bytes(4, "big") + blob[PREFIX:]
    assert _refused(absurd, None) == "bad_header"
    assert UNPICKLED == []


@pytest.mark.parametrize(
    ("field", "foreign", "reason"),
    [
        ("format_version", FORMAT_VERSION + 1, "format_version"),
        ("python_version", "3.10", "python_version"),
        ("river_version", "0.21.0", "river_version"),
    ],
)
@pytest.mark.parametrize("key", [None, KEY])
def test_foreign_versions(field: str, foreign: object, reason: str, key: bytes | None) -> None:
    # Correctly signed with the right key: the versions alone make it unloadable.
    foreign_blob = _rewritten(_trap_blob(key), key, **{field: foreign})
    assert _refused(foreign_blob, key) == reason
    assert UNPICKLED == []


@pytest.mark.parametrize("key", [None, KEY])
def test_truncated_at_every_length(key: bytes | None) -> None:
    blob = _trap_blob(key)
    reasons = {_refused(blob[:cut], key) for cut in range(1, len(blob))}
    assert reasons == {"truncated"}
    assert UNPICKLED == []


def test_unsigned_while_a_key_is_configured() -> None:
    assert _refused(_trap_blob(None), KEY) == "unsigned"
    assert UNPICKLED == []


def test_signed_while_no_key_is_configured() -> None:
    assert _refused(_trap_blob(KEY), None) == "bad_signature"
    assert UNPICKLED == []


def test_bad_signature() -> None:
    blob = _trap_blob(KEY)
    _, payload = _split(blob)
    payload_start = len(blob) - 32 - len(payload)
    flipped_payload = bytearray(blob)
    flipped_payload[payload_start + len(payload) // 2] ^= 0x01
    flipped_mac = bytearray(blob)
    flipped_mac[-1] ^= 0x80
    cases = {
        "payload byte flipped": bytes(flipped_payload),
        "mac byte flipped": bytes(flipped_mac),
        "header edited, mac kept": _rewritten(blob, None, next_offset=0) + blob[-32:],
        "re-signed with another key": _rewritten(blob, b"another-key"),
    }
    for name, tampered in cases.items():
        assert _refused(tampered, KEY) == "bad_signature", name
    assert _refused(blob, b"wrong-key") == "bad_signature"
    assert UNPICKLED == []


@pytest.mark.parametrize("key", [None, KEY])
def test_unpickle_failed(key: bytes | None) -> None:
    header, _ = _split(_trap_blob(key))
    # GLOBAL no_such_module.Thing, called with (): a model class that no longer exists.
    missing_class = b"cno_such_module\nThing\n)R."
    for payload in (missing_class, b"not a pickle at all"):
        blob = _build({**header, "payload_length": len(payload)}, payload, key)
        assert _refused(blob, key) == "unpickle_failed"


def test_decode_refuses_an_empty_key() -> None:
    with pytest.raises(ValueError, match="key"):
        decode_checkpoint(_trap_blob(None), key=b"")
    assert UNPICKLED == []
