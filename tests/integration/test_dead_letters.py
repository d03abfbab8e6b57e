"""Bad input of every kind, mixed with good events on one partition: each bad record lands in
the dead-letter topic with its bytes, key, reason and origin; the daemon learns on; the counts
add up; every good event gets a prediction; and the group commits to the end of the log."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import CollectorRegistry
from river.datasets import synth

from stream.events import DEAD_LETTER_REASONS, DECODE_REASONS
from tests.integration.kafka_helpers import create_topic, read_all, run_until_idle, sample, send_raw

pytestmark = pytest.mark.integration

#: (kind, raw value, reason expected in the streamlearn.reason header)
BAD: list[tuple[str, bytes | None, str]] = [
    ("not-json", b"this is not json {", "not_json"),
    ("not-utf8", b"\xff\xfe\x00garbage", "not_json"),
    ("truncated-json", b'{"features": {"a": 1.0}, "label": tr', "not_json"),
    ("json-array", b'[{"features": {"a": 1.0}, "label": true}]', "not_an_object"),
    ("json-number", b"42", "not_an_object"),
    ("json-string", b'"features"', "not_an_object"),
    ("json-null", b"null", "not_an_object"),
    ("missing-features", b'{"label": true}', "missing_features"),
    ("features-not-an-object", b'{"features": [1.0, 2.0], "label": true}', "bad_feature"),
    ("feature-list", b'{"features": {"a": [1.0]}, "label": true}', "bad_feature"),
    ("feature-object", b'{"features": {"a": {"b": 1.0}}, "label": true}', "bad_feature"),
    ("feature-null", b'{"features": {"a": null}, "label": true}', "bad_feature"),
    ("feature-nan", b'{"features": {"a": NaN}, "label": true}', "non_finite"),
    ("feature-infinity", b'{"features": {"a": Infinity}, "label": true}', "non_finite"),
    ("feature-minus-infinity", b'{"features": {"a": -Infinity}, "label": false}', "non_finite"),
    ("feature-overflow", b'{"features": {"a": 1e999}, "label": true}', "non_finite"),
    ("label-float", b'{"features": {"a": 1.0}, "label": 1.5}', "bad_label"),
    ("label-list", b'{"features": {"a": 1.0}, "label": [1]}', "bad_label"),
    ("label-object", b'{"features": {"a": 1.0}, "label": {"class": 1}}', "bad_label"),
    (
        "timestamp-string",
        b'{"features": {"a": 1.0}, "label": true, "timestamp": "now"}',
        "bad_field",
    ),
    ("timestamp-bool", b'{"features": {"a": 1.0}, "label": true, "timestamp": true}', "bad_field"),
    ("id-number", b'{"id": 7, "features": {"a": 1.0}, "label": true}', "bad_field"),
    ("empty-bytes", b"", "empty_value"),
    ("tombstone", None, "empty_value"),
]
LABELLED = 400
UNLABELLED = 60


@dataclass(frozen=True)
class Sent:
    key: bytes
    value: bytes | None
    reason: str | None  # None for a good event
    event_id: str | None
    labelled: bool


def _good_events(seed: int) -> list[Sent]:
    events = []
    pairs = synth.SEA(variant=0, seed=seed).take(LABELLED + UNLABELLED)
    for i, (x, y) in enumerate(pairs):
        labelled = i < LABELLED
        value: dict[str, Any] = {"id": f"e-{i}", "features": {f"f{k}": v for k, v in x.items()}}
        if labelled:
            value["label"] = y
            value["timestamp"] = 1_700_000_000 + i
        elif i % 2:  # unlabelled both ways: label null, and label absent
            value["label"] = None
        events.append(
            Sent(f"good-{i}".encode(), json.dumps(value).encode(), None, f"e-{i}", labelled)
        )
    return events


def _mixed(seed: int) -> list[Sent]:
    """Good and bad records shuffled, with a bad one first and a bad one last, so the very
    first and the very last offsets are dead letters (the commit must still reach the end)."""
    bad = [Sent(f"bad-{kind}".encode(), value, reason, None, False) for kind, value, reason in BAD]
    rng = random.Random(seed)
    first, last, middle = bad[0], bad[-1], bad[1:-1] + _good_events(seed)
    rng.shuffle(middle)
    return [first, *middle, last]


@dataclass(frozen=True)
class Run:
    topic: str
    sent: list[Sent]
    source: dict[bytes, ConsumerRecord]  # by key: every key is unique
    registry: CollectorRegistry
    dead_letters: list[ConsumerRecord]
    predictions: list[ConsumerRecord]
    committed: int | None


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    topic = f"t-dead-letters-{random.Random().getrandbits(32):08x}"
    create_topic(kafka_bootstrap, topic)
    sent = _mixed(seed=5)
    send_raw(kafka_bootstrap, topic, [(s.key, s.value) for s in sent])
    source = {record.key: record for record in read_all(kafka_bootstrap, topic)}
    assert len(source) == len(sent)

    # The state directory is the test's own: a local checkpoint must not land in the tree.
    registry = run_until_idle(
        kafka_bootstrap,
        topic,
        dead_letter_topic=f"{topic}.dead",
        predictions_topic=f"{topic}.predictions",
        state_dir=tmp_path_factory.mktemp("state"),
    )

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=f"g-{topic}", enable_auto_commit=False
    )
    try:
        committed = consumer.committed(TopicPartition(topic, 0))
    finally:
        consumer.close(autocommit=False)
    return Run(
        topic,
        sent,
        source,
        registry,
        read_all(kafka_bootstrap, f"{topic}.dead"),
        read_all(kafka_bootstrap, f"{topic}.predictions"),
        committed,
    )


def _headers(record: ConsumerRecord) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def test_every_bad_record_is_dead_lettered_with_its_bytes_key_reason_and_origin(run: Run) -> None:
    letters = {record.key: record for record in run.dead_letters}
    assert len(letters) == len(run.dead_letters) == len(BAD)
    for sent in (s for s in run.sent if s.reason is not None):
        letter, origin = letters[sent.key], run.source[sent.key]
        headers = _headers(letter)
        assert headers["streamlearn.reason"] == sent.reason, sent.key
        assert headers["streamlearn.topic"] == run.topic
        assert headers["streamlearn.partition"] == str(origin.partition) == "0"
        assert headers["streamlearn.offset"] == str(origin.offset)
        assert headers["streamlearn.detail"], sent.key  # a human-readable why, never empty
        if sent.value is None:
            # A tombstone has no bytes to keep; its dead letter must not be read as a
            # tombstone of the dead-letter topic, so it carries an empty value.
            assert letter.value in (None, b"")
        else:
            assert letter.value == sent.value == origin.value, sent.key


def test_dead_letters_keep_the_order_of_the_source(run: Run) -> None:
    offsets = [int(_headers(record)["streamlearn.offset"]) for record in run.dead_letters]
    assert offsets == sorted(offsets)
    assert offsets[0] == 0
    assert offsets[-1] == len(run.sent) - 1


def test_the_daemon_learned_and_predicted_every_good_event_and_the_counts_add_up(
    run: Run,
) -> None:
    labels = {"topic": run.topic, "partition": 0}
    learned = sample(run.registry, "streamlearn_events_total", **labels, outcome="learned")
    predicted = sample(run.registry, "streamlearn_events_total", **labels, outcome="predicted")
    dead = sample(run.registry, "streamlearn_events_total", **labels, outcome="dead_lettered")
    assert (learned, predicted, dead) == (LABELLED, UNLABELLED, len(BAD))
    assert learned + predicted + dead == len(run.sent)
    # The learner kept learning through the bad records: SEA is easy for this model.
    assert sample(run.registry, "streamlearn_accuracy", **labels, window="cumulative") > 0.8


def test_dead_letters_are_counted_per_reason(run: Run) -> None:
    expected = Counter(reason for _, _, reason in BAD)
    assert set(expected) == set(DECODE_REASONS), "every decoding reason must be exercised"
    for reason in DEAD_LETTER_REASONS:
        counted = sample(run.registry, "streamlearn_dead_letters_total", reason=reason)
        assert counted == expected[reason], reason


def test_every_good_event_has_one_prediction_naming_its_origin(run: Run) -> None:
    good = {s.event_id: s for s in run.sent if s.event_id is not None}
    values = [json.loads(record.value) for record in run.predictions]
    assert sorted(v["id"] for v in values) == sorted(good)
    for record, value in zip(run.predictions, values, strict=True):
        sent = good[value["id"]]
        origin = run.source[sent.key]
        assert record.key == sent.key
        assert (value["partition"], value["offset"]) == (0, origin.offset)
        assert value["topic"] == run.topic
        assert value["model_version"] == 1  # no drift in 400 events of one concept
        assert value["prediction"] in (True, False)
        probabilities = value["probabilities"]
        assert set(probabilities) == {"true", "false"}
        assert max(probabilities, key=probabilities.get) == json.dumps(value["prediction"])


def test_the_group_committed_the_end_of_the_log(run: Run) -> None:
    assert run.committed == len(run.sent)
