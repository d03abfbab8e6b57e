"""Drift end to end: reset and retrain detect an abrupt change soon, act on nothing else, and
beat doing nothing over the 5,000 events after the change; a worse retrain is rejected."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest
from river.datasets import synth

from stream.tools.produce import ProduceOptions, produce
from tests.integration.kafka_helpers import read_all, run_until_idle, sample

pytestmark = pytest.mark.integration

LR = "preprocessing.StandardScaler | linear_model.LogisticRegression"
HT = "tree.HoeffdingTreeClassifier"

# (generator, model, drift points, the change measured, seed). Agrawal's first concepts
# share most of their structure (keeping the old tree pays there); from its third change
# on, the concepts differ enough that forgetting is the right call.
STREAMS = {
    "sea": ("sea", LR, (10_000,), 10_000, 2),
    "agrawal": ("agrawal", HT, (8_000, 16_000, 24_000), 24_000, 1),
}


def _run(
    bootstrap: str, topic: str, action: str, model: str, tmp_path: Path, **settings: Any
) -> dict[str, Any]:
    log_path = tmp_path / f"{topic}-{action}.jsonl"
    registry = run_until_idle(
        bootstrap,
        topic,
        model=model,
        drift_action=action,
        group_id=f"g-{topic}-{action}",
        predictions_topic=f"{topic}.{action}.predictions",
        event_log=log_path,
        **settings,
    )
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    return {
        "registry": registry,
        "log": lines,
        "predictions": read_all(bootstrap, f"{topic}.{action}.predictions"),
    }


def _accuracy_after(run: dict[str, Any], labels: dict[int, Any], start: int) -> float:
    window = range(start, start + 5000)
    hits = [
        json.loads(r.value)["prediction"] == labels[json.loads(r.value)["offset"]]
        for r in run["predictions"]
        if json.loads(r.value)["offset"] in window
    ]
    assert len(hits) == 5000
    return sum(hits) / len(hits)


@pytest.mark.parametrize("stream", sorted(STREAMS))
def test_reset_and_retrain_detect_the_change_and_beat_none(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path, stream: str
) -> None:
    generator, model, drifts, measured, seed = STREAMS[stream]
    count = measured + 5000
    produce(
        ProduceOptions(
            kafka_bootstrap,
            topic_name,
            count=count,
            seed=seed,
            generator=generator,
            drift_at=drifts,
            partitions=1,
        )
    )
    labels = {r.offset: json.loads(r.value)["label"] for r in read_all(kafka_bootstrap, topic_name)}
    assert len(labels) == count

    runs = {
        a: _run(kafka_bootstrap, topic_name, a, model, tmp_path)
        for a in ("none", "reset", "retrain")
    }
    baseline = _accuracy_after(runs["none"], labels, measured)
    for action in ("reset", "retrain"):
        run = runs[action]
        detections = [line["offset"] for line in run["log"] if line["kind"] == "drift"]
        # Every action is a response to a real change, within 1,000 events of it ...
        for offset in detections:
            assert any(0 <= offset - change < 1000 for change in drifts), (action, detections)
        # ... and every change was detected within 1,000 events.
        for change in drifts:
            assert any(0 <= offset - change < 1000 for offset in detections), (action, change)
        accuracy = _accuracy_after(run, labels, measured)
        assert accuracy > baseline, (action, accuracy, baseline)
    registry = runs["retrain"]["registry"]
    decided = sum(
        sample(registry, "streamlearn_retrains_total", topic=topic_name, partition=0, result=result)
        for result in ("promoted", "rejected")
    )
    assert decided == len(drifts)


def _blip_events(path: Path) -> int:
    """SEA concept A, then 300 events whose labels are coin flips (a burst of noise, not a
    concept: a candidate that learned it is no better than the serving model there, so it
    is not promoted on the pool), then A again."""
    a = synth.SEA(variant=0, seed=1).take(10_000)
    coin = random.Random(2)
    blip = ((x, coin.random() < 0.5) for x, _ in synth.SEA(variant=0, seed=2).take(300))
    again = synth.SEA(variant=0, seed=3).take(3_000)
    count = 0
    with path.open("w") as out:
        for x, y in itertools.chain(a, blip, again):
            out.write(json.dumps({"features": x, "label": y}) + "\n")
            count += 1
    return count


def test_a_worse_retrain_is_rejected_and_the_serving_model_stays(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    source = tmp_path / "blip.jsonl"
    count = _blip_events(source)
    produce(ProduceOptions(kafka_bootstrap, topic_name, file=source, partitions=1))

    # The live events are mostly concept A again, which the serving tree knows and the
    # candidate, trained on the noise, learns from scratch: it loses more of the events
    # where the models differ, and is rejected at the cap.
    run = _run(kafka_bootstrap, topic_name, "retrain", HT, tmp_path,
               retrain_holdout_events=1000, retrain_max_holdout_events=2000)  # fmt: skip

    registry, labels = run["registry"], {"topic": topic_name, "partition": 0}
    assert sample(registry, "streamlearn_drifts_total", **labels) >= 1
    assert sample(registry, "streamlearn_retrains_total", **labels, result="rejected") >= 1
    assert sample(registry, "streamlearn_retrains_total", **labels, result="promoted") == 0
    assert sample(registry, "streamlearn_model_version", **labels) == 1
    decisions = [line for line in run["log"] if line["kind"] == "retrain"]
    assert decisions and all(d["result"] == "rejected" for d in decisions)
    assert all(d["candidate_accuracy"] <= d["serving_accuracy"] for d in decisions)
    versions = {json.loads(r.value)["model_version"] for r in run["predictions"]}
    assert versions == {1}
    assert len(run["predictions"]) == count
