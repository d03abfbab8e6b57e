# Over 400 lines: every refusal of the codec in one place, so none can be missed.
"""Checkpoint codec: round trips, and every refusal happening before any unpickling."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import pickle
import struct
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
import river
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st
from river import datasets, linear_model

from learners import unpickling
from learners.checkpoint import (
    FORMAT_VERSION,
    LEGACY_MAGIC,
    MAGIC,
    REFUSAL_REASONS,
    Checkpoint,
    decode_checkpoint,
    encode_checkpoint,
)
from learners.exceptions import CheckpointError
from learners.origin import Origin
from learners.prequential import PartitionLearner
from learners.sequence import SequenceTracker
from learners.spec import parse_model_spec
from learners.state import PartitionState

KEY = b"test-key-0123456789"
PREFIX = len(MAGIC) + 4
CRC_SIZE = 4
UNPICKLED: list[str] = []
HERE = Origin("events", 3, cluster_id="cluster-a", topic_id="topic-1", partitions=4)


def _record_unpickling(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Trap:
    """Unpickling this calls ``_record_unpickling``: proof that a payload was loaded."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_record_unpickling, ("trap",))


@pytest.fixture(autouse=True)
def _no_unpickling_yet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The trap lives in this module: allow it, so that only the codec's checks stop it.
    monkeypatch.setattr(unpickling, "ALLOWED_PACKAGES", (*unpickling.ALLOWED_PACKAGES, __name__))
    UNPICKLED.clear()
    yield
    UNPICKLED.clear()


def _crc(body: bytes) -> bytes:
    return struct.pack(">I", crc32c(body))


def _split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """Header and payload of a blob, read with the documented layout."""
    length = int.from_bytes(blob[len(MAGIC) : PREFIX], "big")
    header = json.loads(blob[PREFIX : PREFIX + length])
    payload = blob[PREFIX + length : PREFIX + length + header["payload_length"]]
    return header, payload


def _build(
    header: dict[str, Any], payload: bytes, key: bytes | None, magic: bytes = MAGIC
) -> bytes:
    """A blob as another writer (another version, a forger holding the key) would make it;
    with the CRC-32C trailer unless it is a format-1 blob."""
    header_bytes = json.dumps(header).encode()
    body = magic + len(header_bytes).to_bytes(4, "big") + header_bytes + payload
    if key:
        body += hmac.new(key, body, hashlib.sha256).digest()
    return body if magic == LEGACY_MAGIC else body + _crc(body)


def _rewritten(blob: bytes, key: bytes | None, **changes: Any) -> bytes:
    header, payload = _split(blob)
    header.update(changes)
    return _build(header, payload, key)


def _legacy(state: object, key: bytes | None, next_offset: int = 7) -> bytes:
    """A format-1 blob, as releases up to 0.1.0 wrote it."""
    header, payload = _split(encode_checkpoint(state, next_offset=next_offset, key=key))
    del header["origin"]
    return _build({**header, "format_version": 1}, payload, key, magic=LEGACY_MAGIC)


def _refused(blob: bytes, key: bytes | None, origin: Origin | None = None) -> str:
    with pytest.raises(CheckpointError) as caught:
        decode_checkpoint(blob, key=key, origin=origin)
    assert caught.value.reason in REFUSAL_REASONS
    assert str(caught.value)  # a message a person can read
    return caught.value.reason


def _trap_blob(key: bytes | None, origin: Origin | None = None) -> bytes:
    return encode_checkpoint({"model": Trap()}, next_offset=7, key=key, origin=origin)


def _flipped(blob: bytes, bit: int) -> bytes:
    damaged = bytearray(blob)
    damaged[bit // 8] ^= 1 << (bit % 8)
    return bytes(damaged)


# -- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, KEY])
def test_round_trip_keeps_state_offset_versions_and_origin(key: bytes | None) -> None:
    state = {"learned": 12, "weights": [0.5, -1.25], "name": "été"}
    blob = encode_checkpoint(state, next_offset=99, key=key, origin=HERE)
    checkpoint = decode_checkpoint(blob, key=key, origin=HERE)
    assert isinstance(checkpoint, Checkpoint)
    assert checkpoint.state == state
    assert checkpoint.next_offset == 99
    assert checkpoint.origin == HERE
    assert checkpoint.format_version == FORMAT_VERSION == 2
    assert checkpoint.river_version == river.__version__
    assert checkpoint.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert isinstance(checkpoint.created_at, float)
    assert checkpoint.created_at > 0
    assert (
        decode_checkpoint(encode_checkpoint(state, next_offset=1, key=key), key=key).origin is None
    )


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


def test_layout_body_then_hmac_then_a_crc32c_of_everything_before() -> None:
    signed = _trap_blob(KEY)
    assert signed.startswith(MAGIC)
    header, _ = _split(signed)
    assert header["signed"] is True
    body, mac, crc = signed[:-36], signed[-36:-4], signed[-4:]
    assert mac == hmac.new(KEY, body, hashlib.sha256).digest()
    assert crc == _crc(body + mac)
    unsigned = _trap_blob(None)
    assert _split(unsigned)[0]["signed"] is False
    assert unsigned[-4:] == _crc(unsigned[:-4])


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


# -- corruption: a checksum over the whole blob, signed or not ---------------------------


# Built once: a blob's length must not change between the examples of one test.
_TO_FLIP = {key: _trap_blob(key, origin=HERE) for key in (None, KEY)}


@pytest.mark.parametrize("key", [None, KEY])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_single_flipped_bit_anywhere_is_refused(key: bytes | None, data: st.DataObject) -> None:
    blob = _TO_FLIP[key]
    bit = data.draw(st.integers(0, len(blob) * 8 - 1), label="bit")
    reason = _refused(_flipped(blob, bit), key)
    # The first 7 bytes say "a streamlearn checkpoint": damaged, it is not one any more.
    assert reason == ("bad_magic" if bit < 7 * 8 else "corrupt")
    assert UNPICKLED == []


@pytest.mark.parametrize("key", [None, KEY])
def test_every_region_is_covered_header_payload_hmac_and_trailer(key: bytes | None) -> None:
    blob = _trap_blob(key, origin=HERE)
    _, payload = _split(blob)
    header_end = PREFIX + int.from_bytes(blob[len(MAGIC) : PREFIX], "big")
    regions = {
        "format byte": len(MAGIC) - 1,
        "header length": len(MAGIC) + 2,
        "header": PREFIX + 5,
        "payload": header_end + len(payload) // 2,
        "trailer": len(blob) - 1,
    }
    if key:
        regions["hmac"] = len(blob) - CRC_SIZE - 10
    for name, index in regions.items():
        assert _refused(_flipped(blob, index * 8 + 3), key) == "corrupt", name
    assert _refused(blob + b"\x00", key) == "corrupt"
    assert UNPICKLED == []


# -- refusals: each from a real damaged or foreign blob, none unpickled ----------------


def test_bad_magic() -> None:
    blob = _trap_blob(KEY)
    assert _refused(b"X" + blob[1:], KEY) == "bad_magic"
    assert _refused(b"", KEY) == "bad_magic"
    assert _refused(pickle.dumps({"model": Trap()}), None) == "bad_magic"
    assert UNPICKLED == []


def test_bad_header() -> None:
    # Every blob here carries a correct CRC: a writer that wrote nonsense, not a disk.
    blob = _trap_blob(None)
    header, payload = _split(blob)
    raw = blob[:-CRC_SIZE]
    not_json = raw[:PREFIX] + b"!" + raw[PREFIX + 1 :]
    assert _refused(not_json + _crc(not_json), None) == "bad_header"
    missing = dict(header)
    del missing["next_offset"]
    assert _refused(_build(missing, payload, None), None) == "bad_header"
    no_origin = dict(header)
    del no_origin["origin"]
    assert _refused(_build(no_origin, payload, None), None) == "bad_header"
    assert _refused(_rewritten(blob, None, payload_length="12"), None) == "bad_header"
    assert _refused(_rewritten(blob, None, next_offset=-3), None) == "bad_header"
    assert _refused(_rewritten(blob, None, origin={"topic": "events"}), None) == "bad_header"
    assert _refused(_rewritten(blob, None, origin="events"), None) == "bad_header"
    extended = raw + b"extra"
    assert _refused(extended + _crc(extended), None) == "bad_header"
    absurd = MAGIC + (10**9).to_bytes(4, "big") + raw[PREFIX:]
    assert _refused(absurd + _crc(absurd), None) == "bad_header"
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
def test_a_future_format_with_a_good_checksum_is_a_format_version_refusal(
    key: bytes | None,
) -> None:
    header, payload = _split(_trap_blob(key))
    future = _build({**header, "format_version": 3}, payload, key, magic=MAGIC[:-1] + b"\x03")
    assert _refused(future, key) == "format_version"
    assert UNPICKLED == []


@pytest.mark.parametrize("key", [None, KEY])
def test_truncated_at_every_length(key: bytes | None) -> None:
    blob = _trap_blob(key)
    reasons = {cut: _refused(blob[:cut], key) for cut in range(1, len(blob))}
    # Too short to carry a checksum: truncated; longer, the checksum does not match.
    assert {r for cut, r in reasons.items() if cut < PREFIX + CRC_SIZE} == {"truncated"}
    assert {r for cut, r in reasons.items() if cut >= PREFIX + CRC_SIZE} == {"corrupt"}
    assert UNPICKLED == []


def test_unsigned_while_a_key_is_configured() -> None:
    assert _refused(_trap_blob(None), KEY) == "unsigned"
    assert UNPICKLED == []


def test_signed_while_no_key_is_configured() -> None:
    assert _refused(_trap_blob(KEY), None) == "bad_signature"
    assert UNPICKLED == []


def test_bad_signature() -> None:
    # Whoever edits a blob can recompute its CRC; only the HMAC needs the key.
    blob = _trap_blob(KEY)
    raw = blob[:-CRC_SIZE]
    _, payload = _split(blob)
    payload_start = len(raw) - 32 - len(payload)
    flipped_payload = bytearray(raw)
    flipped_payload[payload_start + len(payload) // 2] ^= 0x01
    flipped_mac = bytearray(raw)
    flipped_mac[-1] ^= 0x80
    header_edited = _rewritten(blob, None, next_offset=0)[:-CRC_SIZE] + raw[-32:]
    cases = {
        "payload byte flipped": bytes(flipped_payload) + _crc(bytes(flipped_payload)),
        "mac byte flipped": bytes(flipped_mac) + _crc(bytes(flipped_mac)),
        "header edited, mac kept": header_edited + _crc(header_edited),
        "re-signed with another key": _rewritten(blob, b"another-key"),
    }
    for name, tampered in cases.items():
        assert _refused(tampered, KEY) == "bad_signature", name
    assert _refused(blob, b"wrong-key") == "bad_signature"
    assert UNPICKLED == []


@pytest.mark.parametrize("key", [None, KEY])
def test_unpickle_failed(key: bytes | None) -> None:
    header, _ = _split(_trap_blob(key))
    # GLOBAL river.no_such_module.Thing, called with (): a model class that no longer exists.
    missing_class = b"criver.no_such_module\nThing\n)R."
    for payload in (missing_class, b"not a pickle at all"):
        blob = _build({**header, "payload_length": len(payload)}, payload, key)
        assert _refused(blob, key) == "unpickle_failed"


def test_decode_refuses_an_empty_key() -> None:
    with pytest.raises(ValueError, match="key"):
        decode_checkpoint(_trap_blob(None), key=b"")
    assert UNPICKLED == []


# -- where a checkpoint belongs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "reason"),
    [
        (Origin("events", 3, cluster_id="cluster-b", topic_id="topic-1", partitions=4),
         "foreign_cluster"),
        (Origin("events", 3, cluster_id="cluster-a", topic_id="topic-2", partitions=4),
         "foreign_topic"),
        (Origin("events", 3, cluster_id="cluster-a", topic_id=None, partitions=2),
         "foreign_topic"),
        (Origin("orders", 3, cluster_id="cluster-a", topic_id="topic-1", partitions=4),
         "foreign_topic"),
        (Origin("events", 1, cluster_id="cluster-a", topic_id="topic-1", partitions=4),
         "foreign_partition"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("key", [None, KEY])
def test_state_from_elsewhere_is_refused_before_unpickling(
    current: Origin, reason: str, key: bytes | None
) -> None:
    with pytest.raises(CheckpointError) as caught:
        decode_checkpoint(_trap_blob(key, origin=HERE), key=key, origin=current)
    assert caught.value.reason == reason
    # Both identities are in the message, for the operator.
    assert HERE.describe() in str(caught.value)
    assert current.describe() in str(caught.value)
    assert UNPICKLED == []


def test_identities_not_known_on_both_sides_are_not_compared() -> None:
    unknown_now = Origin("events", 3)
    grown = Origin("events", 3, cluster_id="cluster-a", topic_id="topic-1", partitions=6)
    for current in (unknown_now, grown):
        assert decode_checkpoint(_trap_blob(None, origin=HERE), key=None, origin=current).origin
    # A checkpoint that recorded nothing (format 1, or a writer that knew nothing).
    assert decode_checkpoint(_trap_blob(None), key=None, origin=HERE).origin is None
    assert UNPICKLED == ["trap", "trap", "trap"]


# -- format 1, and the classes a checkpoint may name ----------------------------------------


@pytest.mark.parametrize("key", [None, KEY])
def test_format_1_is_still_read_and_its_moved_class_found(
    key: bytes | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = SequenceTracker()
    tracker.observe(4)
    state = PartitionState(linear_model.LogisticRegression(), tracker)  # type: ignore[arg-type]
    # Format 1 pickled the state under its old path: pickle it from there.
    with monkeypatch.context() as patch:
        old_home = types.ModuleType("stream.checkpointing")
        old_home.PartitionState = PartitionState  # type: ignore[attr-defined]
        patch.setitem(sys.modules, "stream.checkpointing", old_home)
        patch.setattr(PartitionState, "__module__", "stream.checkpointing")
        old_payload = pickle.dumps(state, protocol=5)
    assert b"stream.checkpointing" in old_payload
    header, _ = _split(_legacy({}, key))
    blob = _build({**header, "payload_length": len(old_payload)}, old_payload, key, LEGACY_MAGIC)
    checkpoint = decode_checkpoint(blob, key=key, origin=HERE)
    assert (checkpoint.format_version, checkpoint.origin) == (1, None)
    assert isinstance(checkpoint.state, PartitionState)
    assert checkpoint.state.sequence.next_expected == 5
    # Format 1 has no checksum to refuse with; its other checks still hold.
    assert _refused(_legacy({}, key)[:-1], key) == "truncated"


def _global_call(module: str, name: str) -> bytes:
    """A protocol-4 pickle that calls ``module.name("x")``."""

    def text(value: str) -> bytes:
        return b"\x8c" + bytes([len(value)]) + value.encode()

    return b"\x80\x04" + text(module) + text(name) + b"\x93" + text("x") + b"\x85R."


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("os", "system"),
        ("posix", "system"),
        ("subprocess", "Popen"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "__import__"),
        ("io", "open"),
        ("numpy.testing._private.utils", "runstring"),
        ("river.datasets.base", "os.system"),  # a module River imported, reached by a path
        ("river.datasets.base", "os"),
        ("learners.state", "PartitionState.__init__.__globals__"),
        ("stream.daemon.app", "run_daemon"),  # the application is not model code
    ],
)
def test_a_pickle_naming_anything_else_is_refused_unrun(module: str, name: str) -> None:
    payload = _global_call(module, name)
    header, _ = _split(_trap_blob(None))
    blob = _build({**header, "payload_length": len(payload)}, payload, None)
    assert _refused(blob, None) == "forbidden_class"


def test_getattr_only_rebuilds_methods_of_allowed_classes() -> None:
    tracker = SequenceTracker()
    method = decode_checkpoint(
        encode_checkpoint(tracker.observe, next_offset=0, key=None), key=None
    )
    assert callable(method.state) and method.state.__name__ == "observe"
    # GLOBAL builtins.getattr applied to (SequenceTracker, "__init__"): a dunder, refused.
    payload = (
        b"\x80\x04\x8c\x08builtins\x8c\x07getattr\x93\x8c\x11learners.sequence"
        b"\x8c\x0fSequenceTracker\x93\x8c\x08__init__\x86R."
    )
    header, _ = _split(_trap_blob(None))
    blob = _build({**header, "payload_length": len(payload)}, payload, None)
    assert _refused(blob, None) == "forbidden_class"


# Every model family a user is likely to name, with a retrain in flight (its candidate,
# pool and held events are part of the state): all must load through the allow-list.
FAMILIES = [
    "preprocessing.StandardScaler | linear_model.LogisticRegression(optimizer=optim.Adam())",
    "preprocessing.StandardScaler | linear_model.LogisticRegression(initializer="
    "optim.initializers.Normal(seed=1))",
    "tree.HoeffdingTreeClassifier(grace_period=50)",
    "tree.HoeffdingAdaptiveTreeClassifier(grace_period=50, seed=1)",
    "tree.ExtremelyFastDecisionTreeClassifier(grace_period=50)",
    "tree.SGTClassifier()",
    "naive_bayes.GaussianNB",
    "preprocessing.MinMaxScaler | naive_bayes.MultinomialNB",
    "preprocessing.Binarizer | naive_bayes.BernoulliNB",
    "ensemble.VotingClassifier([naive_bayes.GaussianNB, tree.HoeffdingTreeClassifier()])",
    "forest.ARFClassifier(n_models=3, seed=1)",
    "forest.AMFClassifier(n_estimators=3, seed=1)",
    "ensemble.ADWINBaggingClassifier(tree.HoeffdingTreeClassifier(), n_models=3, seed=1)",
    "ensemble.AdaBoostClassifier(tree.HoeffdingTreeClassifier(), n_models=3, seed=1)",
    "ensemble.LeveragingBaggingClassifier(linear_model.LogisticRegression(), n_models=3, seed=1)",
    "ensemble.SRPClassifier(n_models=3, seed=1)",
    "neighbors.KNNClassifier(n_neighbors=3)",
    "linear_model.PAClassifier",
    "linear_model.SoftmaxRegression",
    "multiclass.OneVsOneClassifier(linear_model.LogisticRegression())",
    "multiclass.OutputCodeClassifier(linear_model.LogisticRegression(), code_size=4, seed=1)",
    "preprocessing.FeatureHasher(n_features=64, seed=1) | linear_model.LogisticRegression",
    "preprocessing.OneHotEncoder | linear_model.LogisticRegression",
    "dummy.PriorClassifier",
]


@pytest.mark.parametrize("spec", FAMILIES)
def test_every_model_family_loads_through_the_allow_list(
    spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unpickling, "ALLOWED_PACKAGES", ("river", "learners"))
    events = list(itertools.islice(datasets.Phishing(), 300))
    learner = PartitionLearner(parse_model_spec(spec), drift_action="retrain")
    for offset, (x, y) in enumerate(events[:250]):
        learner.step(x, y, offset)
    learner._request_retrain(100)  # a retrain in flight travels in the checkpoint
    blob = encode_checkpoint(PartitionState(learner, SequenceTracker()), next_offset=250, key=KEY)
    restored = decode_checkpoint(blob, key=KEY).state.learner  # type: ignore[attr-defined]
    for offset, (x, y) in enumerate(events[250:], start=250):
        assert restored.step(x, y, offset) == learner.step(x, y, offset), spec
