"""Checkpoint key rotation across restarts, with the Kafka checkpoint store (issue 16).

Keys are rotated as docs/security.md says: the new key first, the old one second. Nothing
is lost across the rotation (no refusal, every event learned once), the checkpoints are
then signed with the new key alone; a checkpoint whose key is no longer listed is refused
as ``bad_signature`` and the partition is rebuilt from the log.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from learners.exceptions import CheckpointError
from tests.integration.daemon_process import Feeder, kafka_checkpoint, state_of
from tests.integration.kafka_helpers import create_topic, run_until_idle, sample

pytestmark = pytest.mark.integration

OLD, NEW, OTHER = "old-key-7f3a", "new-key-91cc", "unrelated-key-0b2e"


def test_keys_rotate_across_a_restart_and_a_retired_key_is_refused(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic_name)
    checkpoints = f"{topic_name}-checkpoints"
    feeder = Feeder(kafka_bootstrap, topic_name, seed=3)

    def run(keys: str) -> tuple[float, float, float]:
        registry = run_until_idle(
            kafka_bootstrap,
            topic_name,
            checkpoint_store="kafka",
            checkpoint_topic=checkpoints,
            checkpoint_key=keys,
        )
        refusals = sum(
            sample(registry, "streamlearn_checkpoint_load_failures_total", reason=reason)
            for reason in ("bad_signature", "unsigned", "corrupt")
        )
        rebuilds = sample(registry, "streamlearn_rebuilds_total", reason="bad_signature")
        learned = sample(registry, "streamlearn_learned_events", topic=topic_name, partition=0)
        return refusals, rebuilds, learned

    def checkpoint_with(key: str) -> int:
        return state_of(
            kafka_checkpoint(kafka_bootstrap, checkpoints, topic_name, 0, key=key.encode())
        ).learner.learned

    feeder.send(600)
    assert run(OLD) == (0, 0, 600)
    feeder.send(600)
    assert run(f"{NEW},{OLD}") == (0, 0, 1200)  # restored with the old key: nothing lost
    assert checkpoint_with(NEW) == 1200  # and signed with the new one since
    with pytest.raises(CheckpointError) as refused:
        checkpoint_with(OLD)
    assert refused.value.reason == "bad_signature"

    feeder.send(300)
    assert run(NEW) == (0, 0, 1500)  # the old key retired
    feeder.send(300)
    feeder.close()
    # Signed with a key no longer listed: refused, and rebuilt from the log instead.
    assert run(OTHER) == (1, 1, 1800)
    assert checkpoint_with(OTHER) == 1800
