"""Multiclass streams end to end on the real broker: three classes, integers or strings,
labels late or not; accuracy exact against River, and every label keeps its JSON type in
the predictions (an integer class stays an integer, a string a string)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from river import datasets, evaluate, metrics

from learners.spec import parse_model_spec
from stream.tools.produce import encode_event, encode_label
from tests.integration.kafka_helpers import create_topic, read_all, run_until_idle, sample, send_raw

pytestmark = pytest.mark.integration

MODEL = "tree.HoeffdingTreeClassifier(grace_period=50)"
NAMES = {0: "cat", 1: "dog", 2: "bird"}
COUNT = 1500
DELAY = 10


def _stream(kind: str) -> list[tuple[dict[str, Any], Any]]:
    pairs = datasets.synth.RandomRBF(seed_model=3, seed_sample=4, n_classes=3, n_features=4)
    return [
        ({str(k): v for k, v in x.items()}, y if kind == "int" else NAMES[y])
        for x, y in pairs.take(COUNT)
    ]


def _records(pairs: list[tuple[dict[str, Any], Any]], late: bool) -> list[tuple[bytes, bytes]]:
    """Labelled events, or events whose labels come DELAY records later."""
    records = []
    for i, (x, y) in enumerate(pairs):
        if late and i >= DELAY:
            records.append(
                (f"e{i - DELAY}".encode(), encode_label(f"e{i - DELAY}", pairs[i - DELAY][1]))
            )
        records.append((f"e{i}".encode(), encode_event(f"e{i}", x, None if late else y, i)))
    if late:
        records += [
            (f"e{j}".encode(), encode_label(f"e{j}", pairs[j][1]))
            for j in range(COUNT - DELAY, COUNT)
        ]
    return records


@pytest.mark.parametrize("late", [False, True], ids=["labelled", "late"])
@pytest.mark.parametrize("kind", ["int", "str"])
def test_multiclass_accuracy_is_exact_and_labels_keep_their_type(
    kafka_bootstrap: str, topic_name: str, kind: str, late: bool
) -> None:
    create_topic(kafka_bootstrap, topic_name, 1)
    pairs = _stream(kind)
    assert {y for _, y in pairs} == ({0, 1, 2} if kind == "int" else set(NAMES.values()))
    send_raw(kafka_bootstrap, topic_name, _records(pairs, late))
    predictions = f"{topic_name}-predictions"
    registry = run_until_idle(
        kafka_bootstrap, topic_name, model=MODEL, drift_action="none",
        predictions_topic=predictions,
    )  # fmt: skip

    expected = evaluate.progressive_val_score(
        pairs, parse_model_spec(MODEL), metrics.Accuracy(), delay=DELAY if late else None
    )
    labels = {"topic": topic_name, "partition": 0}
    daemon = sample(registry, "streamlearn_accuracy", **labels, window="cumulative")
    assert daemon == pytest.approx(expected.get(), abs=1e-12, rel=0)
    assert sample(registry, "streamlearn_events_total", **labels, outcome="learned") == COUNT

    published = [json.loads(r.value) for r in read_all(kafka_bootstrap, predictions)]
    assert len(published) == COUNT
    classes = {json.dumps(y) for _, y in pairs}
    keys = {y if type(y) is str else json.dumps(y) for _, y in pairs}  # JSON keys are text
    made = [p for p in published if p["prediction"] is not None]
    # All but those made before the tree learned anything (the first DELAY, labels late).
    assert len(made) >= COUNT - (DELAY if late else 1)
    for p in made:
        assert type(p["prediction"]) is (int if kind == "int" else str)
        assert json.dumps(p["prediction"]) in classes
        assert set(p["probabilities"]) <= keys
