"""``streamlearn evaluate``'s figures are the daemon's: the same stream through a real
daemon process on a real broker, and offline, gives the same cumulative accuracy (to
1e-12), the same drifts at the same offsets and the same retrain decisions.

Run on Tansu only: it compares two code paths of ours (Kafka's ports and the in-memory
ones, the wall clock and the logical one), not the brokers, which the rest of the
suite covers; one broker keeps it lean.

The daemon's retrain outcome depends on timing in one way, which the settings here keep
out: live events it serves while a replay runs are judged first once the replay ends,
and the decision waits for the last of them (``RetrainJob.replay_finished``), so when a
replay outlasts one 100 ms slice on a loaded machine, the promoted model serves later
than offline, where a replay takes no time. With small polls (at most 200 records held
back a cycle) and a holdout of 1,500 events, the decision falls on the 1,500th judged
event unless a replay takes more than seven slices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stream.settings import RunSettings
from stream.tools.evaluate import evaluate
from stream.tools.produce import ProduceOptions, SourceOptions, produce
from tests.integration.daemon_process import DaemonProcess, daemons

pytestmark = pytest.mark.integration

# Two abrupt changes; the default model drifts on each and a retrain is decided each time.
STREAM = SourceOptions(count=6_000, generator="stagger", seed=1, drift_at=(2_000, 4_000))
HOLDOUT = 1_500
#: The fields of a drift or retrain line that say what was decided (not when, nor where).
DECIDED = ("kind", "offset", "learned", "error_before", "error_after", "width", "action",
           "result", "candidate_accuracy", "serving_accuracy", "trained_on", "evaluated_on",
           "model_version")  # fmt: skip


def decisions(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kinds = ("drift", "reset", "retrain", "retrain_abandoned")
    return [{k: line[k] for k in DECIDED if k in line} for line in lines if line["kind"] in kinds]


def test_evaluate_gives_the_daemons_figures(
    kafka_bootstrap: str, broker_kind: str, topic_name: str, tmp_path: Path
) -> None:
    if broker_kind != "tansu":
        pytest.skip("compares our two code paths, not brokers: Tansu is enough")
    stream = {
        "count": STREAM.count, "seed": STREAM.seed, "generator": STREAM.generator,
        "drift_at": STREAM.drift_at,
    }  # fmt: skip
    produce(ProduceOptions(kafka_bootstrap, topic_name, partitions=1, **stream))
    daemon = DaemonProcess(
        kafka_bootstrap,
        topic_name,
        tmp_path / "daemon.log",
        options={
            "drift-action": "retrain",
            "state-dir": tmp_path / "state",
            "retrain-holdout-events": HOLDOUT,
            "max-poll-records": 200,
        },
    )
    labels = {"topic": topic_name, "partition": 0}
    with daemons(daemon.start()):
        daemon.wait_until(
            lambda: daemon.metric_sum("streamlearn_events_total", **labels) >= 6_000,
            120, "the daemon to handle the whole stream", every_s=0.5,
        )  # fmt: skip
        accuracy = daemon.metric("streamlearn_accuracy", window="cumulative", **labels)
        drifts = daemon.metric("streamlearn_drifts_total", **labels)
        logged = daemon.run_log()
        assert daemon.shutdown() == 0

    settings = RunSettings(
        bootstrap_servers="offline", topic=topic_name, checkpoint_store="none",
        drift_action="retrain", retrain_holdout_events=HOLDOUT,
    )  # fmt: skip
    figures = evaluate(STREAM, settings, tmp_path / "offline.jsonl").figures
    assert abs(figures.overall - accuracy) <= 1e-12, (figures.overall, accuracy)
    assert figures.scored == 6_000
    daemon_decisions = decisions(logged)
    assert [line["kind"] for line in daemon_decisions] == ["drift", "retrain"] * 2
    assert drifts == 2
    offline_decisions = decisions(figures.log)
    assert [d["offset"] for d in offline_decisions] == [d["offset"] for d in daemon_decisions]
    for ours, theirs in zip(offline_decisions, daemon_decisions, strict=True):
        assert ours.keys() == theirs.keys()
        for key, value in ours.items():
            if isinstance(value, float):
                assert abs(value - theirs[key]) <= 1e-12, (key, ours, theirs)
            else:
                assert value == theirs[key], (key, ours, theirs)
