"""Scale-out: partitions move between instances with their models (issue 3, test 2).

Two daemons share a 4-partition topic through the Kafka checkpoint store; one dies by
SIGKILL mid-stream, the survivor takes its partitions over from their checkpoints,
then a third joins and takes some from the survivor. The final checkpoints in the
checkpoint topic must account for every (partition, seq) exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.daemon_process import (
    DaemonProcess,
    Feeder,
    daemons,
    kafka_checkpoint,
    state_of,
)
from tests.integration.kafka_helpers import create_topic

pytestmark = pytest.mark.integration

PARTITIONS = 4
HELD_BACK = 2_000
TOTAL = 24_000
RATE = 1_000.0


def test_partitions_move_with_their_state_when_instances_die_and_join(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic_name, PARTITIONS)
    checkpoint_topic = f"{topic_name}-checkpoints"
    feeder = Feeder(kafka_bootstrap, topic_name, PARTITIONS, seed=5)
    feeder.send(HELD_BACK)
    options = {
        "checkpoint-store": "kafka",
        "checkpoint-topic": checkpoint_topic,
        "checkpoint-every-events": 300,
        "checkpoint-interval": 0.5,
        "max-poll-records": 200,
        "stop-after-idle": 4,
    }

    def instance(name: str) -> DaemonProcess:
        return DaemonProcess(
            kafka_bootstrap,
            topic_name,
            tmp_path / f"{name}.log",
            options,
            # The Kafka checkpoint store refuses to run unsigned (issue 16).
            env={"STREAMLEARN_CHECKPOINT_KEY": "scale-out-key"},
        )

    def learned(daemon: DaemonProcess) -> float:
        return daemon.metric_sum("streamlearn_events_total", outcome="learned")

    a, b, c = instance("a"), instance("b"), instance("c")
    with daemons(a, b, c):
        a.start()
        b.start()
        a.wait_assigned()
        b.wait_assigned()
        a.wait_until(
            lambda: a.metric_sum("streamlearn_checkpoints_total") >= 2,
            60,
            "the first instance to checkpoint",
        )
        before = learned(a)
        feeder.send_in_background(TOTAL - HELD_BACK, RATE)
        # Killed mid-stream: once it learned a good part of the live events.
        a.wait_until(lambda: learned(a) >= before + 1_000, 60, "a to learn the live stream")
        restored = len(b.restored())
        a.kill()
        # The survivor restores the dead one's partitions from the checkpoint topic.
        b.wait_until(lambda: len(b.restored()) > restored, 60, "the survivor to take over")
        # The survivor serves every partition for a while before the newcomer joins.
        since = learned(b)
        b.wait_until(lambda: learned(b) >= since + 1_000, 60, "the survivor to go on learning")
        c.start()
        c.wait_until(lambda: c.restored(), 60, "the newcomer to take over")
        feeder.join(120)
        feeder.close()
        assert b.wait(120) == 0
        assert c.wait(120) == 0

    for partition in range(PARTITIONS):
        checkpoint = kafka_checkpoint(
            kafka_bootstrap, checkpoint_topic, topic_name, partition, key=b"scale-out-key"
        )
        state = state_of(checkpoint)
        produced = feeder.produced[partition]
        assert checkpoint is not None and checkpoint.next_offset == produced
        assert (state.learner.learned, state.sequence.gaps, state.sequence.duplicates) == (
            produced,
            0,
            0,
        ), f"partition {partition}"
