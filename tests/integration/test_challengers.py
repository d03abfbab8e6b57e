"""``--challenger`` through the whole daemon on the real broker: the predictions topic says
which model made each prediction, and the switch is counted. (The decision itself is
tested on learners and on the loop's fakes: tests/learners/test_challengers.py,
tests/stream/daemon/test_challengers.py.)"""

from __future__ import annotations

import json
import random

import pytest

from stream.tools.produce import encode_event
from tests.integration.kafka_helpers import create_topic, read_all, run_until_idle, sample, send_raw

pytestmark = pytest.mark.integration

WEAK = "dummy.NoChangeClassifier"
WINDOW = 100


def test_predictions_name_their_model_and_the_switch_is_counted(
    kafka_bootstrap: str, topic_name: str
) -> None:
    rng = random.Random(11)
    events = []
    for i in range(400):
        x = {"a": rng.uniform(-1, 1), "b": rng.uniform(-1, 1)}
        events.append((None, encode_event(f"e{i}", x, x["a"] > 0, seq=i)))
    create_topic(kafka_bootstrap, topic_name, 1)
    send_raw(kafka_bootstrap, topic_name, events)
    predictions = f"{topic_name}-predictions"
    registry = run_until_idle(
        kafka_bootstrap,
        topic_name,
        model=WEAK,
        challengers=("lr=preprocessing.StandardScaler | linear_model.LogisticRegression",),
        challenger_window=WINDOW,
        challenger_margin=0.05,
        drift_action="none",
        predictions_topic=predictions,
    )

    labels = {"topic": topic_name, "partition": 0}
    assert sample(registry, "streamlearn_model_switches_total", **labels) == 1
    assert sample(registry, "streamlearn_model_serving", **labels, model="lr") == 1
    made_by = {
        record["offset"]: (record["model"], record["model_version"])
        for record in (json.loads(r.value) for r in read_all(kafka_bootstrap, predictions))
    }
    assert len(made_by) == 400
    assert {made_by[i] for i in range(WINDOW)} == {(WEAK, 1)}
    assert {made_by[i] for i in range(WINDOW, 400)} == {("lr", 2)}
