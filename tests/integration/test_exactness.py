"""The daemon's cumulative accuracy equals River's progressive validation, to 1e-12."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from river import evaluate, metrics

from learners.spec import parse_model_spec
from stream.events import Event, decode
from stream.tools.produce import ProduceOptions, produce
from tests.integration.kafka_helpers import read_all, run_until_idle, sample

pytestmark = pytest.mark.integration

MODELS = [
    "preprocessing.StandardScaler | linear_model.LogisticRegression",
    "tree.HoeffdingTreeClassifier(grace_period=50)",
]


@pytest.mark.parametrize("spec", MODELS)
def test_cumulative_accuracy_equals_progressive_val_score(
    kafka_bootstrap: str, topic_name: str, spec: str
) -> None:
    produce(
        ProduceOptions(
            kafka_bootstrap,
            topic_name,
            count=4000,
            seed=3,
            generator="agrawal",
            drift_at=(2000,),
            partitions=1,
        )
    )

    registry = run_until_idle(kafka_bootstrap, topic_name, model=spec, drift_action="none")

    # The reference sees the very events the broker holds, in the same order.
    events = [decode(record.value) for record in read_all(kafka_bootstrap, topic_name)]
    dataset: list[tuple[dict[Any, Any], Any]] = [
        (e.features, e.label) for e in events if isinstance(e, Event)
    ]
    assert len(dataset) == 4000
    expected = evaluate.progressive_val_score(dataset, parse_model_spec(spec), metrics.Accuracy())
    labels = {"topic": topic_name, "partition": 0}
    daemon = sample(registry, "streamlearn_accuracy", **labels, window="cumulative")
    assert daemon == pytest.approx(expected.get(), abs=1e-12, rel=0)
    assert sample(registry, "streamlearn_events_total", **labels, outcome="learned") == 4000
    # The no-change baseline: each label predicted by the one before it.
    ys = [y for _, y in dataset]
    no_change = sum(a == b for a, b in itertools.pairwise(ys)) / (len(ys) - 1)
    baseline = sample(registry, "streamlearn_baseline_accuracy", **labels, window="cumulative")
    assert baseline == pytest.approx(no_change, abs=1e-12, rel=0)
