"""Checkpoint stores: atomic local files, and a Kafka topic against a real broker."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.admin import KafkaAdminClient
from river import linear_model

from learners.checkpoint import decode_checkpoint, encode_checkpoint
from learners.exceptions import CheckpointError
from learners.origin import Origin
from learners.prequential import PartitionLearner
from learners.sequence import SequenceTracker
from learners.state import PartitionState
from stream.checkpoints.stores import (
    CheckpointStore,
    CheckpointStoreError,
    CheckpointTooLargeError,
    LocalDirectoryStore,
)
from stream.exceptions import SettingsError
from stream.kafka.checkpoint_topic import KafkaTopicStore

# -- LocalDirectoryStore ----------------------------------------------------------------


def test_local_load_of_a_missing_checkpoint_is_none(tmp_path: Path) -> None:
    store = LocalDirectoryStore(tmp_path / "state")
    assert isinstance(store, CheckpointStore)
    assert store.load("events", 0) is None


def test_local_save_replaces_and_keeps_partitions_apart(tmp_path: Path) -> None:
    store = LocalDirectoryStore(tmp_path)
    store.save("events", 0, b"first")
    store.save("events", 0, b"second")
    store.save("events", 1, b"other partition")
    store.save("events-0", 0, b"other topic")
    assert store.load("events", 0) == b"second"
    assert store.load("events", 1) == b"other partition"
    assert store.load("events-0", 0) == b"other topic"
    # A second store on the same directory (a restarted daemon) sees the same.
    assert LocalDirectoryStore(tmp_path).load("events", 0) == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "events-0-0.ckpt", "events-0.ckpt", "events-1.ckpt",
    ]  # fmt: skip


def test_local_file_names_stay_inside_the_directory(tmp_path: Path) -> None:
    store = LocalDirectoryStore(tmp_path / "state")
    for topic in ("../escape", "a/b", "..", "x:y"):
        store.save(topic, 3, topic.encode())
        assert store.path_for(topic, 3).parent == tmp_path / "state"
        assert store.load(topic, 3) == topic.encode()
    assert list(tmp_path.iterdir()) == [tmp_path / "state"]
    with pytest.raises(ValueError):
        store.save("events", -1, b"x")


def test_local_failed_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalDirectoryStore(tmp_path)
    store.save("events", 0, b"good")

    def crash(*_: object) -> None:
        raise OSError("disk gone")

    # The process "dies" between writing the temporary and renaming it.
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.save("events", 0, b"never seen")
    monkeypatch.undo()
    assert store.load("events", 0) == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["events-0.ckpt"]


def test_local_save_fsyncs_the_file_and_then_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds: list[str] = []
    real_fsync: Callable[[int], None] = os.fsync

    def recording_fsync(fd: int) -> None:
        kinds.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    LocalDirectoryStore(tmp_path).save("events", 0, b"blob")
    assert kinds == ["file", "dir"]


def test_local_half_written_temporary_is_never_loaded(tmp_path: Path) -> None:
    store = LocalDirectoryStore(tmp_path)
    # What a crash mid-save leaves behind: a temporary next to the target's name.
    leftover = tmp_path / ".events-0.ckpt.k2j4h.tmp"
    leftover.write_bytes(b"half writ")
    assert store.load("events", 0) is None
    store.save("events", 0, b"complete")
    assert store.load("events", 0) == b"complete"
    assert leftover.exists()  # recent: perhaps another live process's, left alone


def test_local_stale_temporaries_are_removed_on_start(tmp_path: Path) -> None:
    old = tmp_path / ".events-0.ckpt.old.tmp"
    recent = tmp_path / ".events-1.ckpt.new.tmp"
    unrelated = tmp_path / ".editor-swap.tmp"  # not the store's: never touched
    for temp in (old, recent, unrelated):
        temp.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    os.utime(unrelated, (two_hours_ago, two_hours_ago))
    store = LocalDirectoryStore(tmp_path, stale_temp_s=3600)
    assert not old.exists()
    assert recent.exists()
    assert unrelated.exists()
    assert store.load("events", 0) is None


# -- KafkaTopicStore: settings refused without a broker ---------------------------------


def test_kafka_store_refuses_bad_settings() -> None:
    with pytest.raises(SettingsError, match="unknown"):
        KafkaTopicStore("127.0.0.1:1", "checkpoints", no_such_setting=1)
    with pytest.raises(SettingsError, match="acks"):
        KafkaTopicStore("127.0.0.1:1", "checkpoints", acks=1)
    with pytest.raises(SettingsError, match="topic"):
        KafkaTopicStore("127.0.0.1:1", "bad topic/name")
    with pytest.raises(SettingsError, match="max_checkpoint_bytes"):
        KafkaTopicStore("127.0.0.1:1", "checkpoints", max_checkpoint_bytes=0)


def test_kafka_store_refuses_an_oversized_checkpoint_before_sending() -> None:
    # Port 1 has no broker: the size check must come before any connection.
    store = KafkaTopicStore("127.0.0.1:1", "checkpoints", max_checkpoint_bytes=1000)
    with pytest.raises(CheckpointTooLargeError, match="max_checkpoint_bytes=1000"):
        store.save("events", 0, b"x" * 1001)


# -- KafkaTopicStore against the real broker ----------------------------------------------


@pytest.fixture
def kafka_store(kafka_bootstrap: str, topic_name: str) -> Iterator[KafkaTopicStore]:
    store = KafkaTopicStore(
        kafka_bootstrap, f"{topic_name}-ckpt", timeout_s=20.0, client_id="checkpoint-store-test"
    )
    yield store
    store.close()


@pytest.mark.integration
def test_kafka_missing_checkpoint_is_none(kafka_store: KafkaTopicStore) -> None:
    store: CheckpointStore = kafka_store  # statically: it is a CheckpointStore
    assert isinstance(store, CheckpointStore)
    # The topic does not exist yet: the store creates it and finds it empty.
    assert kafka_store.load("events", 0) is None
    kafka_store.save("events", 1, b"partition one")
    assert kafka_store.load("events", 0) is None


@pytest.mark.integration
def test_kafka_checkpoint_moves_to_another_instance(
    kafka_bootstrap: str, kafka_store: KafkaTopicStore
) -> None:
    key = b"shared-group-key"
    kafka_store.save("events", 0, encode_checkpoint({"v": 1}, next_offset=10, key=key))
    kafka_store.save("events", 2, encode_checkpoint({"v": "p2"}, next_offset=5, key=key))
    kafka_store.save("events", 0, encode_checkpoint({"v": 2}, next_offset=20, key=key))
    # A second daemon instance, as after a rebalance, reads what the first wrote.
    other = KafkaTopicStore(kafka_bootstrap, kafka_store.topic, timeout_s=20.0)
    try:
        blob = other.load("events", 0)
        assert blob is not None
        checkpoint = decode_checkpoint(blob, key=key)
        assert (checkpoint.state, checkpoint.next_offset) == ({"v": 2}, 20)
        other_blob = other.load("events", 2)
        assert other_blob is not None
        assert decode_checkpoint(other_blob, key=key).state == {"v": "p2"}
        assert other.load("other-topic", 0) is None
        # ...and it writes the next version, which the first instance sees.
        other.save("events", 0, b"third")
    finally:
        other.close()
    assert kafka_store.load("events", 0) == b"third"


@pytest.mark.integration
def test_kafka_checkpoint_larger_than_kafkas_default_message_size(
    kafka_store: KafkaTopicStore,
) -> None:
    big = os.urandom(3 * 1024 * 1024)  # random: compression could not hide its size
    kafka_store.save("events", 0, big)
    kafka_store.save("events", 1, b"small after big")
    assert kafka_store.load("events", 0) == big
    assert kafka_store.load("events", 1) == b"small after big"


@pytest.mark.integration
def test_kafka_store_refuses_a_checkpoint_topic_with_several_partitions(
    kafka_bootstrap: str, topic_name: str
) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics(
            {topic_name: {"num_partitions": 2, "replication_factor": 1}}, wait_for_metadata=True
        )
    finally:
        admin.close()
    store = KafkaTopicStore(kafka_bootstrap, topic_name, timeout_s=20.0)
    try:
        with pytest.raises(CheckpointStoreError, match="2 partitions"):
            store.save("events", 0, b"blob")
    finally:
        store.close()


@pytest.mark.integration
def test_kafka_store_reports_an_unreachable_broker() -> None:
    from stream.kafka.tansu import free_port

    store = KafkaTopicStore(
        f"127.0.0.1:{free_port()}",
        "checkpoints",
        timeout_s=2.0,
        request_timeout_ms=2000,
        bootstrap_timeout_ms=2000,
    )
    with pytest.raises(CheckpointStoreError, match="cannot reach"):
        store.save("events", 0, b"blob")
    store.close()


# -- a flipped bit in a stored checkpoint is refused, signed or not ----------------------

KEY = b"store-test-key"


def _stored_state() -> PartitionState:
    learner = PartitionLearner(linear_model.LogisticRegression())
    for offset in range(30):
        learner.step({"x": offset % 5, "y": offset % 3}, offset % 5 > 2, offset)
    return PartitionState(learner, SequenceTracker())


# Built once per key: every example of a test must see a blob of the same length.
_BLOBS = {
    key: encode_checkpoint(
        _stored_state(), next_offset=30, key=key, origin=Origin("events", 0, "c", "t", 1)
    )
    for key in (None, KEY)
}
_FLIP = st.data()


def _flip(blob: bytes, bit: int) -> bytes:
    damaged = bytearray(blob)
    damaged[bit // 8] ^= 1 << (bit % 8)
    return bytes(damaged)


def _assert_refused(blob: bytes | None, key: bytes | None, bit: int) -> None:
    assert blob is not None
    with pytest.raises(CheckpointError) as caught:
        decode_checkpoint(blob, key=key)
    assert caught.value.reason == ("bad_magic" if bit < 7 * 8 else "corrupt"), bit


@pytest.mark.parametrize("key", [None, KEY])
def test_local_file_with_a_flipped_bit_is_refused(tmp_path: Path, key: bytes | None) -> None:
    store = LocalDirectoryStore(tmp_path)
    blob = _BLOBS[key]
    assert isinstance(decode_checkpoint(blob, key=key).state, PartitionState)

    @settings(max_examples=200, deadline=None)
    @given(data=_FLIP)
    def flipped_on_disk(data: st.DataObject) -> None:
        store.save("events", 0, blob)
        bit = data.draw(st.integers(0, len(blob) * 8 - 1), label="bit")
        path = store.path_for("events", 0)
        path.write_bytes(_flip(path.read_bytes(), bit))  # what a disk or a copy did
        _assert_refused(store.load("events", 0), key, bit)

    flipped_on_disk()


@pytest.mark.integration
@pytest.mark.parametrize("key", [None, KEY])
def test_kafka_record_with_a_flipped_bit_is_refused(
    kafka_store: KafkaTopicStore, key: bytes | None
) -> None:
    blob = _BLOBS[key]
    kafka_store.save("events", 0, blob)
    intact = kafka_store.load("events", 0)
    assert intact is not None and decode_checkpoint(intact, key=key).next_offset == 30

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=_FLIP)
    def flipped_in_the_topic(data: st.DataObject) -> None:
        bit = data.draw(st.integers(0, len(blob) * 8 - 1), label="bit")
        kafka_store.save("events", 0, _flip(blob, bit))
        _assert_refused(kafka_store.load("events", 0), key, bit)

    flipped_in_the_topic()
