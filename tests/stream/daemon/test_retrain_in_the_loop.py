"""A retrain through the real loop and replayer (fake ports): the replayer trains each
pool event at its offset, so the candidate is scored on the pool events since the change
(the serving model's errors on them were kept) and ``--retrain-pool both`` splits one
replay between two candidates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stream.daemon.loop import LoopTiming
from tests.stream.daemon.fakes import TP0, Harness, encoded_records, flip_stream

FLIP_AT = 600


def _decided(tmp_path: Path, **learner_options: Any) -> dict[str, Any]:
    h = Harness(
        tmp_path,
        drift_action="retrain",
        timing=LoopTiming(live_slice_during_replay=25, retrain_budget_s=0.1),
        max_records=200,
        per_read=20,
        learner_options={"min_retrain_events": 1, "holdout_events": 60, **learner_options},
    )
    h.source.append(encoded_records(TP0, flip_stream(1500, flip_at=FLIP_AT)))
    h.start(TP0)
    for _ in range(60):
        h.cycle()
        if h.run_log("retrain"):
            (decision,) = h.run_log("retrain")[:1]
            return decision
    raise AssertionError("no retrain was decided")


def test_the_pool_since_the_change_is_scored_and_promotes_at_the_end_of_the_replay(
    tmp_path: Path,
) -> None:
    decision = _decided(tmp_path)
    (drift,) = _drifts(tmp_path)
    assert decision["result"] == "promoted"
    assert decision["reason"] == "clearly better on the pool"
    # Scored on pool events since the change only: none from before the flip.
    assert 10 <= decision["evaluated_on"] <= drift["offset"] + 1 - FLIP_AT
    assert decision["wins"] > decision["losses"]


def test_both_pools_race_and_the_since_change_candidate_wins_an_abrupt_flip(
    tmp_path: Path,
) -> None:
    decision = _decided(tmp_path, retrain_pool="both")
    assert decision["result"] == "promoted" and decision["pool"] == "since-change"


def _drifts(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "drift"]
