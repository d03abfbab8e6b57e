"""Window fits in worker processes: the same model as in the loop, a killed worker, exits."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from learners import fit_pool
from learners.background_fit import BackgroundFit, fit_window
from learners.batch import WindowedClassifier
from tests.learners.sklearn_doubles import GatedNB
from tests.waiting import wait_until

RNG = np.random.default_rng(0)
ROWS = RNG.normal(size=(5000, 10))
LABELS = (ROWS[:, 0] * ROWS[:, 1] + ROWS[:, 2] > 0).tolist()  # not linear: the MLP has work
EVENTS = [
    ({f"x{i}": float(v) for i, v in enumerate(row)}, y) for row, y in zip(ROWS, LABELS, strict=True)
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_worker_fits_the_same_mlp_as_the_loop() -> None:
    """Large enough for BLAS to split its products across threads in the loop's process
    (a worker keeps one): the fits are still equal to the last bit."""
    estimator = make_pipeline(StandardScaler(), MLPClassifier((128,), max_iter=10, random_state=3))
    background = BackgroundFit(estimator, ROWS, LABELS, screen=False)
    background.start()
    in_worker = background.result().fitted
    in_loop = fit_window(estimator, ROWS, LABELS, screen=False).fitted
    assert np.array_equal(in_worker.predict_proba(ROWS), in_loop.predict_proba(ROWS))
    for theirs, ours in zip(in_worker[-1].coefs_, in_loop[-1].coefs_, strict=True):
        assert np.array_equal(theirs, ours)


def test_a_workers_warnings_are_raised_in_the_callers_process() -> None:
    """Under the caller's filters, as a fit in the loop would raise them."""
    fit = BackgroundFit(MLPClassifier((4,), max_iter=1), ROWS[:200], LABELS[:200], False)
    fit.start()
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        fit.result()


def test_a_killed_worker_costs_a_fit_again_not_the_model(gate: Path) -> None:
    spec: dict[str, Any] = dict(window=50, refit_every=20, refit_lag=10)
    model = WindowedClassifier(GatedNB(str(gate)), **spec)
    for x, y in EVENTS[:20]:
        model.learn_one(x, y)
    pending = model._pending
    assert pending is not None and pending._future is not None
    workers = multiprocessing.active_children()
    assert workers, "no worker process"
    for worker in workers:
        os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
    future = pending._future
    wait_until(future.done, 60, "the pool to notice its worker died")
    assert isinstance(future.exception(), BrokenProcessPool)
    gate.touch()
    plain = WindowedClassifier(GaussianNB(), **spec)
    for x, y in EVENTS[:20]:
        plain.learn_one(x, y)
    for x, y in EVENTS[20:60]:
        assert model.predict_proba_one(x) == plain.predict_proba_one(x)
        model.learn_one(x, y)
        plain.learn_one(x, y)
    assert model.fits == plain.fits == 2
    fitted_in = model._fitted.fitted_in_
    assert fitted_in != os.getpid() and fitted_in not in {w.pid for w in workers}


def test_a_pool_that_keeps_breaking_leaves_the_fit_to_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    submitted = []

    def broken(*args: Any) -> Future[Any]:
        submitted.append(args)
        future: Future[Any] = Future()
        future.set_exception(BrokenProcessPool("killed"))
        return future

    monkeypatch.setattr(fit_pool, "submit", broken)
    fit = BackgroundFit(GatedNB(), ROWS[:100], LABELS[:100], screen=False)
    fit.start()
    result = fit.result()
    assert len(submitted) == 2  # once more in a fresh pool, then here
    assert result.fitted.fitted_in_ == os.getpid()
    plain = GaussianNB().fit(ROWS[:100], LABELS[:100])
    assert np.array_equal(result.fitted.theta_, plain.theta_)


#: Starts a fit of hours in a worker, prints the worker's pid, then does what it is told.
LONG_FIT = """
import multiprocessing, sys, time
from sklearn.neural_network import MLPClassifier
from learners.batch import WindowedClassifier

if __name__ == "__main__":
    # A huge max_iter and n_iter_no_change never stop early.
    slow = MLPClassifier((256, 256), max_iter=10**6, tol=0.0, n_iter_no_change=10**6)
    model = WindowedClassifier(slow, window=200, refit_every=200, refit_lag=200)
    for i in range(200):
        model.learn_one({"a": float(i), "b": float(i % 7)}, i % 2 == 0)
    assert model.fitting
    print(*[p.pid for p in multiprocessing.active_children()], flush=True)
    THEN
"""


def gone(pid: int) -> bool:
    """The process ended (a zombie nobody reaped counts: it runs no more)."""
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_exit_ends_a_running_fit_instead_of_waiting_for_it(tmp_path: Path) -> None:
    script = tmp_path / "exit.py"
    script.write_text(textwrap.dedent(LONG_FIT.replace("THEN", "sys.exit(0)")))
    done = subprocess.run(
        [sys.executable, str(script)], timeout=120, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    pids = [int(pid) for pid in done.stdout.split()]
    assert pids
    wait_until(lambda: all(gone(pid) for pid in pids), 30, "the workers to end")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_killed_process_takes_its_running_fit_along(tmp_path: Path) -> None:
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(LONG_FIT.replace("THEN", "time.sleep(120)")))
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        pids = [int(pid) for pid in process.stdout.readline().split()]
        assert pids, process.stderr.read() if process.stderr else ""
    finally:
        process.kill()
        process.wait(timeout=60)
    wait_until(lambda: all(gone(pid) for pid in pids), 30, "the workers to end")


@pytest.fixture
def gate(tmp_path: Path) -> Any:
    path = tmp_path / "gate"
    yield path
    path.touch()
