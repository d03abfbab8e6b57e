"""The run event log: drifts, decisions and accuracy (or MAE) samples as JSON lines.

The format is documented in docs/architecture.md ("Run event log").
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any, assert_never

from learners.outcomes import (
    DriftDetected,
    ModelReset,
    ModelSwitched,
    Outcome,
    RetrainAbandoned,
    RetrainDecided,
    RetrainDropped,
    RetrainRequested,
    RetrainRestarted,
)


class RunLog:
    """Appends one JSON object per line; line-buffered so a crash loses at most a line."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: IO[str] | None = open(path, "a", buffering=1) if path else None  # noqa: SIM115

    def write(
        self, kind: str, topic: str, partition: int, offset: int, learned: int, /, **fields: Any
    ) -> None:
        if self._file is None:
            return
        line = {
            "time": time.time(),
            "kind": kind,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "learned": learned,
            **fields,
        }
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")

    def outcome(self, topic: str, partition: int, outcome: Outcome) -> None:
        at = (topic, partition)
        match outcome:
            case DriftDetected():
                self.write(
                    "drift",
                    *at,
                    outcome.offset,
                    outcome.learned,
                    error_before=outcome.error_before,
                    error_after=outcome.error_after,
                    width=outcome.width,
                    action=outcome.action,
                )
            case ModelReset():
                self.write(
                    "reset",
                    *at,
                    outcome.offset,
                    outcome.learned,
                    model_version=outcome.model_version,
                )
            case RetrainRequested():
                pass  # the decision is what the run log records
            case RetrainDecided():
                self.write(
                    "retrain",
                    *at,
                    outcome.offset,
                    outcome.learned,
                    result=outcome.result,
                    # candidate_accuracy/serving_accuracy, or candidate_mae/serving_mae
                    **{
                        f"candidate_{outcome.metric}": outcome.candidate_score,
                        f"serving_{outcome.metric}": outcome.serving_score,
                    },
                    trained_on=outcome.trained_on,
                    evaluated_on=outcome.evaluated_on,
                    model_version=outcome.model_version,
                    wins=outcome.wins,
                    losses=outcome.losses,
                    statistic=round(outcome.statistic, 3),
                    pool=outcome.pool,
                    reason=outcome.reason,
                )
            case RetrainAbandoned():
                self.write(
                    "retrain_abandoned",
                    *at,
                    outcome.offset,
                    outcome.learned,
                    reason=outcome.reason,
                    model_version=outcome.model_version,
                )
            case ModelSwitched():
                self.write(
                    "switch",
                    *at,
                    outcome.offset,
                    outcome.learned,
                    previous=outcome.previous,
                    model=outcome.model,
                    # serving_accuracy/challenger_accuracy, or serving_mae/challenger_mae
                    **{
                        f"serving_{outcome.metric}": outcome.serving_score,
                        f"challenger_{outcome.metric}": outcome.challenger_score,
                    },
                    window=outcome.window,
                    model_version=outcome.model_version,
                )
            case RetrainDropped():
                self.write(
                    "retrain_dropped",
                    *at,
                    outcome.offset,
                    outcome.learned,
                    reason=outcome.reason,
                    model_version=outcome.model_version,
                )
            case RetrainRestarted():
                self.write(
                    "retrain_restarted",
                    *at,
                    outcome.offset,
                    outcome.learned,
                    pool=outcome.pool,
                    reason=outcome.reason,
                    trained_on=outcome.trained_on,
                    model_version=outcome.model_version,
                )
            case _:
                assert_never(outcome)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
