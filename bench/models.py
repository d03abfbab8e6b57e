"""``python -m bench.models``: online River models against scikit-learn refits from the window.

No Kafka: each model runs in a ``PartitionLearner`` (the daemon's per-partition learner,
test-then-train) over the drift generators of ``streamlearn produce``, so the figures are
the model's own: prequential accuracy, events/s, and the longest single step (a refit
happens inside one step, so that is the pause a refit adds to the loop).

``--pause`` measures only the refit pause: LogisticRegression on a 20,000-event window.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from learners.prequential import PartitionLearner
from learners.spec import parse_model_spec
from stream.tools.generators import concept_stream

MODELS = {
    "river LR": "preprocessing.StandardScaler | linear_model.LogisticRegression",
    "river HAT": "tree.HoeffdingAdaptiveTreeClassifier(seed=1)",
    "sklearn LR w2000/500": "sklearn(window=2000, refit_every=500):"
    "preprocessing.StandardScaler | linear_model.LogisticRegression",
    "sklearn LR w20000/2000": "sklearn(window=20000, refit_every=2000):"
    "preprocessing.StandardScaler | linear_model.LogisticRegression",
    "sklearn MLP128 w2000/500": "sklearn(window=2000, refit_every=500):"
    "preprocessing.StandardScaler | neural_network.MLPClassifier(hidden_layer_sizes=(128,), "
    "max_iter=50, random_state=1)",
}
GENERATORS = ("sea", "agrawal", "hyperplane", "sine")


@dataclass(frozen=True)
class Run:
    accuracy: float
    events_per_s: float
    longest_step_s: float
    refits: int


def run(spec: str, generator: str, count: int, drift_at: Sequence[int], action: str) -> Run:
    learner = PartitionLearner(parse_model_spec(spec), drift_action=action)
    events = list(concept_stream(generator, seed=42, drift_at=drift_at, count=count))
    longest = 0.0
    started = time.perf_counter()
    for offset, (x, y) in enumerate(events):
        before = time.perf_counter()
        learner.step(x, y, offset)
        longest = max(longest, time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    fits = getattr(learner.model, "fits", 0)
    return Run(learner.cumulative.get(), count / elapsed, longest, fits)


PAUSE_MODELS = {
    "LogisticRegression": "linear_model.LogisticRegression",
    "StandardScaler | LogisticRegression": "preprocessing.StandardScaler | "
    "linear_model.LogisticRegression",
}


def pause(count: int) -> None:
    for name, estimator in PAUSE_MODELS.items():
        spec = f"sklearn(window=20000, refit_every=2000):{estimator}"
        for generator in ("agrawal", "hyperplane"):
            result = run(spec, generator, count, (), "none")
            print(
                f"{generator}: {name}, 20,000-event window, {result.refits} refits: "
                f"longest step {result.longest_step_s * 1000:.0f} ms, "
                f"{result.events_per_s:,.0f} events/s, accuracy {result.accuracy:.4f}",
                flush=True,
            )


def compare(count: int, action: str) -> None:
    drift_at = (count // 3, 2 * count // 3)
    print(f"{count:,} events, concept changes at {drift_at}, drift action {action}")
    print("| generator | model | accuracy | events/s | longest step (ms) |")
    print("|---|---|---:|---:|---:|")
    for generator in GENERATORS:
        for name, spec in MODELS.items():
            r = run(spec, generator, count, drift_at, action)
            print(
                f"| {generator} | {name} | {r.accuracy:.4f} | {r.events_per_s:,.0f} | "
                f"{r.longest_step_s * 1000:.0f} |",
                flush=True,
            )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.models", description=__doc__)
    parser.add_argument("--pause", action="store_true", help="only the 20,000-event refit pause")
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--drift-action", default="none", choices=("none", "reset", "retrain"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # lbfgs/MLP convergence warnings on every refit
    if args.pause:
        pause(args.events)
    else:
        compare(args.events, args.drift_action)


if __name__ == "__main__":
    main()
