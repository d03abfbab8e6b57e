"""Challengers: models that learn every labelled event in shadow and may take over.

A partition's learner serves one model; ``--challenger SPEC`` adds others. Each
challenger predicts every labelled event before learning it (test-then-train, like the
serving model), so both are scored on the same events. They are compared over
consecutive windows of ``window`` labelled events both predicted; at the end of each, a
challenger *takes over* when it beat the serving model by more than ``margin``:

- classification: its accuracy minus the serving model's accuracy > ``margin``
  (accuracy points: 0.02 is two points); a model with nothing to say is wrong;
- regression: its mean absolute error is lower than the serving model's by more than
  ``margin`` of the serving model's (0.02: 2 % lower);

and when its lead is ``SIGNIFICANCE_Z`` (3) standard deviations of a chance lead at
least (``Duel.significant``), so a small window cannot switch on luck. Then the serving
model becomes a challenger in its place (it keeps learning) and every window starts
afresh: any further switch, back or elsewhere, needs a full fresh window won by the
margin. So switches are at least ``window`` labelled events apart, and two models of equal
skill switch about once in 700 windows (``docs/models.md`` has measured odds). A
challenger clearly better from some event on takes over at the end of the first window
after it: within ``2 * window`` labelled events. Every switch is reported by the learner
(``ModelSwitched``).

Each model is also scored on its own (cumulative since it joined the partition, and
rolling), by name, wherever it served or shadowed: what ``streamlearn_model_accuracy``
and ``streamlearn_model_mae`` export.

>>> from river import dummy, linear_model, preprocessing
>>> from learners.prequential import PartitionLearner
>>> serving = PartitionLearner(dummy.NoChangeClassifier(), drift_action="none")
>>> lr = preprocessing.StandardScaler() | linear_model.LogisticRegression()
>>> added, _ = attach(serving, ("no-change", dummy.NoChangeClassifier()), [("lr", lr)],
...                   window=200, margin=0.05)
>>> for offset in range(400):
...     x = {"x": (offset * 37 % 100) / 50 - 1}
...     _ = serving.step(x, x["x"] > 0, offset)
>>> [type(o).__name__ for o in serving.drain_outcomes()], serving.model_name
(['ModelSwitched'], 'lr')
>>> [(s.name, s.serving) for s in serving.challengers.scores()]
[('lr', True), ('no-change', False)]
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from river import base

from learners.accuracy import CumulativeAccuracy, RollingAccuracy
from learners.exceptions import ModelSpecError
from learners.mae import CumulativeError, RollingError
from learners.outcomes import ModelScores
from learners.spec import REGRESSION, parse_model_spec, task_of

if TYPE_CHECKING:
    from learners.prequential import PartitionLearner

__all__ = [
    "ChallengerSet",
    "Contender",
    "ModelScores",
    "attach",
    "model_name",
    "parse_challengers",
]

#: ``NAME=SPEC`` names a challenger; a River or sklearn spec never starts that way.
_NAMED = re.compile(r"\s*(?P<name>[A-Za-z][A-Za-z0-9_-]*)\s*=(?!=)\s*(?P<spec>.*)\Z", re.DOTALL)
#: A lead must be this many standard deviations of a chance lead too (``Duel``).
SIGNIFICANCE_Z = 3.0
#: A model that did not exist when an event was predicted has no prediction for it.
_ABSENT = object()


def model_name(spec: str) -> str:
    """The name a model goes by (metrics, predictions, logs): its spec on one line.

    >>> model_name("preprocessing.StandardScaler |\\n   linear_model.LogisticRegression")
    'preprocessing.StandardScaler | linear_model.LogisticRegression'
    """
    return " ".join(spec.split())


def parse_challengers(
    specs: Iterable[str], serving_spec: str, task: str
) -> list[tuple[str, base.Estimator]]:
    """``(name, untrained model)`` for each ``[NAME=]SPEC``; a :class:`ModelSpecError` for
    a bad spec, a model of another task than the serving one, or a name given twice.

    >>> specs = ["tree.HoeffdingTreeClassifier", "lr2 = linear_model.LogisticRegression(l2=0.1)"]
    >>> [name for name, _ in parse_challengers(specs, "linear_model.LogisticRegression",
    ...                                        "classification")]
    ['tree.HoeffdingTreeClassifier', 'lr2']
    >>> parse_challengers(["linear_model.LinearRegression"], "linear_model.LogisticRegression",
    ...                   "classification")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    learners.exceptions.ModelSpecError: challenger 'linear_model.LinearRegression' is a model ...
    """
    names = {model_name(serving_spec)}
    parsed = []
    for text in specs:
        match = _NAMED.match(text)
        name, spec = (match["name"], match["spec"]) if match else (model_name(text), text)
        try:
            model = parse_model_spec(spec)
        except ModelSpecError as exc:
            raise ModelSpecError(f"challenger {name!r}: {exc}") from None
        if task_of(model) != task:
            raise ModelSpecError(
                f"challenger {name!r} is a model for {task_of(model)}, but the serving model "
                f"is one for {task}: a challenger must be able to take its place"
            )
        if name in names:
            raise ModelSpecError(
                f"the model name {name!r} is given twice; name a challenger with NAME=SPEC "
                "(e.g. 'lr2=linear_model.LogisticRegression(l2=0.01)')"
            )
        names.add(name)
        parsed.append((name, model))
    return parsed


class Duel:
    """A challenger against the serving model over one window of ``window`` labelled events
    both predicted: each one's total (hits, or absolute errors), and the spread of the
    per-event differences, to judge whether the challenger's lead is more than chance.

    >>> duel = Duel(regression=False, window=4)
    >>> for serving, challenger in ((1, 1), (0, 1), (0, 1), (1, 0)):
    ...     duel.update(serving, challenger, 1)
    >>> duel.full, duel.scores(), duel.lead(), duel.significant()
    (True, (0.5, 0.75), 0.25, False)
    """

    def __init__(self, regression: bool, window: int) -> None:
        self.regression = regression
        self.window = window
        self.count = 0
        self.serving = 0.0
        self.challenger = 0.0
        #: Sum of the squared per-event differences (classification: the disagreements).
        self.spread = 0.0

    def update(self, serving_pred: Any, pred: Any, y: Any) -> None:
        if not self.regression:
            # A model with nothing to say is wrong here: abstaining must not win.
            serving_hit, hit = serving_pred == y, pred == y
            self.serving += serving_hit
            self.challenger += hit
            self.spread += serving_hit != hit
        elif serving_pred is not None and pred is not None:
            serving_error, error = abs(serving_pred - y), abs(pred - y)
            self.serving += serving_error
            self.challenger += error
            self.spread += (serving_error - error) ** 2
        else:
            return
        self.count += 1

    @property
    def full(self) -> bool:
        return self.count >= self.window

    def scores(self) -> tuple[float, float]:
        """Serving and challenger accuracy (or MAE) over the window so far."""
        count = self.count or 1
        return self.serving / count, self.challenger / count

    def gain(self) -> float:
        """The challenger's total advantage: hits more, or absolute error less."""
        difference = self.challenger - self.serving
        return -difference if self.regression else difference

    def lead(self) -> float:
        """How much better the challenger did: accuracy points, or the fraction of the
        serving model's MAE it saved."""
        if not self.regression:
            return self.gain() / (self.count or 1)
        return self.gain() / self.serving if self.serving > 0 else 0.0

    def significant(self) -> bool:
        """The lead is ``SIGNIFICANCE_Z`` standard deviations of a chance one at least (a
        sign test over the events the two disagreed on; for a regressor, the paired
        differences of the absolute errors)."""
        gain = self.gain()
        return gain > 0 and gain >= SIGNIFICANCE_Z * math.sqrt(self.spread)


class Contender:
    """One model of a partition by name: its untrained blueprint, the model (None while
    it serves: the learner holds that one), its own scores and its duel."""

    def __init__(
        self, name: str, blueprint: Any, regression: bool, rolling_window: int, window: int
    ) -> None:
        self.name = name
        self.blueprint = blueprint
        self.model = None if blueprint is None else blueprint.clone()
        self.regression = regression
        if regression:
            self.cumulative: Any = CumulativeError()
            self.rolling: Any = RollingError(rolling_window)
        else:
            self.cumulative = CumulativeAccuracy()
            self.rolling = RollingAccuracy(rolling_window)
        self.duel = Duel(regression, window)

    def score(self, pred: Any, y: Any) -> None:
        """Its own score; a prediction of None is learned but not scored (as the learner)."""
        if pred is None:
            return
        outcome = abs(pred - y) if self.regression else pred == y
        self.cumulative.update(outcome)
        self.rolling.update(outcome)


class ChallengerSet:
    """The serving model's name and scores, and its challengers; pickled with the learner.

    ``learn`` is the hot path: each challenger predicts (or its prediction is read from
    those kept for a late label), is scored, and learns.
    """

    def __init__(
        self,
        task: str,
        serving_name: str,
        challengers: Sequence[tuple[str, Any]],
        window: int = 1000,
        margin: float = 0.02,
        rolling_window: int = 1000,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        if not margin >= 0:
            raise ValueError(f"margin must be at least 0, got {margin}")
        self.task = task
        self.window = window
        self.margin = margin
        self.rolling_window = rolling_window
        self.regression = task == REGRESSION
        self.serving = self._contender(serving_name, None)
        self.challengers = [self._contender(name, model) for name, model in challengers]
        self.switches = 0
        #: Serving and challenger scores over the window that made the last leader.
        self.decided = (0.0, 0.0)

    def _contender(self, name: str, blueprint: Any) -> Contender:
        return Contender(name, blueprint, self.regression, self.rolling_window, self.window)

    def predictions(self, x: dict[Any, Any], serving_pred: Any) -> dict[str, Any]:
        """Every model's prediction for an event whose label comes later, by name."""
        held = {self.serving.name: serving_pred}
        for challenger in self.challengers:
            held[challenger.name] = challenger.model.predict_one(x)  # type: ignore[union-attr]
        return held

    def learn(
        self,
        x: dict[Any, Any],
        y: Any,
        serving_pred: Any,
        paired: bool,
        held: dict[str, Any] | None = None,
    ) -> Contender | None:
        """Score every model on ``(x, y)`` and let the challengers learn it; the challenger
        that should take over now, if one should.

        ``serving_pred`` is the serving model's prediction; ``held`` the predictions kept
        when the event came (a late label), else the challengers predict now. ``paired``
        is False when the serving model changed since it predicted: the duels skip it.
        """
        if held is None:
            self.serving.score(serving_pred, y)
        else:
            self.serving.score(held.get(self.serving.name), y)
        leader, best = None, self.margin
        for challenger in self.challengers:
            model = challenger.model
            assert model is not None
            pred = model.predict_one(x) if held is None else held.get(challenger.name, _ABSENT)
            if pred is not _ABSENT:
                challenger.score(pred, y)
                if paired:
                    duel = challenger.duel
                    duel.update(serving_pred, pred, y)
                    if duel.full:  # decided once per window, then a fresh one
                        lead = duel.lead()
                        if lead > best and duel.significant():
                            leader, best = challenger, lead
                            self.decided = duel.scores()
                        challenger.duel = Duel(self.regression, self.window)
            model.learn_one(x, y)
        return leader

    def switch(self, winner: Contender, model: Any, blueprint: Any) -> tuple[Any, Any]:
        """``winner`` serves from now on; the serving ``model`` (and its untrained
        ``blueprint``) takes the winner's place among the challengers. Returns the
        winner's model and blueprint for the learner to serve."""
        index = self.challengers.index(winner)
        old = self.serving
        old.model, old.blueprint = model, blueprint
        self.challengers[index] = old
        new_model, new_blueprint = winner.model, winner.blueprint
        winner.model = winner.blueprint = None
        self.serving = winner
        self.switches += 1
        return new_model, new_blueprint

    def restart(self) -> None:
        """The serving model was replaced (a switch, a reset, a promoted retrain): every
        duel starts afresh, as it compared with the model that is gone."""
        for challenger in self.challengers:
            challenger.duel = Duel(self.regression, self.window)
        self.serving.duel = Duel(self.regression, self.window)

    def models(self) -> list[Any]:
        """The challengers' models (the serving one is the learner's)."""
        return [challenger.model for challenger in self.challengers]

    def scores(self) -> list[ModelScores]:
        """Each model's own score, the serving one first; models not scored yet left out."""
        return [
            ModelScores(c.name, c is self.serving, c.cumulative.get(), c.rolling.get())
            for c in (self.serving, *self.challengers)
            if c.cumulative.total
        ]

    def reconcile(
        self, wanted: Sequence[tuple[str, Any]], window: int, margin: float
    ) -> tuple[list[str], list[str]]:
        """This run's challengers on a restored set: one named again keeps its state, a
        new name starts untrained, one no longer named is dropped; a new window size
        restarts the duels. Returns the names added and dropped."""
        known = {c.name: c for c in self.challengers}
        names = [name for name, _ in wanted]
        added = [name for name in names if name not in known]
        dropped = [name for name in known if name not in names]
        self.challengers = [
            known[name] if name in known else self._contender(name, blueprint)
            for name, blueprint in wanted
        ]
        self.margin = margin
        if window != self.window:
            self.window = window
            self.restart()
        return added, dropped


def attach(
    learner: PartitionLearner,
    model: tuple[str, Any],
    challengers: Sequence[tuple[str, Any]],
    window: int = 1000,
    margin: float = 0.02,
) -> tuple[list[str], list[str]]:
    """Give ``learner`` this run's challengers, a fresh learner and a restored one alike.

    ``model`` is ``--model``'s ``(name, untrained model)``, ``challengers`` the others'.
    A restored learner keeps the model it serves, whichever that is (a challenger may
    have taken over): the other configured models are its challengers, ``--model``
    included. Returns the names of the challengers added and dropped.
    """
    if learner.model_name is None:  # fresh, or restored from before challengers existed
        learner.model_name = model[0]
    serving = learner.model_name
    wanted = [(name, m) for name, m in (model, *challengers) if name != serving]
    current = learner.challengers
    if current is None:
        if not challengers:
            return [], []
        learner.challengers = ChallengerSet(
            learner.task, serving, wanted, window, margin, learner.rolling_window
        )
        return [name for name, _ in wanted], []
    if not challengers:
        learner.challengers = None
        return [], [c.name for c in current.challengers]
    return current.reconcile(wanted, window, margin)
