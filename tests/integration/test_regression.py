"""Regression on the real broker: MAE exact against River's progressive validation (labels at
once and late), the no-change baseline, number labels and nothing else, and a retrain on a
drifting Friedman stream whose replay reads number labels."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from river import datasets, evaluate, metrics

from learners.spec import parse_model_spec
from stream.events import Event, LateLabel, decode_number_labels
from stream.tools.produce import ProduceOptions, encode_event, produce
from tests.integration.kafka_helpers import (
    create_topic,
    read_all,
    run_until_idle,
    sample,
    send_raw,
)

pytestmark = pytest.mark.integration

SCALED_LR = "preprocessing.StandardScaler | linear_model.LinearRegression"


def _no_change_mae(labels: list[float]) -> float:
    errors = [abs(before - y) for before, y in itertools.pairwise(labels)]
    return sum(errors) / len(errors)


@pytest.mark.parametrize(
    "spec",
    [SCALED_LR, "preprocessing.StandardScaler | tree.HoeffdingTreeRegressor(grace_period=50)"],
)
def test_cumulative_mae_equals_progressive_val_score_on_trump_approval(
    kafka_bootstrap: str, topic_name: str, spec: str
) -> None:
    dataset = list(datasets.TrumpApproval())
    create_topic(kafka_bootstrap, topic_name, 1)
    send_raw(
        kafka_bootstrap,
        topic_name,
        ((f"e{i}".encode(), encode_event(f"e{i}", x, y, i)) for i, (x, y) in enumerate(dataset)),
    )

    registry = run_until_idle(kafka_bootstrap, topic_name, model=spec, drift_action="none")

    # The reference sees the very events the broker holds, in the same order.
    events = [decode_number_labels(r.value) for r in read_all(kafka_bootstrap, topic_name)]
    logged = [(e.features, e.label) for e in events if isinstance(e, Event)]
    assert len(logged) == len(dataset)
    mae = evaluate.progressive_val_score(logged, parse_model_spec(spec), metrics.MAE())
    rmse = evaluate.progressive_val_score(logged, parse_model_spec(spec), metrics.RMSE())
    at = {"topic": topic_name, "partition": 0, "window": "cumulative"}
    assert sample(registry, "streamlearn_mae", **at) == pytest.approx(mae.get(), abs=1e-9, rel=0)
    assert sample(registry, "streamlearn_rmse", **at) == pytest.approx(rmse.get(), abs=1e-9, rel=0)
    baseline = _no_change_mae([float(y) for _, y in logged])
    assert sample(registry, "streamlearn_baseline_mae", **at) == pytest.approx(baseline, rel=1e-9)
    labels = {"topic": topic_name, "partition": "0"}
    assert registry.get_sample_value("streamlearn_mae", {**labels, "window": "rolling"}) > 0
    # A regressor exports no accuracy series at all.
    for name in ("streamlearn_accuracy", "streamlearn_baseline_accuracy"):
        for window in ("cumulative", "rolling"):
            assert registry.get_sample_value(name, {**labels, "window": window}) is None
    partition = {"topic": topic_name, "partition": 0}
    assert sample(registry, "streamlearn_events_total", **partition, outcome="learned") == len(
        dataset
    )


def test_late_labels_equal_progressive_val_score_with_delay(
    kafka_bootstrap: str, topic_name: str
) -> None:
    delay, count = 100, 1500
    summary = produce(
        ProduceOptions(
            kafka_bootstrap,
            topic_name,
            count=count,
            seed=5,
            generator="friedman-drift",
            drift_at=(700,),
            partitions=1,
            label_delay=delay,
        )
    )
    assert (summary.produced, summary.labels, summary.failed) == (2 * count, count, 0)

    registry = run_until_idle(kafka_bootstrap, topic_name, model=SCALED_LR, drift_action="none")

    features: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    labels: dict[str, float] = {}
    for record in read_all(kafka_bootstrap, topic_name):
        decoded = decode_number_labels(record.value)
        if isinstance(decoded, Event):
            assert decoded.id is not None and decoded.label is None
            features[decoded.id] = decoded.features
            order.append(decoded.id)
        else:
            assert isinstance(decoded, LateLabel) and type(decoded.label) is float
            labels[decoded.id] = decoded.label
    dataset = [(features[i], labels[i]) for i in order]
    expected = evaluate.progressive_val_score(
        dataset, parse_model_spec(SCALED_LR), metrics.MAE(), delay=delay
    )
    at = {"topic": topic_name, "partition": 0}
    daemon = sample(registry, "streamlearn_mae", **at, window="cumulative")
    assert daemon == pytest.approx(expected.get(), abs=1e-9, rel=0)
    assert sample(registry, "streamlearn_labels_total", **at, outcome="joined") == count
    assert sample(registry, "streamlearn_pending_labels", **at) == 0


def test_a_regression_dead_letters_labels_that_are_not_numbers(
    kafka_bootstrap: str, topic_name: str
) -> None:
    create_topic(kafka_bootstrap, topic_name, 1)
    good = [encode_event(f"e{i}", {"x": float(i)}, 2.0 * i + 0.5, i) for i in range(20)]
    bad = [
        b'{"features": {"x": 1.0}, "label": "3.5"}',
        b'{"features": {"x": 1.0}, "label": true}',
        b'{"id": "e3", "label": "high"}',
    ]
    send_raw(kafka_bootstrap, topic_name, ((None, value) for value in good + bad))
    dead = f"{topic_name}-dead"
    registry = run_until_idle(
        kafka_bootstrap, topic_name, model=SCALED_LR, drift_action="none", dead_letter_topic=dead
    )
    reasons = [dict(r.headers)["streamlearn.reason"] for r in read_all(kafka_bootstrap, dead)]
    assert reasons == [b"bad_label"] * 3
    at = {"topic": topic_name, "partition": 0}
    assert sample(registry, "streamlearn_events_total", **at, outcome="learned") == 20


def test_a_retrain_replays_number_labels_and_is_judged_on_mae(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    change, count = 3000, 6000
    produce(
        ProduceOptions(
            kafka_bootstrap,
            topic_name,
            count=count,
            seed=4,
            generator="friedman-drift",
            drift_at=(change,),
            partitions=1,
        )
    )
    event_log = tmp_path / "events.jsonl"
    registry = run_until_idle(
        kafka_bootstrap,
        topic_name,
        model="tree.HoeffdingTreeRegressor(grace_period=50)",
        drift_action="retrain",
        max_retrain_events=5000,
        event_log=str(event_log),
    )
    at = {"topic": topic_name, "partition": 0}
    assert sample(registry, "streamlearn_retrains_total", **at, result="promoted") >= 1
    lines = [json.loads(line) for line in event_log.read_text().splitlines()]
    decisions = [line for line in lines if line["kind"] == "retrain"]
    assert decisions and decisions[0]["result"] == "promoted"
    # The candidate learned the replayed range: the events since the estimated change point.
    assert decisions[0]["trained_on"] >= 20 and decisions[0]["pool"] == "since-change"
    assert decisions[0]["candidate_mae"] < decisions[0]["serving_mae"]
    assert "candidate_accuracy" not in decisions[0]
    assert [line["kind"] for line in lines if line["kind"] in ("mae", "accuracy")][:1] == ["mae"]
