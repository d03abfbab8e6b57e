"""``python -m bench.models``: online River models against scikit-learn refits from the window.

No Kafka: each model runs in a ``PartitionLearner`` (the daemon's per-partition learner,
test-then-train) over the drift generators of ``streamlearn produce``, so the figures are
the model's own: prequential accuracy, events/s, and the longest single step (a refit
happens inside one step, so that is the pause a refit adds to the loop).

``--pause`` measures only the refit pause: LogisticRegression and an MLP on a 20,000-event
window refitted every 2,000 events, for each ``--refit-lags`` (0: the fit inside
``learn_one``; more: in the background, taken over that many events later, waited for if
not done): the longest step, and the loop's events/s while a fit is in flight and not;
``--rate`` offers the events at a fixed rate (a loop behind catches up at full speed),
``--only`` picks models by name.
``--challengers``: a served model with a challenger (``--challenger``), each generator, and
the CPU time per event with 0, 1 and 3 challengers.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from learners.challengers import attach
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
    "StandardScaler | MLP128 (max_iter=20)": "preprocessing.StandardScaler | "
    "neural_network.MLPClassifier(hidden_layer_sizes=(128,), max_iter=20, random_state=1)",
}


@dataclass(frozen=True)
class Pause:
    longest_step_s: float
    #: The longest step at which a fit took over (with a lag: the wait for an unfinished
    #: fit, if any, is in it), and the longest other step.
    longest_take_over_s: float
    longest_other_s: float
    #: Events/s of the loop while a background fit was in flight, and once a fit served
    #: with none in flight (before the first fit a model predicts nothing: not counted).
    fitting_events_per_s: float
    idle_events_per_s: float
    accuracy: float
    refits: int
    #: Refit points passed over (``wait=False``: a fit still running).
    skipped: int = 0


def pause_run(spec: str, generator: str, count: int, rate: float | None = None) -> Pause:
    learner = PartitionLearner(parse_model_spec(spec), drift_action="none")
    model = learner.model
    events = list(concept_stream(generator, seed=42, drift_at=(), count=count))
    longest = {True: 0.0, False: 0.0}  # by "a fit took over in this step"
    seconds = {True: 0.0, False: 0.0}  # by "a fit was in flight", once a fit served
    steps = {True: 0, False: 0}
    started = time.perf_counter()
    for offset, (x, y) in enumerate(events):
        if rate:  # events arrive at `rate`; a loop behind catches up at full speed
            time.sleep(max(0.0, started + offset / rate - time.perf_counter()))
        fitting, fits = model.fitting, model.fits
        before = time.perf_counter()
        learner.step(x, y, offset)
        took = time.perf_counter() - before
        took_over = model.fits > fits
        longest[took_over] = max(longest[took_over], took)
        if fits:
            seconds[fitting] += took
            steps[fitting] += 1

    def rate(during: bool) -> float:
        return steps[during] / seconds[during] if seconds[during] else float("nan")

    return Pause(
        max(longest.values()),
        longest[True],
        longest[False],
        rate(True),
        rate(False),
        learner.cumulative.get(),
        model.fits,
        getattr(model, "skipped", 0),
    )


def pause(
    count: int, lags: Sequence[int], rate: float | None, only: str | None, wait: bool = True
) -> None:
    offered = f", offered at {rate:,.0f} events/s" if rate else ""
    waits = "" if wait else ", wait=False (a fit takes over once done; none is waited for)"
    print(f"{count:,} events{offered}, 20,000-event window, refit every 2,000 events{waits}")
    print(
        "| model | generator | refit_lag | longest step (ms) | at a take-over | other "
        "| events/s, fit in flight | events/s, none | accuracy | fits (skipped) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, estimator in PAUSE_MODELS.items():
        if only and only not in name:
            continue
        for generator in ("agrawal", "hyperplane"):
            for lag in lags:
                spec = (
                    f"sklearn(window=20000, refit_every=2000, refit_lag={lag}, wait={wait}):"
                    f"{estimator}"
                )
                r = pause_run(spec, generator, count, rate)
                ms = [f"{s * 1000:,.0f}" for s in (r.longest_step_s, r.longest_take_over_s)]
                print(
                    f"| {name.replace('|', chr(92) + '|')} | {generator} | {lag} | "
                    f"{ms[0]} | {ms[1]} | {r.longest_other_s * 1000:,.0f} | "
                    f"{r.fitting_events_per_s:,.0f} | {r.idle_events_per_s:,.0f} | "
                    f"{r.accuracy:.4f} | {r.refits} ({r.skipped}) |",
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


#: Served model and challenger of ``--challengers``: each the better one somewhere.
DUELS = (("river LR", "river HAT"), ("river HAT", "river LR"))


def challengers(count: int, action: str) -> None:
    drift_at = (count // 3, 2 * count // 3)
    print(
        f"{count:,} events, concept changes at {drift_at}, drift action {action}, "
        "challenger window 1,000, margin 0.02"
    )
    print("| generator | serving, challenger | served accuracy | each alone | switches at |")
    print("|---|---|---:|---:|---|")
    for generator in GENERATORS:
        events = list(concept_stream(generator, seed=42, drift_at=drift_at, count=count))
        for serving, challenger in DUELS:
            learner = PartitionLearner(parse_model_spec(MODELS[serving]), drift_action=action)
            attach(
                learner,
                (serving, parse_model_spec(MODELS[serving])),
                [(challenger, parse_model_spec(MODELS[challenger]))],
            )
            switched = []
            for offset, (x, y) in enumerate(events):
                learner.step(x, y, offset)
                switched += [o.offset for o in learner.drain_outcomes() if hasattr(o, "previous")]
            assert learner.challengers is not None
            alone = {m.name: m.cumulative for m in learner.challengers.scores()}
            print(
                f"| {generator} | {serving}, {challenger} | {learner.cumulative.get():.4f} | "
                f"{alone[serving]:.4f}, {alone[challenger]:.4f} | "
                f"{', '.join(f'{o:,}' for o in switched) or 'none'} |",
                flush=True,
            )
    lr = MODELS["river LR"]
    events = list(concept_stream("agrawal", seed=42, drift_at=drift_at, count=count))
    for shadows in (0, 1, 3):
        learner = PartitionLearner(parse_model_spec(lr), drift_action=action)
        attach(
            learner,
            ("LR", parse_model_spec(lr)),
            [(f"c{n}", parse_model_spec(lr)) for n in range(shadows)],
        )
        started = time.process_time()
        for offset, (x, y) in enumerate(events):
            learner.step(x, y, offset)
        cpu = (time.process_time() - started) / count
        print(
            f"river LR with {shadows} LR challenger(s): {cpu * 1e6:.1f} µs/event CPU "
            f"({1 / cpu:,.0f} events/s)",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.models", description=__doc__)
    parser.add_argument("--pause", action="store_true", help="only the 20,000-event refit pause")
    parser.add_argument(
        "--refit-lags",
        default="0,200,2000",
        help="with --pause: the refit_lag values to measure, comma-separated",
    )
    parser.add_argument(
        "--rate",
        type=float,
        help="with --pause: offer events at this rate (events/s) instead of as fast as the "
        "loop takes them",
    )
    parser.add_argument("--only", help="with --pause: the models whose name contains this")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="with --pause: models with wait=False (a fit takes over once done, from its "
        "refit_lag on; a refit point that finds a fit running is passed over)",
    )
    parser.add_argument(
        "--challengers",
        action="store_true",
        help="a model with a challenger, and what challengers cost",
    )
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--drift-action", default="none", choices=("none", "reset", "retrain"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # lbfgs/MLP convergence warnings on every refit
    if args.pause:
        lags = [int(lag) for lag in args.refit_lags.split(",")]
        pause(args.events, lags, args.rate, args.only, wait=not args.no_wait)
    elif args.challengers:
        challengers(args.events, args.drift_action)
    else:
        compare(args.events, args.drift_action)


if __name__ == "__main__":
    main()
