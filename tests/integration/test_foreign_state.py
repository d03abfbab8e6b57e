"""State from elsewhere is never applied, and restored state is shown at once (issue 10).

The daemon runs in-process (``run_until_idle``: the composition root and all) against
the real broker, twice on one state directory. Between the runs the topic is deleted and
created again, or the stored checkpoint is re-encoded to record another cluster or an
offset past the end of the log (what a truncated log looks like), or nothing happens.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from learners.checkpoint import decode_checkpoint, encode_checkpoint
from learners.origin import Origin
from stream.checkpoints.stores import LocalDirectoryStore
from tests.integration.daemon_process import Feeder, local_checkpoint, state_of
from tests.integration.kafka_helpers import create_topic, run_until_idle, sample

pytestmark = pytest.mark.integration

FIRST, SECOND = 1500, 900
REFUSALS = "streamlearn_checkpoint_load_failures_total"
LEARNED = "streamlearn_events_total"


def _feed(bootstrap: str, topic: str, count: int, seed: int) -> None:
    feeder = Feeder(bootstrap, topic, seed=seed)
    try:
        feeder.send(count)
    finally:
        feeder.close()


def _first_run(bootstrap: str, topic: str, state_dir: Path) -> Origin:
    """Learn FIRST events of a new topic; return where its checkpoint says it belongs."""
    create_topic(bootstrap, topic)
    _feed(bootstrap, topic, FIRST, seed=1)
    registry = run_until_idle(bootstrap, topic, state_dir=str(state_dir))
    assert sample(registry, LEARNED, topic=topic, partition=0, outcome="learned") == FIRST
    checkpoint = local_checkpoint(state_dir, topic, 0)
    assert checkpoint is not None and checkpoint.next_offset == FIRST
    assert checkpoint.origin is not None
    return checkpoint.origin


def _recreate(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic])
        deadline = time.monotonic() + 30
        while topic in admin.list_topics():
            assert time.monotonic() < deadline, "the topic was not deleted"
            time.sleep(0.2)
    finally:
        admin.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            create_topic(bootstrap, topic)
            return
        except KafkaError:  # still being deleted
            assert time.monotonic() < deadline, "the topic could not be created again"
            time.sleep(0.2)


def _rewrite_checkpoint(state_dir: Path, topic: str, **changes: object) -> None:
    """Re-encode the stored checkpoint with another origin or offset, as its writer would."""
    store = LocalDirectoryStore(state_dir)
    blob = store.load(topic, 0)
    assert blob is not None
    checkpoint = decode_checkpoint(blob, key=None)
    assert checkpoint.origin is not None
    origin = dataclasses.replace(checkpoint.origin, **changes.get("origin", {}))  # type: ignore[arg-type]
    next_offset = int(changes.get("next_offset", checkpoint.next_offset))  # type: ignore[call-overload]
    store.save(topic, 0, encode_checkpoint(checkpoint.state, next_offset=next_offset, key=None,
                                           origin=origin))  # fmt: skip


def test_a_recreated_topic_refuses_the_old_state_and_learns_every_new_event(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir = tmp_path / "state"
    before = _first_run(kafka_bootstrap, topic_name, state_dir)
    assert before.topic_id is not None and before.cluster_id is not None

    _recreate(kafka_bootstrap, topic_name)
    _feed(kafka_bootstrap, topic_name, SECOND, seed=2)
    with caplog.at_level(logging.INFO):
        registry = run_until_idle(kafka_bootstrap, topic_name, state_dir=str(state_dir))

    # Refused and counted; the new incarnation is learned from its first event (the
    # group's offsets went with the old topic: nothing to rebuild from).
    assert sample(registry, REFUSALS, reason="foreign_topic") == 1
    assert sample(registry, "streamlearn_rebuilds_total", reason="foreign_topic") == 0
    assert sample(registry, LEARNED, topic=topic_name, partition=0, outcome="learned") == SECOND
    final = local_checkpoint(state_dir, topic_name, 0)
    assert final is not None and final.origin is not None
    assert final.origin.topic_id not in (None, before.topic_id)
    assert state_of(final).learner.learned == SECOND
    refusal = next(r.getMessage() for r in caplog.records if "REFUSED" in r.getMessage())
    assert "foreign_topic" in refusal
    assert before.topic_id in refusal and final.origin.topic_id in refusal


def test_a_checkpoint_of_another_cluster_is_refused(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir = tmp_path / "state"
    before = _first_run(kafka_bootstrap, topic_name, state_dir)
    _rewrite_checkpoint(state_dir, topic_name, origin={"cluster_id": "another-cluster"})
    _feed(kafka_bootstrap, topic_name, SECOND, seed=3)
    with caplog.at_level(logging.INFO):
        registry = run_until_idle(kafka_bootstrap, topic_name, state_dir=str(state_dir))

    assert sample(registry, REFUSALS, reason="foreign_cluster") == 1
    # Its offset is no position in this log: the learner is rebuilt from this log up to
    # the group's committed offset (issue 16), then learns the new events live.
    assert sample(registry, "streamlearn_rebuilds_total", reason="foreign_cluster") == 1
    assert sample(registry, LEARNED, topic=topic_name, partition=0, outcome="learned") == SECOND
    final = local_checkpoint(state_dir, topic_name, 0)
    assert state_of(final).learner.learned == FIRST + SECOND
    assert final is not None and final.origin == before
    refusal = next(r.getMessage() for r in caplog.records if "REFUSED" in r.getMessage())
    assert "another-cluster" in refusal and str(before.cluster_id) in refusal


def test_a_checkpoint_offset_past_the_end_of_the_log_is_refused(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir = tmp_path / "state"
    _first_run(kafka_bootstrap, topic_name, state_dir)
    # As if the log had been truncated under the checkpoint.
    _rewrite_checkpoint(state_dir, topic_name, next_offset=FIRST + 5000)
    _feed(kafka_bootstrap, topic_name, SECOND, seed=4)
    event_log = tmp_path / "run.jsonl"
    with caplog.at_level(logging.INFO):
        registry = run_until_idle(
            kafka_bootstrap, topic_name, state_dir=str(state_dir), event_log=str(event_log)
        )

    assert sample(registry, REFUSALS, reason="offset_out_of_range") == 1
    # Not a silent wait at offset 6500: rebuilt up to the committed offset 1500 (issue
    # 16), then the new events.
    assert sample(registry, "streamlearn_rebuilds_total", reason="offset_out_of_range") == 1
    assert sample(registry, LEARNED, topic=topic_name, partition=0, outcome="learned") == SECOND
    final = local_checkpoint(state_dir, topic_name, 0)
    assert final is not None and final.next_offset == FIRST + SECOND
    assert state_of(final).learner.learned == FIRST + SECOND
    assert any(
        "REFUSED (offset_out_of_range)" in r.getMessage() and f"offset {FIRST + 5000}" in
        r.getMessage() for r in caplog.records
    )  # fmt: skip
    # The run log tells it too: the refusal, then the rebuild's start and end.
    lines = [json.loads(line) for line in event_log.read_text().splitlines()]
    told = [(ln["kind"], ln["offset"], ln.get("reason"), ln.get("phase"), ln.get("result"))
            for ln in lines if ln["kind"] in ("refused", "rebuild")]  # fmt: skip
    assert told == [
        ("refused", FIRST + 5000, "offset_out_of_range", None, None),
        ("rebuild", 0, "offset_out_of_range", "start", None),
        ("rebuild", FIRST - 1, "offset_out_of_range", "end", "finished"),
    ]


PER_PARTITION_GAUGES = (
    ("streamlearn_accuracy", {"window": "cumulative"}),
    ("streamlearn_accuracy", {"window": "rolling"}),
    ("streamlearn_adwin_width", {}),
    ("streamlearn_model_version", {}),
    ("streamlearn_learned_events", {}),
)


def test_restored_gauges_equal_the_values_before_the_restart(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    create_topic(kafka_bootstrap, topic_name)
    _feed(kafka_bootstrap, topic_name, FIRST, seed=5)
    settings = {"state_dir": str(state_dir), "drift_action": "reset"}
    first = run_until_idle(kafka_bootstrap, topic_name, **settings)
    # No new event: whatever the restarted daemon shows, it shows from the checkpoint.
    second = run_until_idle(kafka_bootstrap, topic_name, **settings)

    def gauges(registry: object) -> list[float | None]:
        return [
            registry.get_sample_value(  # type: ignore[attr-defined]
                name, {"topic": topic_name, "partition": "0", **labels}
            )
            for name, labels in PER_PARTITION_GAUGES
        ]

    before, after = gauges(first), gauges(second)
    assert None not in before and before[4] == FIRST
    assert after == before
    assert sample(second, LEARNED, topic=topic_name, partition=0, outcome="learned") == 0
