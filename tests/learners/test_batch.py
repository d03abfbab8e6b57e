"""The scikit-learn window wrapper: exact against a hand-rolled loop, vectorising, checkpoints."""

from __future__ import annotations

import itertools
import os
import pickle
import threading
import warnings
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from river import datasets
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier

from learners import unpickling
from learners.background_fit import BackgroundFit
from learners.batch import WindowedClassifier
from learners.checkpoint import decode_checkpoint, encode_checkpoint
from learners.exceptions import CheckpointError, ModelSpecError
from learners.outcomes import RetrainDecided
from learners.prequential import PartitionLearner
from learners.screening import screening
from learners.sequence import SequenceTracker
from learners.spec import parse_model_spec
from learners.state import PartitionState
from tests.learners.sklearn_doubles import FailingNB, GatedNB
from tests.waiting import wait_until

KEY = b"test-key-0123456789"
EVENTS = list(datasets.Phishing())  # 1,250 events, numeric features, bool labels


def hand_rolled(estimator: Any, window: int, refit_every: int, lag: int) -> tuple[list[Any], float]:
    """Test-then-train written out: predictions of the last fit taken over, a fit every
    ``refit_every`` events on the last ``window`` ones (features in first-seen order,
    missing ones 0), taken over ``lag`` events later: the fit started after event n
    predicts from event n + lag + 1 on (1-based)."""
    names: list[str] = []
    recent: deque[tuple[dict[str, float], bool]] = deque(maxlen=window)
    fitted: Any = None
    width = 0
    waiting: dict[int, tuple[Any, int]] = {}  # take-over count -> (fit, width)
    predictions, hits, scored = [], 0, 0
    for learned, (x, y) in enumerate(EVENTS, start=1):
        prediction = None
        if fitted is not None:
            row = np.array([[x.get(name, 0.0) for name in names[:width]]])
            prediction = fitted.classes_[int(np.argmax(fitted.predict_proba(row)[0]))].item()
            hits += prediction == y
            scored += 1
        predictions.append(prediction)
        names.extend(name for name in x if name not in names)
        recent.append((x, y))
        if learned % refit_every == 0:
            fit = clone(estimator)
            rows = np.array([[x_.get(name, 0.0) for name in names] for x_, _ in recent])
            fit.fit(rows, np.array([y_ for _, y_ in recent]))
            waiting[learned + lag] = (fit, len(names))
        if learned in waiting:
            fitted, width = waiting.pop(learned)
    return predictions, hits / scored


ESTIMATORS = [
    LogisticRegression(C=0.5),
    GaussianNB(),
    MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, random_state=0),
]


@pytest.mark.parametrize("lag", [0, 37, 100])
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_prequential_figures_equal_a_hand_rolled_loop(estimator: Any, lag: int) -> None:
    """Whatever the lag, in the background or not: the predictions of a loop that fits
    synchronously and holds each fit back ``lag`` events."""
    warnings.simplefilter("ignore")  # MLP's ConvergenceWarning, the same on both sides
    expected_predictions, expected_accuracy = hand_rolled(estimator, 300, 100, lag)
    model = WindowedClassifier(estimator, window=300, refit_every=100, refit_lag=lag)
    learner = PartitionLearner(model)
    predictions = []
    for learned, (x, y) in enumerate(EVENTS, start=1):
        predictions.append(learner.step(x, y, learned - 1)[0])
        # In flight from a refit point until its take-over lag events later; never at 0.
        assert model.fitting is (lag > 0 and learned >= 100 and learned % 100 < lag)
    assert predictions == expected_predictions
    assert predictions[: 100 + lag] == [None] * (100 + lag)  # nothing before the first fit
    assert predictions[100 + lag] is not None
    assert learner.cumulative.get() == expected_accuracy
    assert learner.learned == len(EVENTS)
    assert model.fits == (len(EVENTS) - lag) // 100  # fits that took over


def test_new_names_extend_the_vocabulary_at_the_next_fit_and_missing_ones_are_zero() -> None:
    model = WindowedClassifier(LogisticRegression(), window=10, refit_every=4, refit_lag=0)
    for i in range(4):
        model.learn_one({"a": float(i % 2)}, i % 2 == 1)
    before = model.predict_proba_one({"a": 1.0})
    # A name the fit never saw changes nothing until the next fit...
    assert model.predict_proba_one({"a": 1.0, "b": 100.0}) == before
    for i in range(4):
        model.learn_one({"b": float(i % 2)}, i % 2 == 1)  # "a" missing: 0
    assert model._fit_width == 2
    rows, _ = model._window()
    assert rows.tolist()[-4:] == [[0.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 1.0]]
    # ...after it, "b" counts.
    assert model.predict_proba_one({"b": 1.0}) != model.predict_proba_one({"b": 0.0})


def test_strings_are_one_hot_and_other_values_refused_before_anything_changes() -> None:
    model = WindowedClassifier(GaussianNB(), window=10, refit_every=2, refit_lag=0)
    model.learn_one({"colour": "red", "n": 1, "flag": True, "gone": None}, "hot")
    model.learn_one({"colour": "blue", "n": 2, "flag": False}, "cold")
    assert list(model._vocabulary) == [("colour", "red"), "n", "flag", ("colour", "blue")]
    assert model.predict_one({"colour": "red", "n": 1, "flag": True}) == "hot"
    for bad in ({"n": [1, 2]}, {"n": float("nan")}, {"n": float("inf")}, {"m": {"a": 1}}):
        with pytest.raises(ValueError, match="feature"):
            model.learn_one({"new": 1.0, **bad}, "hot")
        with pytest.raises(ValueError, match="feature"):
            model.predict_proba_one(bad)
    assert model._learned == 2 and "new" not in model._vocabulary


def test_classes_as_seen_one_class_then_mixed_label_types() -> None:
    model = WindowedClassifier(LogisticRegression(), window=6, refit_every=2, refit_lag=0)
    model.learn_one({"x": 0.0}, "a")
    model.learn_one({"x": 0.1}, "a")
    assert model.predict_proba_one({"x": 5.0}) == {"a": 1.0}  # one class: said with certainty
    for i in range(4):
        model.learn_one({"x": float(i)}, [1, "a"][i % 2])  # an int and a str class
    proba = model.predict_proba_one({"x": 3.0})
    assert set(proba) == {1, "a"} and type(model.predict_one({"x": 3.0})) in (int, str)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"window": 0}, "at least 1"),
        ({"refit_lag": -1}, "refit_lag must be a whole number from 0"),
        ({"refit_every": 100, "refit_lag": 101}, "to refit_every \\(100"),
        ({"refit_lag": 2.0}, "got 2.0"),
        ({"refit_lag": True}, "got True"),
    ],
)
def test_refused_arguments(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WindowedClassifier(GaussianNB(), **arguments)


def test_the_default_lag_is_200_events_at_most_one_refit_interval() -> None:
    assert WindowedClassifier(GaussianNB()).lag == 200
    assert WindowedClassifier(GaussianNB(), refit_every=50).lag == 50
    assert WindowedClassifier(GaussianNB(), refit_every=50).refit_lag is None  # as given


# -- checkpoints ----------------------------------------------------------------------

FAMILIES = [
    "sklearn(window=200, refit_every=50):linear_model.LogisticRegression(C=1.0)",
    "sklearn(window=200, refit_every=50):neural_network.MLPClassifier("
    "hidden_layer_sizes=(8,), max_iter=30, random_state=1)",
    "sklearn(window=200, refit_every=50):"
    "preprocessing.StandardScaler | linear_model.SGDClassifier(loss='log_loss', random_state=1)",
    "sklearn(window=200, refit_every=50):ensemble.RandomForestClassifier(n_estimators=3, "
    "random_state=1)",
    "sklearn(window=200, refit_every=50):ensemble.HistGradientBoostingClassifier(max_iter=5)",
    "sklearn(window=200, refit_every=50):neighbors.KNeighborsClassifier(algorithm='kd_tree')",
    "sklearn(window=200, refit_every=50):svm.LinearSVC()",
    "sklearn(window=200, refit_every=50):naive_bayes.GaussianNB",
]


@pytest.mark.parametrize("spec", FAMILIES)
def test_checkpoint_round_trip_restores_the_model_exactly(
    spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings.simplefilter("ignore")
    monkeypatch.setattr(unpickling, "ALLOWED_PACKAGES", ("river", "learners"))
    events = list(itertools.islice(EVENTS, 400))
    learner = PartitionLearner(screening(parse_model_spec(spec)), drift_action="retrain")
    for offset, (x, y) in enumerate(events[:230]):
        learner.step(x, y, offset)
    learner._request_retrain(100)  # a retrain in flight (its candidate) travels too
    blob = encode_checkpoint(PartitionState(learner, SequenceTracker()), next_offset=230, key=KEY)
    restored = decode_checkpoint(blob, key=KEY).state.learner  # type: ignore[attr-defined]
    # At 230 the fit of 200 is in flight (it takes over at 250, the default lag being 50);
    # fits start at 250, 300, 350, 400 and take over 50 events later.
    for offset, (x, y) in enumerate(events[230:], start=230):
        assert restored.step(x, y, offset) == learner.step(x, y, offset), spec
    assert restored.model.fits == learner.model.fits == 7


def test_a_young_model_checkpoint_carries_only_the_rows_in_use() -> None:
    model = WindowedClassifier(LogisticRegression(), window=20_000, refit_every=1_000)
    model.learn_one({"x": 1.0}, True)
    assert len(encode_checkpoint(model, next_offset=1, key=KEY)) < 10_000
    restored = decode_checkpoint(encode_checkpoint(model, next_offset=1, key=KEY), key=KEY).state
    restored.learn_one({"x": 2.0, "y": 1.0}, False)  # the ring grows back
    assert restored._window()[0].tolist() == [[1.0, 0.0], [2.0, 1.0]]


def _global_call(module: str, name: str) -> bytes:
    """A protocol-4 pickle calling ``module.name("x")``."""

    def text(value: str) -> bytes:
        return b"\x8c" + bytes([len(value)]) + value.encode()

    return b"\x80\x04" + text(module) + text(name) + b"\x93" + text("x") + b"\x85R."


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("sklearn.datasets", "fetch_openml"),  # a function that downloads
        ("sklearn.utils", "Bunch"),  # a class outside the estimator packages
        ("sklearn.linear_model._logistic", "LogisticRegression.fit"),  # a method
        ("sklearn.linear_model._logistic", "np"),  # a module reached by a path
        ("sklearn.linear_model._base", "sparse.load_npz"),  # a function reached by a path
        ("sklearn.neighbors._kd_tree", "np"),
        ("sklearn.utils._joblib", "Parallel"),
    ],
)
def test_only_sklearn_estimator_classes_load(module: str, name: str) -> None:
    with pytest.raises(CheckpointError, match="not allowed"):
        unpickling.restricted_loads(_global_call(module, name))


# -- specs ----------------------------------------------------------------------------


def test_a_spec_builds_the_wrapper_with_its_arguments() -> None:
    model = parse_model_spec(
        "sklearn(window=20000, refit_every=2000):neural_network.MLPClassifier("
        "hidden_layer_sizes=(128,))"
    )
    assert isinstance(model, WindowedClassifier)
    assert (model.window, model.refit_every, model.screen) == (20_000, 2_000, False)
    assert model.estimator.get_params()["hidden_layer_sizes"] == (128,)
    default = parse_model_spec("sklearn:linear_model.LogisticRegression(C=1.0)")
    assert (default.window, default.refit_every) == (10_000, 1_000)  # type: ignore[attr-defined]
    assert (default.refit_lag, default.lag) == (None, 200)  # type: ignore[attr-defined]
    lagged = parse_model_spec("sklearn(refit_every=500, refit_lag=0):naive_bayes.GaussianNB")
    assert (lagged.refit_every, lagged.refit_lag) == (500, 0)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sklearn:linear_model.NoSuchModel", "no public name 'NoSuchModel'"),
        ("sklearn:linear_model._logistic.LogisticRegression", "private name '_logistic'"),
        ("sklearn:linear_model._sgd_fast.Hinge", "private name"),
        ("sklearn:utils.Bunch", "not a class of an allowed scikit-learn module"),
        ("sklearn:datasets.fetch_openml('x')", "not a class of an allowed scikit-learn module"),
        ("sklearn:os.system('true')", "not a class of an allowed scikit-learn module"),
        ("sklearn:linear_model.LinearRegression", "must end in a scikit-learn classifier"),
        ("sklearn:linear_model.LogisticRegression(C=__import__('os'))", "private name"),
        ("sklearn:linear_model.LogisticRegression(Cee=1)", "unexpected keyword argument"),
        ("sklearn:linear_model.LogisticRegression(C=-1.0)", "refused its arguments"),
        ("sklearn(window=0):naive_bayes.GaussianNB", "at least 1"),
        ("sklearn(window='big'):naive_bayes.GaussianNB", "'window' is not one of"),
        ("sklearn(2):naive_bayes.GaussianNB", "name the arguments"),
        ("sklearn(refit_lag=-1):naive_bayes.GaussianNB", "refit_lag must be a whole number"),
        ("sklearn(refit_every=10, refit_lag=11):naive_bayes.GaussianNB", "to refit_every"),
        ("sklearn(refit_lag=1.5):naive_bayes.GaussianNB", "'refit_lag' is not one of"),
        ("sklearn(refit_lag=True):naive_bayes.GaussianNB", "'refit_lag' is not one of"),
        ("sklearn(refit_lag=None):naive_bayes.GaussianNB", "'refit_lag' is not one of"),
        ("sklearn(refit_lag=os.sep):naive_bayes.GaussianNB", "'refit_lag' is not one of"),
        ("sklearn:", "names no estimator"),
        ("sklearn:linear_model.LogisticRegression | preprocessing.StandardScaler", "transformer"),
    ],
)
def test_unknown_private_or_wrong_estimators_are_refused_at_start(spec: str, message: str) -> None:
    with pytest.raises(ModelSpecError, match=message.replace("(", r"\(")):
        parse_model_spec(spec)


@pytest.mark.parametrize("lag", [0, 20])
def test_a_window_model_is_a_retrain_candidate_like_any_other(lag: int) -> None:
    """A retrain's candidate is a fresh clone of the wrapper: it refits from the replayed
    pool and is judged on the holdout like a River candidate. (Its pool here is shorter
    than refit_every: its first fit comes during the holdout, ``lag`` events after it
    starts; with a long lag it is judged before it says anything, and rejected.)"""
    learner = PartitionLearner(
        parse_model_spec(
            f"sklearn(window=400, refit_every=100, refit_lag={lag}):linear_model.LogisticRegression"
        ),
        drift_action="retrain",
        holdout_events=50,
    )
    stream = EVENTS[:600] + [(x, not y) for x, y in EVENTS[600:1200]]  # labels flip at 600
    outcomes = []
    for offset, (x, y) in enumerate(stream):
        learner.step(x, y, offset)
        job = learner.retrain
        if job is not None and job.state == "replaying":
            assert isinstance(job.candidate, WindowedClassifier) and job.candidate.fits == 0
            start, end = job.pool
            for x_, y_ in stream[start:end]:  # the replay the daemon would feed it
                job.train(x_, y_)
            job.replay_finished()
        outcomes += learner.drain_outcomes()
    decided = [o for o in outcomes if isinstance(o, RetrainDecided)]
    assert len(decided) == 1 and decided[0].promoted
    assert decided[0].candidate_score > decided[0].serving_score
    assert learner.model_version == 2


def test_the_end_of_a_retrain_replay_makes_the_fit_in_flight_take_over() -> None:
    """A candidate holds the fit of its whole pool once the replay is over, whatever the
    lag: the replay's end is a take-over point."""
    spec = "sklearn(window=100, refit_every=20, refit_lag=20):linear_model.LogisticRegression"
    learner = PartitionLearner(parse_model_spec(spec), drift_action="retrain")
    for offset, (x, y) in enumerate(EVENTS[:50]):
        learner.step(x, y, offset)
    learner._request_retrain(50)
    job = learner.retrain
    assert job is not None and isinstance(job.candidate, WindowedClassifier)
    for x, y in EVENTS[:50]:
        job.train(x, y)
    assert (job.candidate.fits, job.candidate.fitting) == (1, True)  # 20 took over at 40
    job.replay_finished()
    assert (job.candidate.fits, job.candidate.fitting) == (2, False)  # 40's, at once
    reference = WindowedClassifier(LogisticRegression(), window=100, refit_every=20, refit_lag=0)
    for x, y in EVENTS[:50]:
        reference.learn_one(x, y)
    probe = EVENTS[60][0]
    assert job.candidate.predict_proba_one(probe) == reference.predict_proba_one(probe)


# -- fits in the background --------------------------------------------------------------


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """A closed gate for GatedNB: ``gate.touch()`` opens it."""
    path = tmp_path / "gate"
    yield path
    path.touch()  # no fit of this test left waiting


def test_the_loop_goes_on_while_a_fit_runs_and_waits_only_at_the_take_over(gate: Path) -> None:
    model = WindowedClassifier(GatedNB(str(gate)), window=50, refit_every=20, refit_lag=10)
    for x, y in EVENTS[:29]:  # the fit of 1-20 is blocked; 9 more events go through
        model.predict_proba_one(x)
        model.learn_one(x, y)
    assert model.fitting and model._pending is not None and not model._pending.done
    assert model.predict_proba_one(EVENTS[29][0]) == {}  # still no fit to predict with
    waiter = threading.Thread(target=model.learn_one, args=EVENTS[29], daemon=True)
    waiter.start()  # the 30th event is the take-over: learn_one waits for the fit
    waiter.join(timeout=0.2)
    assert waiter.is_alive() and model.fits == 0
    gate.touch()
    waiter.join(timeout=60)
    assert not waiter.is_alive() and model.fits == 1 and not model.fitting
    assert model.predict_proba_one(EVENTS[30][0]) != {}
    assert model._fitted.fitted_in_ != os.getpid()  # fitted in a worker process


def test_without_wait_the_loop_never_waits_and_a_late_fit_takes_over_once_done(
    gate: Path,
) -> None:
    model = WindowedClassifier(
        GatedNB(str(gate)), window=50, refit_every=20, refit_lag=10, wait=False
    )
    for x, y in EVENTS[:45]:  # past the take-over point (30) and the next refit point (40)
        model.predict_proba_one(x)
        model.learn_one(x, y)  # returns at once: the gate is closed, nothing waits
    assert (model.fits, model.skipped) == (0, 1) and model.fitting
    assert model.predict_proba_one(EVENTS[45][0]) == {}  # still no fit to predict with
    gate.touch()
    pending = model._pending
    assert pending is not None
    wait_until(lambda: pending.done, 60, "the background fit")
    model.learn_one(*EVENTS[45])  # the first event after it is done: the fit takes over
    assert (model.fits, model.fitting) == (1, False)
    assert model.predict_proba_one(EVENTS[46][0]) != {}
    for x, y in EVENTS[46:100]:  # refits at 60 and 80, each done before its take-over
        model.learn_one(x, y)
        pending = model._pending
        if pending is not None:
            wait_until(lambda p=pending: p.done, 60, "the refit")
    assert (model.skipped, model.fits) == (1, 3)


def test_without_wait_fits_that_keep_up_give_the_waiting_figures() -> None:
    """When every fit is done by its take-over point, ``wait=False`` changes nothing."""
    events = EVENTS[:300]
    waiting = WindowedClassifier(GaussianNB(), window=60, refit_every=25, refit_lag=10)
    eager = WindowedClassifier(GaussianNB(), window=60, refit_every=25, refit_lag=10, wait=False)
    for x, y in events:
        assert eager.predict_proba_one(x) == waiting.predict_proba_one(x)
        for m in (waiting, eager):
            m.learn_one(x, y)
        pending = eager._pending
        if pending is not None:  # the test's stand-in for a fast fit: done before its time
            wait_until(lambda p=pending: p.done, 60, "the background fit")
    assert eager.fits == waiting.fits == 11 and eager.skipped == 0


def test_wait_is_a_spec_argument_and_travels_in_a_checkpoint() -> None:
    model = parse_model_spec("sklearn(refit_lag=100, wait=False):naive_bayes.GaussianNB")
    assert model.wait is False
    assert pickle.loads(pickle.dumps(model)).wait is False
    assert model.clone().wait is False
    with pytest.raises(ModelSpecError, match="wait: bool"):
        parse_model_spec("sklearn(wait=0):naive_bayes.GaussianNB")


@pytest.mark.parametrize("finished", [False, True], ids=["mid-fit", "fit-done-not-taken-over"])
def test_a_checkpoint_taken_while_a_fit_is_in_flight_restores_exactly(
    gate: Path, finished: bool
) -> None:
    """Pickled mid-fit, the window copy travels and the restored model fits it again;
    pickled after the fit ended but before its take-over, the fit itself travels. Neither
    waits for the fit."""
    spec = dict(window=60, refit_every=25, refit_lag=10)
    model = WindowedClassifier(GatedNB(str(gate)), **spec)  # type: ignore[arg-type]
    events = EVENTS[:200]
    for x, y in events[:30]:
        model.learn_one(x, y)
    pending = model._pending
    assert pending is not None
    if finished:
        gate.touch()
        wait_until(lambda: pending.done, 60, "the background fit")
    blob = pickle.dumps(model)  # does not wait: the gate may still be closed
    assert pending.done is finished
    restored = pickle.loads(blob)
    assert restored._pending is not None and restored._pending.rows is (
        None if finished else restored._pending.rows
    )
    gate.touch()
    plain = WindowedClassifier(GaussianNB(), **spec)  # type: ignore[arg-type]
    for x, y in events[:30]:
        plain.learn_one(x, y)
    for x, y in events[30:]:
        expected = plain.predict_proba_one(x)
        assert restored.predict_proba_one(x) == model.predict_proba_one(x) == expected
        for m in (plain, model, restored):
            m.learn_one(x, y)
    assert restored.fits == model.fits == plain.fits == 7


def test_lag_zero_fits_inside_learn_one_without_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_thread(fit: BackgroundFit) -> None:
        raise AssertionError("refit_lag=0 started a background fit")

    monkeypatch.setattr(BackgroundFit, "start", no_thread)
    model = WindowedClassifier(GaussianNB(), window=50, refit_every=10, refit_lag=0)
    for x, y in EVENTS[:10]:
        model.learn_one(x, y)
    assert (model.fits, model.fitting) == (1, False)


def test_a_fit_that_raises_raises_at_its_take_over() -> None:
    model = WindowedClassifier(FailingNB(), window=50, refit_every=10, refit_lag=5)
    for x, y in EVENTS[:14]:
        model.learn_one(x, y)  # the fit failed on its thread; nothing raised yet
    with pytest.raises(ArithmeticError, match="the fit failed"):
        model.learn_one(*EVENTS[14])
    assert model.fits == 0 and not model.fitting
