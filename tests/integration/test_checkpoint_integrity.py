"""Bad checkpoints are refused, counted and never unpickled (issues 3, 11 and 17).

Every planted checkpoint carries a payload whose unpickling would create a file (a
pickle is code). Each is broken in another way (one is intact and correctly signed:
only the unpickler's allow-list stops it); the daemon, run with a checkpoint
key, must refuse each with the right reason, count it in
``streamlearn_checkpoint_load_failures_total{reason}``, start that partition afresh
from the log, and the file must never appear.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import river
from crc32c import crc32c

from learners.checkpoint import encode_checkpoint
from stream.checkpoints.stores import LocalDirectoryStore
from tests.integration.daemon_process import (
    DaemonProcess,
    Feeder,
    daemons,
    local_checkpoint,
    state_of,
)
from tests.integration.kafka_helpers import create_topic

pytestmark = pytest.mark.integration

KEY = b"integrity-test-key"
PER_PARTITION = 500


class Trap:
    """Unpickling this opens (creates) ``path``: proof that a payload was executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, str]]:
        return io.open, (str(self.path), "w")


def signed(trap: Trap) -> bytes:
    return encode_checkpoint(trap, next_offset=0, key=KEY)


def tampered(trap: Trap) -> bytes:
    body = bytearray(signed(trap)[:-4])
    body[-40] ^= 0x01  # a payload byte, just before the 32-byte HMAC
    # Whoever edits a checkpoint can fix its CRC-32C; only the HMAC needs the key.
    return bytes(body) + struct.pack(">I", crc32c(bytes(body)))


def corrupt(trap: Trap) -> bytes:
    blob = bytearray(signed(trap))
    blob[len(blob) // 2] ^= 0x10  # one bit, as a disk or a copy might flip it
    return bytes(blob)


def truncated(trap: Trap) -> bytes:
    # Cut inside its prefix; cut later, the CRC-32C no longer matches: "corrupt".
    return signed(trap)[:10]


def foreign_version(trap: Trap, monkeypatch: pytest.MonkeyPatch) -> bytes:
    # Correctly signed by a River that is not this one: only the version check stops it.
    with monkeypatch.context() as patch:
        patch.setattr(river, "__version__", "0.0.1")
        return signed(trap)


def unsigned(trap: Trap) -> bytes:
    return encode_checkpoint(trap, next_offset=0, key=None)


def test_bad_checkpoints_are_refused_counted_and_never_unpickled(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trap_path = tmp_path / "payload-was-executed"
    trap = Trap(trap_path)
    planted = {
        0: ("bad_signature", tampered(trap)),
        1: ("truncated", truncated(trap)),
        2: ("river_version", foreign_version(trap, monkeypatch)),
        3: ("unsigned", unsigned(trap)),
        4: ("corrupt", corrupt(trap)),
        5: ("forbidden_class", signed(trap)),  # intact and signed: it names io.open
    }
    state_dir = tmp_path / "state"
    store = LocalDirectoryStore(state_dir)
    for partition, (_, blob) in planted.items():
        store.save(topic_name, partition, blob)
    # A half-written checkpoint (a temporary the store never renamed) is never read.
    half_written = store.path_for(topic_name, 0).name
    (state_dir / f".{half_written}.crash.tmp").write_bytes(signed(trap))

    create_topic(kafka_bootstrap, topic_name, len(planted))
    feeder = Feeder(kafka_bootstrap, topic_name, len(planted), seed=9)
    feeder.send(PER_PARTITION * len(planted))
    feeder.close()
    daemon = DaemonProcess(
        kafka_bootstrap,
        topic_name,
        tmp_path / "daemon.log",
        {"state-dir": state_dir, "checkpoint-interval": 0.5},
        env={"STREAMLEARN_CHECKPOINT_KEY": KEY.decode()},
    )
    with daemons(daemon):
        daemon.start()
        daemon.wait_until(
            lambda: (
                daemon.metric_sum("streamlearn_events_total", outcome="learned") == feeder.total
            ),
            60,
            "the daemon to learn every partition from the start",
        )
        failures = {
            reason: daemon.metric("streamlearn_checkpoint_load_failures_total", reason=reason)
            for reason, _ in planted.values()
        }
        assert daemon.terminate() == 0

    assert failures == {reason: 1 for reason, _ in planted.values()}
    assert not trap_path.exists(), "a refused checkpoint was unpickled"
    for partition in planted:
        # Started afresh from the log's start, and checkpointed over the bad one.
        final = state_of(local_checkpoint(state_dir, topic_name, partition, key=KEY))
        counts = (final.learner.learned, final.sequence.gaps, final.sequence.duplicates)
        assert counts == (PER_PARTITION, 0, 0)
