"""A model slower than max.poll.interval.ms per batch does not cost the partition.

The loop handles records for a bounded time per cycle and keeps the rest back, so it
polls often enough; without that, kafka-python leaves the group once a batch takes
longer than ``max_poll_interval_ms`` and the partition is rebalanced away.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream.tools.produce import ProduceOptions, produce
from tests.integration.kafka_helpers import run_until_idle, sample

pytestmark = pytest.mark.integration

# Brute-force neighbours over a 3,000-event window: about half a millisecond an event
# once the window is full, so a 5,000-record batch takes seconds.
SLOW_MODEL = "neighbors.KNNClassifier(n_neighbors=3, engine=neighbors.LazySearch(window_size=3000))"
EVENTS = 8000


def test_a_slow_model_keeps_its_partition_and_learns_everything(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    produce(
        ProduceOptions(
            kafka_bootstrap, topic_name, count=EVENTS, seed=4, generator="sea", partitions=1
        )
    )
    event_log = tmp_path / "events.jsonl"
    registry = run_until_idle(
        kafka_bootstrap,
        topic_name,
        model=SLOW_MODEL,
        drift_action="none",
        max_poll_records=5000,
        max_poll_interval_ms=1000,
        session_timeout_ms=2000,
        checkpoint_every_events=2000,
        event_log=event_log,
        # Shorter than handling one 5,000-record batch: the idle clock must not run while
        # held-back records are handled (it did, and the daemon stopped after the first).
        stop_after_idle=1.0,
    )

    labels = {"topic": topic_name, "partition": 0}
    assert sample(registry, "streamlearn_events_total", **labels, outcome="learned") == EVENTS
    assert sample(registry, "streamlearn_sequence_duplicates_total", **labels) == 0
    assert sample(registry, "streamlearn_sequence_gaps_total", **labels) == 0
    # Assigned once, never taken away by a rebalance (what a stopping daemon gives up at
    # shutdown is not in the run log).
    kinds = [json.loads(line)["kind"] for line in event_log.read_text().splitlines()]
    assert kinds.count("assigned") == 1, kinds
    assert kinds.count("revoked") == 0, kinds
