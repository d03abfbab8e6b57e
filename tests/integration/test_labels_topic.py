"""Late labels on their own co-partitioned topic, on the real broker: produced 50 records
late to a labels topic, every label is joined once (learned == joined) and the model learns
as the in-band run's does; a labels topic with another partition count is refused at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream.daemon.app import run_daemon
from stream.exceptions import SettingsError
from stream.settings import load_settings
from stream.tools.produce import ProduceOptions, produce
from tests.integration.kafka_helpers import create_topic, daemon_settings, run_until_idle, sample

pytestmark = pytest.mark.integration

COUNT, DELAY, PARTITIONS = 1_200, 50, 2


def _produce(bootstrap: str, topic: str, labels_topic: str | None) -> None:
    options = ProduceOptions(
        bootstrap,
        topic,
        count=COUNT,
        seed=9,
        generator="agrawal",
        partitions=PARTITIONS,
        label_delay=DELAY,
        labels_topic=labels_topic,
    )
    summary = produce(options)
    assert (summary.produced, summary.labels, summary.failed) == (2 * COUNT, COUNT, 0)


def test_labels_on_their_own_topic_join_as_in_band_ones(
    kafka_bootstrap: str, topic_name: str
) -> None:
    labels = f"{topic_name}-labels"
    in_band = f"{topic_name}-inband"
    _produce(kafka_bootstrap, topic_name, labels)  # creates the labels topic, 2 partitions
    _produce(kafka_bootstrap, in_band, None)
    registry = run_until_idle(kafka_bootstrap, topic_name, labels_topic=labels, drift_action="none")
    reference = run_until_idle(kafka_bootstrap, in_band, drift_action="none")
    for partition in range(PARTITIONS):
        where = {"topic": topic_name, "partition": partition}
        joined = sample(registry, "streamlearn_labels_total", **where, outcome="joined")
        learned = sample(registry, "streamlearn_learned_events", **where)
        assert joined == learned == COUNT // PARTITIONS
        for outcome in ("unknown", "duplicate", "expired"):
            assert sample(registry, "streamlearn_labels_total", **where, outcome=outcome) == 0
        accuracy = sample(registry, "streamlearn_accuracy", **where, window="cumulative")
        expected = sample(
            reference,
            "streamlearn_accuracy",
            topic=in_band,
            partition=partition,
            window="cumulative",
        )
        # The same joins in the same order: events wait for the labels before them.
        assert accuracy == expected


def test_a_labels_topic_with_another_partition_count_is_refused(
    kafka_bootstrap: str, topic_name: str
) -> None:
    create_topic(kafka_bootstrap, topic_name, partitions=2)
    create_topic(kafka_bootstrap, f"{topic_name}-labels", partitions=1)
    values = daemon_settings(kafka_bootstrap, topic_name, labels_topic=f"{topic_name}-labels")
    settings = load_settings(values, environ={})
    with pytest.raises(SettingsError, match=r"has 1 partitions and the events topic .* 2"):
        run_daemon(settings, handle_signals=False)
    values["labels_topic"] = f"{topic_name}-missing"
    with pytest.raises(SettingsError, match=r"labels topic .*-missing' does not exist"):
        run_daemon(load_settings(values, environ={}), handle_signals=False)


def test_a_retrain_replays_the_labels_topic(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    """A drift with labels 20 events late on their own topic: a retrain is decided, its
    candidate trained on the pool's events joined to their labels, and learned == joined."""
    labels, count = f"{topic_name}-labels", 3_000
    options = ProduceOptions(
        kafka_bootstrap, topic_name, count=count, seed=2, generator="stagger", drift_at=(1_500,),
        partitions=1, label_delay=20, labels_topic=labels,
    )  # fmt: skip
    assert produce(options).failed == 0
    registry = run_until_idle(
        kafka_bootstrap,
        topic_name,
        labels_topic=labels,
        drift_action="retrain",
        model="preprocessing.StandardScaler | linear_model.LogisticRegression",
        event_log=tmp_path / "run.jsonl",
    )
    where = {"topic": topic_name, "partition": 0}
    decided = sum(
        sample(registry, "streamlearn_retrains_total", **where, result=result) or 0
        for result in ("promoted", "rejected")
    )
    assert decided >= 1
    lines = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    # Each candidate learned pool events, all of them joined to labels of the labels topic.
    assert all(line["trained_on"] > 0 for line in lines if line["kind"] == "retrain")
    joined = sample(registry, "streamlearn_labels_total", **where, outcome="joined")
    assert joined == sample(registry, "streamlearn_learned_events", **where) == count
