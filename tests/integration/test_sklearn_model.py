"""An ``sklearn:`` model through the daemon on the real broker: its predictions and accuracy
equal River's progressive validation of the same wrapper, across a restart from its
checkpoint (restored through the restricted unpickler); with ``--screen-pool`` its refits
leave out what a plain loop leaves out, and the metric counts it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from river import evaluate, metrics

from learners.prequential import PartitionLearner
from learners.screening import drain_screened, screening
from learners.spec import parse_model_spec
from stream.events import Event, decode
from stream.tools.produce import ProduceOptions, encode_event, produce
from tests.integration.kafka_helpers import (
    create_topic,
    read_all,
    run_until_idle,
    sample,
    send_raw,
)
from tests.learners.test_screening import noisy_stream

pytestmark = pytest.mark.integration

SPEC = (
    "sklearn(window=1000, refit_every=250):"
    "preprocessing.StandardScaler | linear_model.LogisticRegression(C=1.0)"
)


def test_sklearn_model_is_exact_across_a_restart(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    warnings.simplefilter("ignore")  # lbfgs convergence, in the daemon and the reference
    predictions = f"{topic_name}-predictions"
    settings: dict[str, Any] = {
        "model": SPEC,
        "drift_action": "none",
        "predictions_topic": predictions,
        "state_dir": tmp_path,  # both runs: the second restores the first one's checkpoint
    }
    for seed in (5, 6):
        produce(
            ProduceOptions(
                kafka_bootstrap, topic_name, count=1500, seed=seed, generator="agrawal",
                partitions=1,
            )
        )  # fmt: skip
        registry = run_until_idle(kafka_bootstrap, topic_name, **settings)

    events = [decode(record.value) for record in read_all(kafka_bootstrap, topic_name)]
    dataset = [(e.features, e.label) for e in events if isinstance(e, Event)]
    assert len(dataset) == 3000
    expected = evaluate.progressive_val_score(dataset, parse_model_spec(SPEC), metrics.Accuracy())
    labels = {"topic": topic_name, "partition": 0}
    cumulative = sample(registry, "streamlearn_accuracy", **labels, window="cumulative")
    assert cumulative == pytest.approx(expected.get(), abs=1e-12, rel=0)
    assert sample(registry, "streamlearn_events_total", **labels, outcome="learned") == 1500
    assert sample(registry, "streamlearn_learned_events", **labels) == 3000  # restored
    refusals = [
        s.value
        for metric in registry.collect()
        if metric.name == "streamlearn_checkpoint_load_failures"
        for s in metric.samples
    ]
    assert sum(refusals) == 0  # restored, not rebuilt from the log

    published = {
        r["offset"]: r["prediction"]
        for r in map(json.loads, (rec.value for rec in read_all(kafka_bootstrap, predictions)))
    }
    # Nothing before the first fit takes over: it starts at event 250 and, fitted in the
    # background, serves 200 events later (the default lag). The first run's last
    # checkpoint, at 1,500, was taken just after the refit of 1,500 started.
    assert [published[i] for i in range(450)] == [None] * 450
    # From then on the class, with the label's JSON type, before and after the restart.
    assert all(type(published[i]) is type(dataset[i][1]) for i in range(450, 3000))


def test_screen_pool_counts_what_the_refits_leave_out(
    kafka_bootstrap: str, topic_name: str
) -> None:
    warnings.simplefilter("ignore")
    stream, _, _, _ = noisy_stream(seed=3)
    create_topic(kafka_bootstrap, topic_name, 1)
    send_raw(
        kafka_bootstrap,
        topic_name,
        ((None, encode_event(f"e{i}", x, y, seq=i)) for i, (x, y) in enumerate(stream)),
    )
    spec = "sklearn(window=600, refit_every=300):tree.DecisionTreeClassifier(random_state=0)"
    registry = run_until_idle(
        kafka_bootstrap, topic_name, model=spec, drift_action="none", screen_pool=True
    )

    # The same screened model on the same events, in a plain loop: what it left out.
    reference = PartitionLearner(screening(parse_model_spec(spec)), drift_action="none")
    for offset, (x, y) in enumerate(stream):
        reference.step(x, y, offset)
    expected = drain_screened(reference)
    assert expected["duplicate"] > 0 and expected["contradiction"] > 0
    labels = {"topic": topic_name, "partition": 0}
    for reason in ("duplicate", "contradiction"):
        screened = sample(registry, "streamlearn_screened_events_total", **labels, reason=reason)
        assert screened == expected[reason], reason
    cumulative = sample(registry, "streamlearn_accuracy", **labels, window="cumulative")
    assert cumulative == reference.cumulative.get()


def test_screen_pool_leaves_copies_out_of_a_retrain_replay(
    kafka_bootstrap: str, topic_name: str
) -> None:
    # 1,000 events labelled a > b, then 500 of them again with the opposite label, each
    # twice in a row: the drift's pool takes in some of those copies.
    _, clean, _, _ = noisy_stream(seed=4)
    flipped = [(x, not y) for x, y in clean[:500] for _ in range(2)]
    create_topic(kafka_bootstrap, topic_name, 1)
    send_raw(
        kafka_bootstrap,
        topic_name,
        ((None, encode_event(f"e{i}", x, y, seq=i)) for i, (x, y) in enumerate(clean + flipped)),
    )
    registry = run_until_idle(
        kafka_bootstrap, topic_name, model="tree.HoeffdingTreeClassifier(grace_period=50)",
        drift_action="retrain", screen_pool=True, retrain_holdout_events=50,
    )  # fmt: skip
    labels = {"topic": topic_name, "partition": 0}
    decided = sum(
        sample(registry, "streamlearn_retrains_total", **labels, result=result)
        for result in ("promoted", "rejected")
    )
    assert decided >= 1
    # The replay covers part of the doubled stretch: its second copies are left out.
    duplicates = sample(registry, "streamlearn_screened_events_total", **labels, reason="duplicate")
    assert duplicates > 0
