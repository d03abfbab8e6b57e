"""kill -9 at random moments loses nothing and teaches nothing twice (issue 3, test 1).

The daemon runs as a real subprocess with a local checkpoint store and is killed with
SIGKILL at seeded random moments while events keep arriving. After the last restart
has caught up, its checkpoint must account for every event exactly once, and its model
must be the very model an uninterrupted learner builds from the same log.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from learners.prequential import PartitionLearner
from stream.daemon.app import learner_factory
from stream.events import Event, decode
from stream.settings import load_settings
from stream.tools.generators import concept_stream
from tests.integration.daemon_process import (
    DaemonProcess,
    Feeder,
    checkpointed_offset,
    daemons,
    local_checkpoint,
    state_of,
)
from tests.integration.kafka_helpers import create_topic, read_all

pytestmark = pytest.mark.integration

SEED = 20240603
KILLS = 6
TOTAL = 16_000
HELD_BACK = 1_500  # written before the daemon starts; the rest only after 2 checkpoints
RATE = 700.0  # events/s: the stream keeps flowing while the kills land
# Enough state to be worth comparing: two concept changes, so ADWIN fires and resets.
DRIFT_AT = (5_000, 11_000)
SIGTERMS = 5
SIGTERM_TOTAL = 10_000
# Small polls: the held-back input alone yields several checkpoints, and kills land mid-batch.
LEARNING = {
    "drift-action": "reset",
    "checkpoint-every-events": 300,
    "checkpoint-interval": 0.5,
    "max-poll-records": 200,
}


def reference_learner(bootstrap: str, topic: str) -> PartitionLearner:
    """A learner built exactly as the daemon builds one, fed the whole log without a break."""
    settings = load_settings(
        {"bootstrap_servers": bootstrap, "topic": topic, "drift_action": "reset"}, environ={}
    )
    learner = learner_factory(settings)(TopicPartition(topic, 0))
    for record in read_all(bootstrap, topic):
        event = decode(record.value)
        assert isinstance(event, Event)
        learner.step(event.features, event.label, record.offset)
    return learner


def probe_predictions(learner: PartitionLearner) -> list[Any]:
    probes = concept_stream("sea", seed=SEED + 1, count=300)
    return [learner.model.predict_proba_one(x) for x, _ in probes]


def test_kill_minus_9_at_random_moments_loses_and_repeats_nothing(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic_name, 1)
    feeder = Feeder(kafka_bootstrap, topic_name, seed=SEED, drift_at=DRIFT_AT)
    feeder.send(HELD_BACK)
    state_dir = tmp_path / "state"
    options = {"state-dir": state_dir, **LEARNING}
    daemon = DaemonProcess(kafka_bootstrap, topic_name, tmp_path / "daemon.log", options)
    rng = random.Random(SEED)
    with daemons(daemon):
        daemon.start()
        daemon.wait_until(
            lambda: daemon.metric_sum("streamlearn_checkpoints_total") >= 2,
            60,
            "two checkpoints before the first kill",
        )
        feeder.send_in_background(TOTAL - HELD_BACK, RATE)
        for _ in range(KILLS):
            # A random moment once the partition is held: mid-batch, mid-checkpoint, ...
            time.sleep(rng.uniform(0.05, 2.0))
            daemon.kill()
            daemon.start()
            daemon.wait_assigned()
        feeder.join(120)
        feeder.close()
        # The last run must show no gap and no duplicate in its own exported counters.
        daemon.wait_assigned()
        daemon.wait_until(
            lambda: checkpointed_offset(state_dir, topic_name) == TOTAL,
            90,
            "the last run to checkpoint the end of the log",
        )
        assert daemon.metric("streamlearn_sequence_gaps_total") == 0
        assert daemon.metric("streamlearn_sequence_duplicates_total") == 0
        assert daemon.terminate() == 0

    # Every restart resumed from a checkpoint, none from scratch.
    assert len(daemon.restored(whole=True)) == KILLS
    final = state_of(local_checkpoint(state_dir, topic_name, 0))
    assert (final.learner.learned, final.sequence.gaps, final.sequence.duplicates) == (
        TOTAL,
        0,
        0,
    )
    assert final.sequence.next_expected == TOTAL

    reference = reference_learner(kafka_bootstrap, topic_name)
    assert reference.learned == TOTAL
    assert final.learner.model_version == reference.model_version > 1  # the drifts were seen
    assert final.learner.cumulative.get() == reference.cumulative.get()
    assert probe_predictions(final.learner) == probe_predictions(reference)


def test_sigterm_at_random_moments_exits_0_and_reprocesses_nothing(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic_name, 1)
    predictions = f"{topic_name}-predictions"
    feeder = Feeder(kafka_bootstrap, topic_name, seed=SEED + 2)
    feeder.send(HELD_BACK)
    state_dir = tmp_path / "state"
    options = {"state-dir": state_dir, "predictions-topic": predictions, **LEARNING}
    daemon = DaemonProcess(kafka_bootstrap, topic_name, tmp_path / "daemon.log", options)
    rng = random.Random(SEED + 3)
    codes = []
    with daemons(daemon):
        daemon.start()
        daemon.wait_assigned()
        feeder.send_in_background(SIGTERM_TOTAL - HELD_BACK, RATE)
        for _ in range(SIGTERMS):
            time.sleep(rng.uniform(0.05, 2.0))
            codes.append(daemon.terminate())
            daemon.start()
            # From when it serves on: start-up, join, restore, learning.
            daemon.wait_serving()
        feeder.join(120)
        feeder.close()
        daemon.wait_assigned()
        daemon.wait_until(
            lambda: checkpointed_offset(state_dir, topic_name) == SIGTERM_TOTAL,
            90,
            "the last run to checkpoint the end of the log",
        )
        assert daemon.metric("streamlearn_sequence_duplicates_total") == 0
        codes.append(daemon.terminate())

    assert codes == [0] * (SIGTERMS + 1)
    final = state_of(local_checkpoint(state_dir, topic_name, 0))
    assert (final.learner.learned, final.sequence.gaps, final.sequence.duplicates) == (
        SIGTERM_TOTAL,
        0,
        0,
    )
    # A clean stop flushes, checkpoints and commits everything it handled: no offset is
    # handled (and its prediction published) twice.
    offsets = Counter(json.loads(r.value)["offset"] for r in read_all(kafka_bootstrap, predictions))
    assert sorted(offsets) == list(range(SIGTERM_TOTAL))
    assert set(offsets.values()) == {1}
