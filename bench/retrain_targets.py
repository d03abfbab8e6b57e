"""Drift responses on held-out drift streams: none, reset, retrain, and River's reference.

``python -m bench.retrain_targets`` prints, for each stream and model, the accuracy over
the events after the change point (5,000 by default) for ``--drift-action none``,
``reset`` and ``retrain`` (each ``--retrain-pool``), and for River's
``drift.DriftRetrainingClassifier`` on the same events. tests/learners/test_retrain_targets.py
holds the project's targets on the same streams (issue 14).

The daemon's learner code runs as it does in the daemon (``learners.regression.learner_for``
with the run's options); a requested retrain's pool is replayed from the stream at once,
as the daemon's replayer does while it holds the partition's live events back.
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from learners.outcomes import Outcome, RetrainRequested
from learners.regression import learner_for
from learners.spec import parse_model_spec
from stream.settings import RunSettings
from stream.tools.generators import concept_stream

Pair = tuple[dict[Any, Any], Any]

HOEFFDING_TREE = "tree.HoeffdingTreeClassifier"
DEFAULT_MODEL = "preprocessing.StandardScaler | linear_model.LogisticRegression"


def _daemon_options() -> dict[str, Any]:
    """The learner options ``streamlearn run`` passes by default (stream/settings.py)."""
    defaults = {name: f.default for name, f in RunSettings.model_fields.items()}
    return {
        "adwin_delta": defaults["adwin_delta"],
        "min_retrain_events": defaults["min_retrain_events"],
        "max_retrain_events": defaults["max_retrain_events"],
        "holdout_events": defaults["retrain_holdout_events"],
        "max_holdout_events": defaults["retrain_max_holdout_events"],
        "warning_delta": defaults["warning_delta"] or None,
        "warning_events": defaults["warning_events"],
    }


#: The daemon's drift options by default.
DAEMON_OPTIONS = _daemon_options()
CHANGE_AT = 5_000
AFTER = 5_000
GRADUAL_WIDTH = 1_000


@dataclass(frozen=True)
class DriftStream:
    """A stream with one change: abrupt at ``change_at``, or gradual from there over
    ``width`` events (the new concept's share growing linearly)."""

    generator: str
    seed: int
    kind: str = "abrupt"
    change_at: int = CHANGE_AT
    after: int = AFTER
    width: int = GRADUAL_WIDTH

    @property
    def name(self) -> str:
        return f"{self.generator}/{self.seed} {self.kind}"

    def events(self) -> list[Pair]:
        count = self.change_at + self.after
        if self.kind == "abrupt":
            return list(
                concept_stream(
                    self.generator, seed=self.seed, drift_at=[self.change_at], count=count
                )
            )
        return list(itertools.islice(self._gradual(), count))

    def _gradual(self) -> Iterator[Pair]:
        old = concept_stream(self.generator, seed=self.seed)
        new = concept_stream(self.generator, seed=self.seed, drift_at=[1])
        next(new)  # its first event is concept 0's
        rng = random.Random(self.seed)
        for i in itertools.count():
            share = min(max((i - self.change_at) / self.width, 0.0), 1.0)
            yield next(new) if rng.random() < share else next(old)


#: The streams of the targets: the generators whose change costs the unadapted model
#: (a reset beats no action by 3 points or more with the Hoeffding tree on seed 1, so
#: "3 points above no action" says something about the response). Abrupt on seed 1,
#: gradual on seed 2: the first seeds tried, not picked afterwards.
TARGET_GENERATORS = ("stagger", "mixed", "sine")
ABRUPT = tuple(DriftStream(g, 1) for g in TARGET_GENERATORS)
GRADUAL = tuple(DriftStream(g, 2, "gradual") for g in TARGET_GENERATORS)
#: Measured and reported too (``--all``), where the change costs little or nothing.
OTHERS = tuple(
    DriftStream(g, seed, kind)
    for kind, seed in (("abrupt", 1), ("gradual", 2))
    for g in ("sea", "agrawal", "hyperplane", "rbf-drift")
)


@dataclass
class Run:
    """One learner over one stream: accuracy after the change, what it did and when."""

    hits: int = 0
    scored: int = 0
    outcomes: list[tuple[int, Outcome]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.hits / self.scored if self.scored else 0.0

    def before(self, index: int) -> list[Outcome]:
        """Actions (not requests: a warning's candidate changes nothing) before ``index``."""
        return [o for i, o in self.outcomes if i < index and not isinstance(o, RetrainRequested)]


def run_learner(
    stream: DriftStream, events: Sequence[Pair], model: str, action: str, **options: Any
) -> Run:
    """Test-then-train the daemon's learner over ``events``; score the window after the
    change. Offsets are event indices (one labelled event per offset)."""
    learner = learner_for(parse_model_spec(model), drift_action=action, **options)
    run = Run()
    window = range(stream.change_at, stream.change_at + stream.after)
    for i, (x, y) in enumerate(events):
        y_pred, _ = learner.step(x, y, i)
        if i in window:
            run.hits += y_pred == y
            run.scored += 1
        while learner.outcomes:
            for outcome in learner.drain_outcomes():
                run.outcomes.append((i, outcome))
                if isinstance(outcome, RetrainRequested) and learner.retrain is not None:
                    _replay(learner.retrain, events, outcome)
            learner.settle_retrain()
    return run


def _replay(job: Any, events: Sequence[Pair], request: RetrainRequested) -> None:
    for offset in range(request.start_offset, request.end_offset):
        job.train(*events[offset], offset)
    job.replay_finished()


def run_river(stream: DriftStream, events: Sequence[Pair], model: str) -> Run:
    """River's ``drift.DriftRetrainingClassifier`` (its default detector) on the same events."""
    from river import drift

    reference = drift.DriftRetrainingClassifier(model=parse_model_spec(model))
    run = Run()
    for i, (x, y) in enumerate(events):
        if i >= stream.change_at:
            run.hits += reference.predict_one(x) == y
            run.scored += 1
        reference.learn_one(x, y)
    return run


def table(
    streams: Sequence[DriftStream],
    models: Sequence[str],
    pools: Sequence[str] = ("since-change",),
    options: dict[str, Any] | None = None,
) -> list[str]:
    options = DAEMON_OPTIONS if options is None else options
    columns = ["none", "reset", *(f"retrain {p}" for p in pools), "river"]
    lines = [
        f"{'stream':<22} {'model':<8} " + " ".join(f"{c:>20}" for c in columns) + "  retrain log"
    ]
    for stream in streams:
        events = stream.events()
        for model in models:
            runs = [
                run_learner(stream, events, model, "none"),
                run_learner(stream, events, model, "reset"),
            ]
            for pool in pools:
                runs.append(
                    run_learner(stream, events, model, "retrain", retrain_pool=pool, **options)
                )
            runs.append(run_river(stream, events, model))
            short = "HT" if model == HOEFFDING_TREE else "LR"
            cells = " ".join(f"{r.accuracy:>20.4f}" for r in runs)
            lines.append(f"{stream.name:<22} {short:<8} {cells}  {_log(runs[2], stream)}")
    return lines


def _log(run: Run, stream: DriftStream) -> str:
    notes = []
    for i, outcome in run.outcomes:
        kind = type(outcome).__name__.removeprefix("Retrain").removesuffix("Detected")
        if hasattr(outcome, "promoted"):
            kind = f"{outcome.result}({outcome.wins}:{outcome.losses},{outcome.reason})"
        notes.append(f"{kind}@{i - stream.change_at:+d}")
    return " ".join(notes)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", nargs="+", default=["since-change", "combined", "both"])
    parser.add_argument("--warning-delta", type=float, default=DAEMON_OPTIONS["warning_delta"])
    parser.add_argument("--generators", nargs="*", help="only these generators")
    parser.add_argument("--all", action="store_true", help="the other generators too")
    args = parser.parse_args(argv)
    options = {**DAEMON_OPTIONS, "warning_delta": args.warning_delta or None}
    streams = [
        s
        for s in ABRUPT + GRADUAL + (OTHERS if args.all else ())
        if not args.generators or s.generator in args.generators
    ]
    for line in table(streams, (HOEFFDING_TREE, DEFAULT_MODEL), args.pools, options):
        print(line, flush=True)


if __name__ == "__main__":
    main()
