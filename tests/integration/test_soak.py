"""Soak: a million events with a kill -9 every few seconds (issue 3, test 6; ``make soak``).

Not part of ``make test``: it runs for minutes. It prints what it measured (learned,
lost, duplicated, restarts, peak RSS of the daemon) so that docs/reliability.md can
quote the last run, and fails if anything was lost or learned twice.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.integration.daemon_process import (
    DaemonProcess,
    Feeder,
    checkpointed_offset,
    daemons,
    local_checkpoint,
    state_of,
)
from tests.integration.kafka_helpers import create_topic

pytestmark = [pytest.mark.integration, pytest.mark.soak]

EVENTS = int(os.environ.get("SOAK_EVENTS", "1000000"))
PARTITIONS = 2
SEED = 1_000_003


@pytest.mark.timeout(3600)
def test_soak_a_million_events_with_periodic_kills(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic_name, PARTITIONS)
    feeder = Feeder(kafka_bootstrap, topic_name, PARTITIONS, seed=SEED, drift_at=(EVENTS // 2,))
    state_dir = tmp_path / "state"
    options = {
        "state-dir": state_dir,
        "checkpoint-every-events": 5_000,
        "checkpoint-interval": 2,
    }
    daemon = DaemonProcess(kafka_bootstrap, topic_name, tmp_path / "daemon.log", options)
    rng = random.Random(SEED)
    restarts, peak_rss = 0, 0
    started = time.monotonic()
    with daemons(daemon):
        feeder.send(20_000)
        daemon.start()
        daemon.wait_until(
            lambda: daemon.metric_sum("streamlearn_checkpoints_total") >= 2,
            120,
            "two checkpoints before the first kill",
        )
        # Unpaced: the daemon chases a producer that writes as fast as it can.
        feeder.send_in_background(EVENTS - 20_000, rate=1e9)
        while feeder.sending() or not _caught_up(state_dir, topic_name, feeder, 0.9):
            deadline = time.monotonic() + rng.uniform(4.0, 10.0)
            while time.monotonic() < deadline:
                peak_rss = max(peak_rss, daemon.peak_rss_bytes())
                time.sleep(0.2)
            peak_rss = max(peak_rss, daemon.peak_rss_bytes())
            daemon.kill()
            daemon.start()
            restarts += 1
            assert time.monotonic() - started < 3000, "the soak does not make progress"
        feeder.join(600)
        feeder.close()
        daemon.wait_until(
            lambda: _caught_up(state_dir, topic_name, feeder, 1.0),
            600,
            "the last run to checkpoint the end of every partition",
            every_s=1.0,
        )
        peak_rss = max(peak_rss, daemon.peak_rss_bytes())
        # The last restart may still be importing (no signal handler yet) when its
        # predecessor's checkpoints already cover everything; SIGTERM it once it serves.
        daemon.wait_serving(120)
        assert daemon.terminate() == 0

    states = [state_of(local_checkpoint(state_dir, topic_name, p)) for p in range(PARTITIONS)]
    learned = sum(s.learner.learned for s in states)
    duplicated = sum(s.sequence.duplicates for s in states)
    lost = sum(s.sequence.gaps for s in states) + sum(
        produced - (s.sequence.next_expected or 0)
        for produced, s in zip(feeder.produced, states, strict=True)
    )
    print(
        f"\nsoak: produced {feeder.total}, learned {learned}, lost {lost}, "
        f"duplicated {duplicated}, restarts {restarts} (kill -9), "
        f"peak RSS {peak_rss / 2**20:.0f} MiB, {time.monotonic() - started:.0f} s"
    )
    assert (learned, lost, duplicated) == (feeder.total, 0, 0)


def _caught_up(state_dir: Path, topic: str, feeder: Feeder, fraction: float) -> bool:
    """Has every partition's checkpoint reached ``fraction`` of what was produced to it?"""
    return all(
        (checkpointed_offset(state_dir, topic, p) or 0) >= fraction * produced
        for p, produced in enumerate(feeder.produced)
    )
