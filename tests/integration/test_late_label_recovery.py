"""kill -9 at random moments with labels coming 200 records late: the predictions waiting
for their labels travel in the checkpoint, so every label is joined exactly once,
learned == joined, and the model is the one an uninterrupted learner builds. The same with
the labels on their own topic (``--labels-topic``), whose offset travels in the checkpoint
too."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from learners.prequential import PartitionLearner
from stream.daemon.app import learner_factory
from stream.events import Event, LateLabel, decode
from stream.settings import load_settings
from stream.tools.generators import concept_stream
from stream.tools.produce import ProduceOptions, produce
from tests.integration.daemon_process import (
    DaemonProcess,
    checkpointed_offset,
    daemons,
    local_checkpoint,
    state_of,
)
from tests.integration.kafka_helpers import create_topic, read_all
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

SEED = 1313
KILLS = 5
DELAY = 200
HELD_BACK = 1_500  # events written before the daemon starts
LIVE = 5_000  # events written while it is being killed
TOTAL_RECORDS = 2 * (HELD_BACK + LIVE)  # every event, then its label
LEARNING = {
    "drift-action": "reset",
    "checkpoint-every-events": 300,
    "checkpoint-interval": 0.5,
    "max-poll-records": 200,
}


def reference_learner(bootstrap: str, topic: str) -> PartitionLearner:
    """A learner built as the daemon builds one, told the whole log without a break."""
    settings = load_settings(
        {"bootstrap_servers": bootstrap, "topic": topic, "drift_action": "reset"}, environ={}
    )
    learner = learner_factory(settings)(TopicPartition(topic, 0))
    for record in read_all(bootstrap, topic):
        decoded = decode(record.value)
        at = record.timestamp * 0.001
        if isinstance(decoded, LateLabel):
            learner.join(decoded.id, decoded.label, at, record.offset)
        else:
            assert isinstance(decoded, Event) and decoded.id is not None
            learner.hold(decoded.features, decoded.id, at, record.offset)
    return learner


def probe_predictions(learner: PartitionLearner) -> list[Any]:
    return [learner.model.predict_proba_one(x) for x, _ in concept_stream("sea", seed=3, count=200)]


def _options(bootstrap: str, topic: str, seed: int, count: int, **more: Any) -> ProduceOptions:
    return ProduceOptions(
        bootstrap, topic, count=count, seed=seed, generator="sine", drift_at=(count // 2,),
        partitions=1, label_delay=DELAY, **more,
    )  # fmt: skip


def kill_and_restart(
    daemon: DaemonProcess, rng: random.Random, kills: int, longest_gap_s: float
) -> None:
    """kill -9 the daemon ``kills`` times at random moments (mid-batch, mid-checkpoint,
    mid-join ...), each time starting it again and waiting for its assignment."""
    for _ in range(kills):
        time.sleep(rng.uniform(0.05, longest_gap_s))
        daemon.kill()
        daemon.start()
        wait_until(lambda: "assigned" in daemon.log(), 60, "the restarted daemon's assignment")


def test_kill_minus_9_joins_every_late_label_exactly_once(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic_name, 1)
    produce(_options(kafka_bootstrap, topic_name, SEED, HELD_BACK))
    state_dir = tmp_path / "state"
    daemon = DaemonProcess(
        kafka_bootstrap, topic_name, tmp_path / "daemon.log", {"state-dir": state_dir, **LEARNING}
    )
    rng = random.Random(SEED)
    live = threading.Thread(
        target=produce, args=(_options(kafka_bootstrap, topic_name, SEED + 1, LIVE, rate=700.0),)
    )
    with daemons(daemon):
        daemon.start()
        wait_until(
            lambda: daemon.metric_sum("streamlearn_checkpoints_total") >= 2,
            60,
            "two checkpoints before the first kill",
        )
        live.start()
        kill_and_restart(daemon, rng, KILLS, longest_gap_s=2.0)
        live.join(120)
        assert not live.is_alive()
        wait_until(
            lambda: checkpointed_offset(state_dir, topic_name) == TOTAL_RECORDS,
            90,
            "the last run to checkpoint the end of the log",
        )
        assert daemon.metric("streamlearn_pending_labels") == 0
        assert daemon.terminate() == 0

    assert daemon.log(whole=True).count("restored checkpoint") == KILLS
    final = state_of(local_checkpoint(state_dir, topic_name, 0)).learner
    pending = final.pending
    assert pending is not None
    events = HELD_BACK + LIVE
    assert (final.learned, pending.joined, final.predicted, len(pending)) == (
        events, events, events, 0,
    )  # fmt: skip
    assert (pending.unknown, pending.duplicate, pending.expired) == (0, 0, 0)

    reference = reference_learner(kafka_bootstrap, topic_name)
    assert reference.learned == events
    assert final.model_version == reference.model_version > 1  # the drifts were seen
    assert final.cumulative.hits == reference.cumulative.hits
    assert probe_predictions(final) == probe_predictions(reference)


def test_kill_minus_9_with_labels_on_their_own_topic_joins_each_label_once(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    # Lean: fewer events and kills than the in-band case above; the same checks of
    # exactly once, with the labels offset restored from the checkpoint at each restart.
    held_back, live, kills = 600, 1_500, 3
    labels = f"{topic_name}-labels"
    create_topic(kafka_bootstrap, topic_name, 1)
    produce(_options(kafka_bootstrap, topic_name, SEED, held_back, labels_topic=labels))
    state_dir = tmp_path / "state"
    options = {"state-dir": state_dir, "labels-topic": labels, **LEARNING}
    daemon = DaemonProcess(kafka_bootstrap, topic_name, tmp_path / "daemon.log", options)
    rng = random.Random(SEED)
    more = _options(kafka_bootstrap, topic_name, SEED + 1, live, rate=600.0, labels_topic=labels)
    feeder = threading.Thread(target=produce, args=(more,))
    events = held_back + live

    def all_checkpointed() -> bool:
        checkpoint = local_checkpoint(state_dir, topic_name, 0)
        return checkpoint is not None and (
            checkpoint.next_offset,
            state_of(checkpoint).labels_offset,
        ) == (events, events)

    with daemons(daemon):
        daemon.start()
        wait_until(
            lambda: daemon.metric_sum("streamlearn_checkpoints_total") >= 1,
            60,
            "a checkpoint before the first kill",
        )
        feeder.start()
        kill_and_restart(daemon, rng, kills, longest_gap_s=1.5)
        feeder.join(60)
        assert not feeder.is_alive()
        wait_until(all_checkpointed, 90, "the last run to checkpoint the end of both topics")
        assert daemon.metric("streamlearn_pending_labels") == 0
        assert daemon.terminate() == 0

    assert daemon.log(whole=True).count("restored checkpoint") == kills
    final = state_of(local_checkpoint(state_dir, topic_name, 0)).learner
    pending = final.pending
    assert pending is not None
    assert (final.learned, pending.joined, final.predicted, len(pending)) == (
        events, events, events, 0,
    )  # fmt: skip
    assert (pending.unknown, pending.duplicate, pending.expired) == (0, 0, 0)
