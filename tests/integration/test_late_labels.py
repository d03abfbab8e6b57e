"""Labels that come later, on the real broker: exact against River's delayed progressive
validation, every label counted by outcome, the daemon never stopped by one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from river import evaluate, metrics

from learners.spec import parse_model_spec
from stream.events import Event, LateLabel, decode
from stream.tools.produce import ProduceOptions, encode_event, produce
from tests.integration.kafka_helpers import (
    create_topic,
    read_all,
    run_until_idle,
    sample,
    send_raw,
)

pytestmark = pytest.mark.integration

MODELS = [
    "preprocessing.StandardScaler | linear_model.LogisticRegression",
    "tree.HoeffdingTreeClassifier(grace_period=50)",
]
COUNT = 2500


def dataset_and_delays(records: list[Any]) -> tuple[list[tuple[dict[Any, Any], Any]], set[int]]:
    """The (features, label) pairs of the log, joined by id, and how late each label came
    (in events between an event and its label, counted as River counts its delay)."""
    features: dict[str, dict[Any, Any]] = {}
    order: list[str] = []
    labels: dict[str, Any] = {}
    delays = set()
    for record in records:
        decoded = decode(record.value)
        if isinstance(decoded, Event):
            assert decoded.label is None and decoded.id is not None
            features[decoded.id] = decoded.features
            order.append(decoded.id)
        else:
            assert isinstance(decoded, LateLabel)
            labels[decoded.id] = decoded.label
            if len(order) < COUNT:
                delays.add(len(order) - order.index(decoded.id))
    return [(features[i], labels[i]) for i in order], delays


@pytest.mark.parametrize("spec", MODELS)
@pytest.mark.parametrize("delay", [1, 100, 1000])
def test_cumulative_accuracy_equals_progressive_val_score_with_delay(
    kafka_bootstrap: str, topic_name: str, spec: str, delay: int
) -> None:
    summary = produce(
        ProduceOptions(
            kafka_bootstrap,
            topic_name,
            count=COUNT,
            seed=5,
            generator="agrawal",
            drift_at=(1200,),
            partitions=1,
            label_delay=delay,
        )
    )
    assert (summary.produced, summary.labels, summary.failed) == (2 * COUNT, COUNT, 0)

    registry = run_until_idle(kafka_bootstrap, topic_name, model=spec, drift_action="none")

    dataset, delays = dataset_and_delays(read_all(kafka_bootstrap, topic_name))
    assert len(dataset) == COUNT and delays == {delay}  # the log is what River simulates
    expected = evaluate.progressive_val_score(
        dataset, parse_model_spec(spec), metrics.Accuracy(), delay=delay
    )
    labels = {"topic": topic_name, "partition": 0}
    daemon = sample(registry, "streamlearn_accuracy", **labels, window="cumulative")
    assert daemon == pytest.approx(expected.get(), abs=1e-12, rel=0)
    assert sample(registry, "streamlearn_events_total", **labels, outcome="learned") == COUNT
    assert sample(registry, "streamlearn_events_total", **labels, outcome="predicted") == COUNT
    assert sample(registry, "streamlearn_labels_total", **labels, outcome="joined") == COUNT
    assert sample(registry, "streamlearn_label_delay_seconds_count", **labels) == COUNT
    assert sample(registry, "streamlearn_pending_labels", **labels) == 0
    assert sample(registry, "streamlearn_learned_events", **labels) == COUNT


def _event(i: int, label: Any = None) -> tuple[bytes, bytes]:
    value = encode_event(f"e{i}", {"x": float(i % 7), "y": float(i % 3)}, label, i)
    return f"e{i}".encode(), value


def _label(event_id: str, label: Any) -> tuple[bytes, bytes]:
    return event_id.encode(), json.dumps({"id": event_id, "label": label}).encode()


def test_every_label_is_counted_by_outcome_and_none_stops_the_daemon(
    kafka_bootstrap: str, topic_name: str
) -> None:
    """At most 10 predictions wait: older ones expire. Labels for them, for ids never seen,
    twice for the same event, and a label without an id: each counted, the daemon goes on."""
    create_topic(kafka_bootstrap, topic_name, 1)
    records = [_event(i) for i in range(30)]  # e0..e19 are pushed out by e20..e29
    records += [_label(f"e{i}", i % 2 == 0) for i in range(20, 30)]  # 10 joined
    records += [_label(f"e{i}", True) for i in range(5)]  # 5 expired
    records += [_label("e25", True), _label("e26", False)]  # 2 duplicates
    records += [_label("nobody", True), _label("e999", 1), _label("e30", True)]  # 3 unknown
    records += [(b"x", b'{"label": true}')]  # no id: a dead letter (no features), not a label
    records += [_event(i, label=i % 2 == 0) for i in range(30, 40)]  # labelled events go on
    records += [_event(40), _label("e40", True)]  # and so do late labels
    send_raw(kafka_bootstrap, topic_name, records)
    dead = f"{topic_name}-dead"
    registry = run_until_idle(kafka_bootstrap, topic_name, max_pending=10, dead_letter_topic=dead)
    labels = {"topic": topic_name, "partition": 0}
    outcomes = {
        outcome: sample(registry, "streamlearn_labels_total", **labels, outcome=outcome)
        for outcome in ("joined", "expired", "unknown", "duplicate")
    }
    assert outcomes == {"joined": 11, "expired": 5, "unknown": 3, "duplicate": 2}
    assert sample(registry, "streamlearn_events_total", **labels, outcome="learned") == 21
    assert sample(registry, "streamlearn_events_total", **labels, outcome="predicted") == 31
    assert sample(registry, "streamlearn_pending_labels", **labels) == 0
    letters = read_all(kafka_bootstrap, dead)
    assert [(r.value, dict(r.headers)["streamlearn.reason"]) for r in letters] == [
        (b'{"label": true}', b"missing_features")
    ]
    assert sample(registry, "streamlearn_dead_letters_total", reason="missing_features") == 1


def test_predictions_of_unlabelled_events_are_published_at_once(
    kafka_bootstrap: str, topic_name: str
) -> None:
    create_topic(kafka_bootstrap, topic_name, 1)
    send_raw(
        kafka_bootstrap,
        topic_name,
        [_event(i, label=i % 2 == 0) for i in range(50)] + [_event(50), _label("e50", True)],
    )
    predictions = f"{topic_name}-predictions"
    run_until_idle(kafka_bootstrap, topic_name, predictions_topic=predictions)
    published = [json.loads(r.value) for r in read_all(kafka_bootstrap, predictions)]
    # One per event, none for the label record; the unlabelled one's carries its id.
    assert [p["offset"] for p in published] == list(range(51))
    assert published[-1]["id"] == "e50" and isinstance(published[-1]["prediction"], bool)


def test_a_label_the_model_raises_on_is_dead_lettered_and_undone(
    kafka_bootstrap: str, topic_name: str
) -> None:
    """LogisticRegression cannot learn the label "cat": the label record is a model_error
    dead letter, the learner is rebuilt without it, and the labels after it still join."""
    create_topic(kafka_bootstrap, topic_name, 1)
    records = [_event(i) for i in range(40)]
    records += [_label(f"e{i}", "cat" if i == 7 else i % 2 == 0) for i in range(40)]
    send_raw(kafka_bootstrap, topic_name, records)
    dead = f"{topic_name}-dead"
    registry = run_until_idle(kafka_bootstrap, topic_name, dead_letter_topic=dead)
    labels = {"topic": topic_name, "partition": 0}
    letters = read_all(kafka_bootstrap, dead)
    assert [r.value for r in letters] == [b'{"id": "e7", "label": "cat"}']
    headers = dict(letters[0].headers)
    assert headers["streamlearn.reason"] == b"model_error"
    assert headers["streamlearn.offset"] == b"47"
    assert sample(registry, "streamlearn_labels_total", **labels, outcome="joined") == 39
    assert sample(registry, "streamlearn_events_total", **labels, outcome="learned") == 39
    # As if the label had never come: its event still waits.
    assert sample(registry, "streamlearn_pending_labels", **labels) == 1
