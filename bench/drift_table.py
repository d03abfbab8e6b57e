"""The drift table of docs/drift.md: accuracy over the 5,000 events after a change.

For each stream (three abrupt changes, one gradual) and each drift action of the daemon
(none, reset, retrain), ``streamlearn evaluate``'s runner (the daemon's own loop,
offline) gives the accuracy over the 5,000 events from the change on; River's
``drift.DriftRetrainingClassifier`` on the same events is the reference. Prints the
markdown table, each row with the command that reproduces it.

    python -m bench.drift_table            # about 2-4 minutes on one core
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from river import drift

from learners.spec import parse_model_spec
from stream.settings import DEFAULT_MODEL, RunSettings
from stream.tools.evaluate import evaluate
from stream.tools.produce import SourceOptions, source_events

WINDOW = 5_000
CHANGE = 10_000
HT = "tree.HoeffdingTreeClassifier"


@dataclass(frozen=True)
class Case:
    generator: str
    seed: int
    model: str
    width: int = 0  # a gradual change over this many events

    @property
    def options(self) -> SourceOptions:
        return SourceOptions(
            count=CHANGE + WINDOW, generator=self.generator, seed=self.seed,
            drift_at=(CHANGE,), drift_width=self.width,
        )  # fmt: skip

    @property
    def name(self) -> str:
        kind = f"gradual over {self.width:,}" if self.width else "abrupt"
        model = "Hoeffding tree" if self.model == HT else "default (scaled LR)"
        return f"{self.generator} (seed {self.seed}), {kind} | {model}"

    def command(self, action: str, pool: str | None = None) -> str:
        width = f" --drift-width {self.width}" if self.width else ""
        model = "" if self.model == DEFAULT_MODEL else f" --model {self.model}"
        pool_option = f" --retrain-pool {pool}" if pool else ""
        return (
            f"streamlearn evaluate --generator {self.generator} --seed {self.seed} "
            f"--count {CHANGE + WINDOW} --drift-at {CHANGE}{width}{model} --drift-action {action}"
            f"{pool_option}"
        )


CASES = (
    Case("agrawal", 1, HT),
    Case("sea", 2, DEFAULT_MODEL),
    Case("stagger", 1, DEFAULT_MODEL),
    Case("sine", 1, DEFAULT_MODEL),
    Case("mixed", 2, HT),
    Case("sine", 1, DEFAULT_MODEL, width=2_000),
    Case("agrawal", 1, HT, width=2_000),
)
# (as printed, --drift-action, --retrain-pool): the pool both races two candidates.
ACTIONS = (
    ("none", "none", None),
    ("reset", "reset", None),
    ("retrain", "retrain", None),
    ("retrain, pool both", "retrain", "both"),
)


def daemon_accuracy(case: Case, action: str, pool: str | None, scratch: Path) -> tuple[float, str]:
    """The daemon's accuracy after the change, and its decisions in a few words."""
    settings = RunSettings(
        bootstrap_servers="offline", topic=case.generator, checkpoint_store="none",
        model=case.model, drift_action=action, **({"retrain_pool": pool} if pool else {}),
    )  # fmt: skip
    run_log = scratch / f"{case.generator}-{case.seed}-{case.width}-{action}-{pool}.jsonl"
    figures = evaluate(case.options, settings, run_log, windows=(WINDOW,)).figures
    [change] = figures.after_changes
    [window] = change["windows"]
    kinds = [line["kind"] for line in figures.log]
    results = [line["result"] for line in figures.log if line["kind"] == "retrain"]
    before = sum(1 for line in figures.log if line["kind"] == "drift" and line["offset"] < CHANGE)
    said = f"{kinds.count('drift')} drift(s)" + (f", {before} before the change" if before else "")
    if results:
        said += ", retrains " + "/".join(results)
    return window["value"], said


def river_accuracy(case: Case) -> float:
    """River's DriftRetrainingClassifier (default DDM detector) on the same events, scored
    the way the daemon scores: predict, then learn; an event it has no answer for is not
    scored. The window is the 5,000 scored events from the change on."""
    model = drift.DriftRetrainingClassifier(model=parse_model_spec(case.model))
    hits: list[bool] = []
    for index, (x, y) in enumerate(source_events(case.options)):
        y_pred = model.predict_one(x)
        if index >= CHANGE and y_pred is not None:
            hits.append(y_pred == y)
        model.learn_one(x, y)
    hits = hits[:WINDOW]
    return sum(hits) / len(hits)


def rows() -> Iterator[str]:
    yield "| stream, change at 10,000 | model | action | accuracy, 5,000 events after | what the daemon did | command |"  # noqa: E501
    yield "|---|---|---|---|---|---|"
    with tempfile.TemporaryDirectory() as scratch:
        for case in CASES:
            stream, model = case.name.split(" | ")
            for label, action, pool in ACTIONS:
                value, said = daemon_accuracy(case, action, pool, Path(scratch))
                yield (f"| {stream} | {model} | {label} | {value:.3f} | {said} | "
                       f"`{case.command(action, pool)}` |")  # fmt: skip
            reference = river_accuracy(case)
            yield (f"| {stream} | {model} | River DriftRetrainingClassifier (DDM) | "
                   f"{reference:.3f} | reference | `python -m bench.drift_table` |")  # fmt: skip


def main() -> int:
    started = time.monotonic()
    for row in rows():
        print(row, flush=True)
    print(f"\n(computed in {time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
