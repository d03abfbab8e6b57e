"""Events the model cannot take, on the real broker: each is dead-lettered as ``model_error`` and
undone, so the daemon ends with the model of a run that never saw them; a model that raises
on every event halts its partition (metric, ``/healthz``) instead of spinning or crashing; and
``--max-features`` dead-letters exactly the events that would pass the bound."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import CollectorRegistry

from stream.tools.generators import concept_stream
from stream.tools.produce import encode_event
from tests.integration.daemon_process import (
    DaemonProcess,
    checkpointed_offset,
    daemons,
    local_checkpoint,
    state_of,
)
from tests.integration.kafka_helpers import create_topic, read_all, run_until_idle, sample, send_raw
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

EVENTS = 3000
DRIFT_AT = 1500
#: Offsets (of the poisoned stream) whose event carries a string feature value, which the
#: default model (StandardScaler | LogisticRegression) raises on: first events, a run of
#: three, around the concept change, and the very last event.
POISON = {0, 3, 4, 5, 200, 777, 1490, 1501, 1502, 1650, 2400, EVENTS - 1}


def _events(seed: int = 21) -> list[tuple[str, dict[str, Any], Any]]:
    """(id, features, label) of the stream; the poison ones get a string-valued feature."""
    stream = concept_stream("sine", seed=seed, drift_at=[DRIFT_AT], count=EVENTS)
    events = []
    for i, (x, y) in enumerate(stream):
        features = {f"f{k}": v for k, v in x.items()}
        if i in POISON:
            features["colour"] = random.Random(i).choice(["red", "green", "blue"])
        events.append((f"e-{i}", features, y))
    return events


def _produce(bootstrap: str, topic: str, events: list[tuple[str, dict[str, Any], Any]]) -> None:
    create_topic(bootstrap, topic)
    records = [
        (event_id.encode(), encode_event(event_id, features, label, seq))
        for seq, (event_id, features, label) in enumerate(events)
    ]
    send_raw(bootstrap, topic, records)


@dataclass(frozen=True)
class Run:
    topic: str
    registry: CollectorRegistry
    state_dir: Path
    predictions: dict[str, dict[str, Any]]  # by event id
    dead_letters: list[ConsumerRecord]

    def count(self, name: str, **labels: Any) -> float:
        return sample(self.registry, name, topic=self.topic, partition=0, **labels)


def _run(bootstrap: str, tmp_path: Path, name: str, events: list[Any], **settings: Any) -> Run:
    topic = f"t-poison-{name}-{random.Random().getrandbits(32):08x}"
    _produce(bootstrap, topic, events)
    state_dir = tmp_path / name
    registry = run_until_idle(
        bootstrap,
        topic,
        dead_letter_topic=f"{topic}.dead",
        predictions_topic=f"{topic}.predictions",
        state_dir=state_dir,
        **settings,
    )
    predictions = {}
    for record in read_all(bootstrap, f"{topic}.predictions"):
        value = json.loads(record.value)
        predictions[value["id"]] = value
    return Run(topic, registry, state_dir, predictions, read_all(bootstrap, f"{topic}.dead"))


def _headers(record: ConsumerRecord) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def _probes() -> list[dict[str, float]]:
    return [
        {f"f{k}": v for k, v in x.items()} for x, _ in concept_stream("sine", seed=5, count=200)
    ]


@pytest.mark.parametrize("drift_action", ["reset", "retrain"])
def test_poison_events_are_dead_lettered_and_the_model_ends_as_if_it_never_saw_them(
    kafka_bootstrap: str, tmp_path: Path, drift_action: str
) -> None:
    events = _events()
    clean_events = [event for i, event in enumerate(events) if i not in POISON]
    # Snapshots every 100 events (the checkpoint cadence), so rebuilds start from a recent
    # snapshot and the poison runs cross snapshot boundaries.
    settings = {
        "drift_action": drift_action,
        "checkpoint_every_events": 100,
        "min_retrain_events": 300,
        "retrain_holdout_events": 200,
    }
    poisoned = _run(kafka_bootstrap, tmp_path, f"{drift_action}-poisoned", events, **settings)
    clean = _run(kafka_bootstrap, tmp_path, f"{drift_action}-clean", clean_events, **settings)

    # Every record accounted for, and the daemon ran to its idle stop (exit 0).
    learned = poisoned.count("streamlearn_events_total", outcome="learned")
    dead = poisoned.count("streamlearn_events_total", outcome="dead_lettered")
    assert (learned, dead) == (EVENTS - len(POISON), len(POISON))
    assert sample(poisoned.registry, "streamlearn_dead_letters_total", reason="model_error") == len(
        POISON
    )
    assert checkpointed_offset(poisoned.state_dir, poisoned.topic) == EVENTS

    # Each poison event is in the dead-letter topic with the exception in its detail.
    assert sorted(int(_headers(r)["streamlearn.offset"]) for r in poisoned.dead_letters) == sorted(
        POISON
    )
    for record in poisoned.dead_letters:
        headers = _headers(record)
        assert headers["streamlearn.reason"] == "model_error"
        assert headers["streamlearn.detail"].startswith("TypeError: "), headers

    # The model is the one of the run without the poison events: every prediction (each
    # made before its event was learned), the accuracy, the drift decisions, the final model.
    assert poisoned.count("streamlearn_model_version") > 1, "the concept change must be acted on"
    assert set(poisoned.predictions) == {event_id for event_id, _, _ in clean_events}
    for event_id, expected in clean.predictions.items():
        got = poisoned.predictions[event_id]
        assert (got["prediction"], got["probabilities"], got["model_version"]) == (
            expected["prediction"],
            expected["probabilities"],
            expected["model_version"],
        ), event_id
    for name in ("streamlearn_drifts_total", "streamlearn_model_version"):
        assert poisoned.count(name) == clean.count(name), name
    assert poisoned.count("streamlearn_accuracy", window="cumulative") == clean.count(
        "streamlearn_accuracy", window="cumulative"
    )
    final = state_of(local_checkpoint(poisoned.state_dir, poisoned.topic, 0)).learner
    reference = state_of(local_checkpoint(clean.state_dir, clean.topic, 0)).learner
    assert (final.learned, final.cumulative.get()) == (
        reference.learned,
        reference.cumulative.get(),
    )
    for x in _probes():
        assert final.model.predict_proba_one(x) == reference.model.predict_proba_one(x)
    if drift_action == "retrain":
        results = {
            result: poisoned.count("streamlearn_retrains_total", result=result)
            for result in ("promoted", "rejected", "abandoned")
        }
        assert results["abandoned"] == 0  # the replays skipped the poison
        assert results["promoted"] + results["rejected"] >= 1
        assert results == {
            result: clean.count("streamlearn_retrains_total", result=result) for result in results
        }


HALT_AFTER = 20


def test_a_model_that_raises_on_every_event_halts_its_partition_without_spinning(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    events = [(f"e-{i}", {"a": 0.7, "colour": "red"}, i % 2 == 0) for i in range(300)]
    _produce(kafka_bootstrap, topic_name, events)
    process = DaemonProcess(
        kafka_bootstrap,
        topic_name,
        tmp_path / "daemon.log",
        options={
            "dead-letter-topic": f"{topic_name}.dead",
            "state-dir": tmp_path / "state",
            "max-model-errors": HALT_AFTER,
            "checkpoint-interval": 1,
        },
    )
    with daemons(process):
        process.start()
        process.wait_assigned()
        labels = {"topic": topic_name, "partition": 0}
        wait_until(
            lambda: process.metric_sum("streamlearn_partition_halted", **labels) == 1,
            60,
            "the partition halted",
        )
        assert process.healthz() == 503
        wait_until(lambda: process.metric("streamlearn_ready") == 0, 10, "streamlearn_ready 0")
        dead = process.metric("streamlearn_events_total", **labels, outcome="dead_lettered")
        assert dead == HALT_AFTER
        time.sleep(3)  # the daemon keeps running its loop; nothing more is handled
        assert process.running()
        assert process.metric("streamlearn_events_total", **labels, outcome="dead_lettered") == dead
        assert process.metric("streamlearn_dead_letters_total", reason="model_error") == dead
        assert process.metric("streamlearn_events_total", **labels, outcome="learned") == 0
        assert process.healthz() == 503
        halted_lines = [line for line in process.log().splitlines() if "HALTED" in line]
        assert len(halted_lines) == 1, process.log_tail()
        assert "ERROR" in halted_lines[0] and f"{topic_name}[0]" in halted_lines[0]
        assert "TypeError" in halted_lines[0]
        assert process.terminate() == 0

    # Nothing past the last dead letter was committed or checkpointed.
    assert checkpointed_offset(tmp_path / "state", topic_name) == HALT_AFTER
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=f"g-{topic_name}", enable_auto_commit=False
    )
    try:
        assert consumer.committed(TopicPartition(topic_name, 0)) == HALT_AFTER
    finally:
        consumer.close(autocommit=False)
    assert len(read_all(kafka_bootstrap, f"{topic_name}.dead")) == HALT_AFTER


def test_max_features_dead_letters_only_the_events_that_would_pass_it(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    rng = random.Random(3)
    events: list[tuple[str, dict[str, Any], Any]] = []
    refused = set()
    for i in range(600):
        features: dict[str, Any] = {"a": rng.random(), "b": rng.random()}
        if i >= 100:
            features["c"] = rng.random()  # the third and last name the budget allows
        if i % 50 == 25 and i > 100:
            features[f"new-{i}"] = 1.0  # a fourth name: refused, known names or not
            refused.add(f"e-{i}")
        elif i % 50 == 40 and i > 100:
            features = {f"only-new-{i}": 1.0}
            refused.add(f"e-{i}")
        events.append((f"e-{i}", features, features.get("a", 0.0) > 0.5))
    _produce(kafka_bootstrap, topic_name, events)

    registry = run_until_idle(
        kafka_bootstrap,
        topic_name,
        dead_letter_topic=f"{topic_name}.dead",
        state_dir=tmp_path / "state",
        max_features=3,
    )

    letters = read_all(kafka_bootstrap, f"{topic_name}.dead")
    assert {record.key.decode() for record in letters} == refused
    for record in letters:
        headers = _headers(record)
        assert headers["streamlearn.reason"] == "too_many_features"
        assert "limit of 3" in headers["streamlearn.detail"]
    labels = {"topic": topic_name, "partition": 0}
    assert sample(registry, "streamlearn_dead_letters_total", reason="too_many_features") == len(
        refused
    )
    assert sample(registry, "streamlearn_events_total", **labels, outcome="learned") == len(
        events
    ) - len(refused)
    learner = state_of(local_checkpoint(tmp_path / "state", topic_name, 0)).learner
    assert learner.feature_budget is not None
    assert learner.feature_budget.known == {"a", "b", "c"}
