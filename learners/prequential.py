"""One partition's learner: predict, score, watch the error with ADWIN, learn, act on drift.

Test-then-train: every labelled event is predicted *before* the model learns it, so
the cumulative accuracy equals River's ``evaluate.progressive_val_score`` exactly. This
is the classification learner; a regressor's is ``learners.regression.RegressionLearner``
(``learner_for`` picks the one a model needs, once).

>>> from river import datasets, linear_model, preprocessing
>>> learner = PartitionLearner(preprocessing.StandardScaler() | linear_model.LogisticRegression())
>>> for offset, (x, y) in enumerate(datasets.Phishing()):
...     _ = learner.step(x, y, offset)
>>> round(learner.cumulative.get(), 4)
0.8928
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from river import base, drift

from learners.accuracy import CumulativeAccuracy, RollingAccuracy
from learners.baseline import NoChangeAccuracy
from learners.changepoint import change_point
from learners.exceptions import FeatureBudgetExceeded
from learners.features import FeatureBudget
from learners.outcomes import (
    ACCURACY,
    DriftDetected,
    ModelReset,
    ModelSwitched,
    Outcome,
    RetrainAbandoned,
    RetrainDecided,
    RetrainDropped,
    RetrainRequested,
    RetrainRestarted,
    Scores,
)
from learners.pending import PendingLabels
from learners.retraining import BOTH, COMBINED, RETRAIN_POOLS, RetrainJob
from learners.spec import CLASSIFICATION, final_step, task_of

if TYPE_CHECKING:
    from learners.challengers import ChallengerSet, Contender

DRIFT_ACTIONS = ("none", "reset", "retrain")

Prediction = tuple[Any, dict[Any, float] | None]
Step = Callable[[dict[Any, Any], Any, int], Prediction]


class PartitionLearner:
    """The whole learning state of one partition; picklable, so it can be checkpointed."""

    #: The task this learner serves, and what its predictions are scored by.
    task = CLASSIFICATION
    metric = ACCURACY
    #: The retrain job this task's candidates are judged by.
    retrain_job: type[RetrainJob] = RetrainJob

    #: The feature names taken in, when they are bounded (``limit_features``). A class
    #: attribute too, so learners pickled before it existed read None.
    feature_budget: FeatureBudget | None = None
    #: Predictions waiting for their label (``hold``, ``join``); None in learners pickled
    #: before it existed, until their first ``hold``.
    pending: PendingLabels | None = None
    #: Models learning in shadow that may take over (``learners/challengers.py``), and
    #: the serving model's name; None without them, and in learners pickled before them.
    challengers: ChallengerSet | None = None
    model_name: str | None = None
    #: The retrain's pool and warning zone (``learners.retraining``); class attributes
    #: too, so learners pickled before them run without a warning zone.
    retrain_pool = "since-change"
    max_holdout_events = 3000
    warning: drift.ADWIN | None = None
    warning_delta: float | None = None
    warning_events = 0
    #: The serving model's error on each event of the ring (None in older learners), and
    #: the ring count when the serving model was last replaced.
    _recent_errors: list[float] | None = None
    _count_at_replacement = 0

    def __init__(
        self,
        model: base.Classifier,
        drift_action: str = "reset",
        adwin_delta: float = 0.002,
        rolling_window: int = 1000,
        max_retrain_events: int = 20_000,
        min_retrain_events: int = 1,
        holdout_events: int = 300,
        max_pending: int = 100_000,
        label_ttl_s: float = 86_400.0,
        retrain_pool: str = "since-change",
        max_holdout_events: int = 3000,
        warning_delta: float | None = None,
        warning_events: int = 1000,
    ) -> None:
        """``warning_delta``: a second ADWIN's (looser) confidence, whose warning starts a
        retrain's candidate before the alarm; one not confirmed by an alarm within
        ``warning_events`` labelled events is dropped. None: no warning zone."""
        if drift_action not in DRIFT_ACTIONS:
            raise ValueError(f"drift_action must be one of {DRIFT_ACTIONS}, got {drift_action!r}")
        if retrain_pool not in RETRAIN_POOLS:
            raise ValueError(f"retrain_pool must be one of {RETRAIN_POOLS}, got {retrain_pool!r}")
        if task_of(model) != self.task:
            raise ValueError(
                f"{type(self).__name__} serves {self.task}, not a model for {task_of(model)} "
                f"(learners.regression.learner_for picks the learner a model needs)"
            )
        self.model = model
        self.drift_action = drift_action
        self.adwin_delta = adwin_delta
        self.rolling_window = rolling_window
        self.max_retrain_events = max_retrain_events
        self.min_retrain_events = min_retrain_events
        self.holdout_events = holdout_events
        self.max_pending = max_pending
        self.label_ttl_s = label_ttl_s
        self.retrain_pool = retrain_pool
        self.max_holdout_events = max_holdout_events
        self.warning_delta = warning_delta
        self.warning_events = warning_events

        self._blueprint = model.clone()
        self._argmax_of_proba = _predict_is_argmax_of_proba(model)
        self.detector = drift.ADWIN(delta=adwin_delta)
        self.warning = self._new_warning()
        self._new_scores(rolling_window)
        self.model_version = 1
        self.learned = 0
        self.predicted = 0
        self.drifts = 0
        self.last_offset = -1
        self.retrain: RetrainJob | None = None
        self.pending = PendingLabels(max_pending, label_ttl_s)
        #: Outcomes since the caller last drained them (rare: drifts and decisions).
        self.outcomes: list[Outcome] = []
        # Offsets of recent labelled events, so a drift's window width (in labelled
        # events) can be turned into the offset range to replay.
        ring = max_retrain_events if drift_action == "retrain" else 0
        self._recent_offsets: list[int] = [0] * ring
        self._recent_errors = [0.0] * ring
        self._recent_count = 0

    def _new_scores(self, window: int) -> None:
        """The task's scores: the model's since it started and over ``window``, and the
        no-change baseline's."""
        self.cumulative = CumulativeAccuracy()
        self.rolling = RollingAccuracy(window)
        self.baseline = self._new_baseline()

    def _new_baseline(self) -> Any:
        return NoChangeAccuracy(self.rolling_window)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "baseline" not in state:  # a learner pickled before the baseline existed
            self.baseline = self._new_baseline()

    def scores(self) -> Scores | None:
        """The scores to export; None until a prediction was scored."""
        cumulative = self.cumulative
        if not cumulative.total:
            return None
        baseline = self.baseline
        scored = baseline.total > 0
        return Scores(
            self.metric,
            cumulative.get(),
            self.rolling.get(),
            baseline.cumulative() if scored else None,
            baseline.rolling() if scored else None,
        )

    # -- the hot path -----------------------------------------------------------------

    def predict(self, x: dict[Any, Any]) -> Prediction:
        """The prediction and, where the model has them, class probabilities."""
        if self._argmax_of_proba:
            proba = self.model.predict_proba_one(x)
            return (max(proba, key=proba.__getitem__) if proba else None), proba
        return self.model.predict_one(x), None

    def stepper(self) -> Step:
        """The step to call per event: ``step`` itself unless features are bounded, so an
        unbounded learner pays nothing for the bound."""
        return self.step if self.feature_budget is None else self._step_within_budget

    def _step_within_budget(self, x: dict[Any, Any], y: Any, offset: int) -> Prediction:
        budget = self.feature_budget
        assert budget is not None
        self._admit(budget, x)
        return self.step(x, y, offset)

    @staticmethod
    def _admit(budget: FeatureBudget, x: dict[Any, Any]) -> None:
        if not budget.admit(x):
            unknown = budget.unknown(x)
            raise FeatureBudgetExceeded(
                f"{len(unknown)} new feature(s) ({', '.join(map(str, unknown[:5]))}"
                f"{', ...' if len(unknown) > 5 else ''}) would pass the limit of "
                f"{budget.limit}"
            )

    def limit_features(self, limit: int | None) -> None:
        """Bound the distinct feature names this learner takes in (None: no bound).

        Names are counted from the first bound on; a new limit keeps the names known,
        and removing the bound forgets them.
        """
        if limit is None:
            self.feature_budget = None
        elif self.feature_budget is None:
            self.feature_budget = FeatureBudget(limit)
        else:
            self.feature_budget.limit = limit

    def step(self, x: dict[Any, Any], y: Any, offset: int) -> Prediction:
        """Predict ``x``; when labelled (``y`` not None), score, watch for drift and learn."""
        y_pred, proba = self.predict(x)
        if y is None:
            self.predicted += 1
            return y_pred, proba
        challengers = self.challengers
        if challengers is None:
            self._learn(x, y, y_pred, offset, offset, self.baseline.last, True)
            return y_pred, proba
        leader = challengers.learn(x, y, y_pred, True)
        self._learn(x, y, y_pred, offset, offset, self.baseline.last, True)
        if leader is not None:
            self._switch_to(leader, offset)
        return y_pred, proba

    def _learn(
        self,
        x: dict[Any, Any],
        y: Any,
        y_pred: Any,
        offset: int,
        origin: int,
        baseline: Any,
        watch: bool,
    ) -> None:
        """Score ``y_pred`` (and the baseline's prediction) against ``y``, feed ADWIN the
        error when ``watch``, learn ``(x, y)``.

        ``offset`` is where the label came, ``origin`` where the features came (the same
        offset unless the label came later): a retrain replays from the features on.
        ``RegressionLearner`` has its own scoring with the absolute error in place of the
        hit: the task is chosen once, by the class, never per event.
        """
        hit = y_pred == y
        if self.drift_action == "retrain":
            self._remember(origin, 0.0 if hit else 1.0)
        # An untrained model may have nothing to say; like River's progressive
        # validation, such an event is learned but not scored.
        detected = warned = False
        error_before = 0.0
        if y_pred is not None:
            self.cumulative.update(hit)
            self.rolling.update(hit)
            if watch:
                detector = self.detector
                width = detector.width  # the estimation before this error, read cheaply
                error_before = detector.total / width if width else 0.0
                detector.update(0.0 if hit else 1.0)
                detected = detector.drift_detected
                warned = self.warning is not None and self._warned(0.0 if hit else 1.0)
        self._learn_scored(x, y, hit, offset, baseline, detected, warned, error_before)

    def _learn_scored(
        self,
        x: dict[Any, Any],
        y: Any,
        score: Any,
        offset: int,
        baseline: Any,
        detected: bool,
        warned: bool,
        error_before: float,
    ) -> None:
        """What follows the scoring for either task: learn ``(x, y)``, show a running
        retrain the event with the serving model's ``score`` of it (the hit, or the
        absolute error), then act on ADWIN's alarm or warning."""
        self.baseline.score(baseline, y)
        self.model.learn_one(x, y)
        self.learned += 1
        self.last_offset = offset
        retrain = self.retrain
        if retrain is not None:
            done = retrain.observe_live(x, y, score)
            if retrain.restarted:
                self._report_restarts(retrain)
            if done:
                self._finish_retrain()
        if detected:
            self._on_detection(offset, error_before)
        elif warned:
            self._on_warning()

    # -- labels that come later ---------------------------------------------------------

    def hold(self, x: dict[Any, Any], event_id: str, at: float, offset: int) -> Prediction:
        """Predict an unlabelled event and keep what its label will need (``join``).

        Predicting changes nothing in the model, so holding many events before their
        labels come scores and learns exactly as River's ``progressive_val_score`` with
        ``delay`` does. ``at`` is the event's arrival time in seconds (its record time).
        """
        budget = self.feature_budget
        if budget is not None:
            self._admit(budget, x)
        y_pred, proba = self.predict(x)
        self.predicted += 1
        pending = self.pending
        if pending is None:  # a learner from a checkpoint older than late labels
            pending = self.pending = PendingLabels(self.max_pending, self.label_ttl_s)
        held = None if self.challengers is None else self.challengers.predictions(x, y_pred)
        pending.add(event_id, x, y_pred, self.model_version, at, offset, self.baseline.last, held)
        return y_pred, proba

    def join(self, event_id: str, y: Any, at: float, offset: int) -> bool:
        """A label for event ``event_id`` came at ``offset``: score the prediction made
        when the event came, and learn the features it was made on. False when no
        prediction waits for it (counted by the pending store as expired, duplicate or
        unknown).

        ADWIN watches the error of the serving model: a prediction made by a model that
        was reset or replaced since is scored, but not shown to the new model's detector.
        """
        pending = self.pending
        entry = pending.take(event_id, at) if pending is not None else None
        if entry is None:
            return False
        watch = entry.model_version == self.model_version
        x, y_pred = entry.features, entry.prediction
        challengers = self.challengers
        leader = None
        if challengers is not None:  # scored on what they predicted when the event came
            leader = challengers.learn(x, y, y_pred, watch, entry.models or {})
        self._learn(x, y, y_pred, offset, entry.offset, entry.baseline, watch)
        if leader is not None:
            self._switch_to(leader, offset)
        return True

    def bound_pending(self, max_pending: int, label_ttl_s: float) -> None:
        """Apply this run's bounds on waiting predictions (a restored learner keeps the
        entries it had, not the bounds it was created with)."""
        self.max_pending, self.label_ttl_s = max_pending, label_ttl_s
        if self.pending is None:
            self.pending = PendingLabels(max_pending, label_ttl_s)
        else:
            self.pending.resize(max_pending, label_ttl_s)

    # -- drift ------------------------------------------------------------------------

    def _on_detection(self, offset: int, error_before: float) -> None:
        error_after = self.detector.estimation
        if error_after <= error_before:
            return  # ADWIN also fires when the model improves; that is no reason to act
        width = int(self.detector.width)
        self.drifts += 1
        self.outcomes.append(
            DriftDetected(offset, self.learned, error_before, error_after, width, self.drift_action)
        )
        if self.drift_action == "reset":
            self._replace_model(self.fresh_model())
            self.outcomes.append(ModelReset(offset, self.learned, self.model_version))
        elif self.drift_action == "retrain":
            if self.retrain is None:
                self._request_retrain(width)
            else:  # confirms the warning's candidate, or a second alarm (retraining.py)
                self.retrain.alarm()
                self._report_restarts(self.retrain)
                if self.retrain.done:
                    self._finish_retrain()

    # -- the warning zone: a looser ADWIN starts a retrain's candidate early -------------

    def _new_warning(self) -> drift.ADWIN | None:
        if self.drift_action != "retrain" or not self.warning_delta:
            return None
        return drift.ADWIN(delta=self.warning_delta)

    def _warned(self, error: float) -> bool:
        """Feed the warning detector; True when it fired on a rise of the error."""
        warning = self.warning
        assert warning is not None
        width = warning.width
        before = warning.total / width if width else 0.0
        warning.update(error)
        return warning.drift_detected and warning.estimation > before

    def _on_warning(self) -> None:
        if self.retrain is None:
            assert self.warning is not None
            self._request_retrain(int(self.warning.width), confirmed=False)

    def _remember(self, origin: int, error: float) -> None:
        """Keep a labelled event's offset (features') and the serving model's error on it,
        for a retrain's pool and its paired test."""
        i = self._recent_count % self.max_retrain_events
        self._recent_offsets[i] = origin
        if self._recent_errors is not None:
            self._recent_errors[i] = error
        self._recent_count += 1

    def _since_change(self, width: int) -> tuple[int, dict[int, float]]:
        """How many of the last events came after the change, and the serving model's
        errors on them by offset (the pool's paired scores).

        ADWIN's ``width`` bounds the search; within it, and within the serving model's
        own events (never those of a model it replaced), the change point is estimated
        from its errors (``learners.changepoint``). Learners pickled before the errors
        were kept use the width as it is, with no scores.
        """
        errors = self._recent_errors
        ring, end = self.max_retrain_events, self._recent_count
        count = min(width, end - self._count_at_replacement, ring)
        if errors is None or count <= 0:
            return width, {}
        indices = [(end - k) % ring for k in range(count, 0, -1)]
        after = indices[change_point([errors[i] for i in indices]) :]
        return len(after), {self._recent_offsets[i]: errors[i] for i in after}

    def _request_retrain(self, width: int, confirmed: bool = True) -> None:
        since_change, serving_errors = self._since_change(width)
        size = min(max(since_change, self.min_retrain_events), self.max_retrain_events)
        size = min(size, self._recent_count)
        # The last label learned, which may have come after the features recorded above.
        end = self.last_offset + 1
        ring = self.max_retrain_events
        since = self._recent_offsets[(self._recent_count - size) % ring]
        # The whole replay window: the older events too (the combined pool).
        oldest = self._recent_offsets[(self._recent_count - min(self._recent_count, ring)) % ring]
        start = oldest if self.retrain_pool in (COMBINED, BOTH) else since
        self.retrain = self.retrain_job(
            self.fresh_model(),
            self.holdout_events,
            self.max_retrain_events,
            pool=(start, end),
            max_holdout_events=max(self.max_holdout_events, self.holdout_events),
            pool_kind=self.retrain_pool,
            since=since,
            confirmed=confirmed,
            confirm_within=self.warning_events,
            serving_errors=serving_errors,
            adwin_delta=self.adwin_delta,
        )
        self.outcomes.append(RetrainRequested(start, end, warning=not confirmed))

    def settle_retrain(self) -> None:
        """Decide a retrain that became ready outside ``step`` (when its replay ended)."""
        if self.retrain is not None:
            self._report_restarts(self.retrain)
            if self.retrain.done:
                self._finish_retrain()

    def _report_restarts(self, job: RetrainJob) -> None:
        for pool, reason, trained_on in job.take_restarts():
            restarted = RetrainRestarted(
                self.last_offset, self.learned, pool, reason, trained_on, self.model_version
            )
            self.outcomes.append(restarted)

    def _finish_retrain(self) -> None:
        assert self.retrain is not None
        offset = self.last_offset
        if self.retrain.abandoned is not None:
            reason, self.retrain = self.retrain.abandoned, None
            self.outcomes.append(RetrainAbandoned(offset, self.learned, reason, self.model_version))
            return
        if self.retrain.dropped is not None:
            reason, self.retrain = self.retrain.dropped, None
            self.outcomes.append(RetrainDropped(offset, self.learned, reason, self.model_version))
            return
        verdict = self.retrain.decide()
        if verdict.promoted:
            self._replace_model(self.retrain.candidate)
        self.retrain = None
        self.outcomes.append(
            RetrainDecided(
                offset,
                self.learned,
                verdict.promoted,
                verdict.candidate_score,
                verdict.serving_score,
                verdict.trained_on,
                verdict.evaluated_on,
                self.model_version,
                verdict.metric,
                verdict.wins,
                verdict.losses,
                verdict.statistic,
                verdict.pool,
                verdict.reason,
            )
        )

    def _replace_model(self, model: base.Classifier) -> None:
        self.model = model
        self._argmax_of_proba = _predict_is_argmax_of_proba(model)
        self.model_version += 1
        # The error stream of the new model is a new stream; the old window says nothing of it.
        self.detector = drift.ADWIN(delta=self.adwin_delta)
        if self.challengers is not None:  # they were compared with the model that is gone
            self.challengers.restart()
        self.warning = self._new_warning()
        self._count_at_replacement = self._recent_count

    def _switch_to(self, leader: Contender, offset: int) -> None:
        """A challenger beat the serving model over a full window: it serves from now on,
        and the serving model becomes a challenger. Not while a retrain is in flight: that
        is judged against the model it was asked for (the next window decides again)."""
        challengers = self.challengers
        if self.retrain is not None or challengers is None:
            return
        serving_score, challenger_score = challengers.decided
        previous = challengers.serving.name
        model, blueprint = challengers.switch(leader, self.model, self._blueprint)
        self._replace_model(model)
        self._blueprint = blueprint
        self.model_name = leader.name
        self.outcomes.append(
            ModelSwitched(
                offset,
                self.learned,
                previous,
                leader.name,
                serving_score,
                challenger_score,
                challengers.window,
                self.model_version,
                self.metric,
            )
        )

    def fresh_model(self) -> base.Classifier:
        """An untrained clone of the model this learner started with."""
        return self._blueprint.clone()

    def drain_outcomes(self) -> list[Outcome]:
        outcomes, self.outcomes = self.outcomes, []
        return outcomes


def _predict_is_argmax_of_proba(model: base.Estimator) -> bool:
    """True when ``predict_one`` is the arg-max of ``predict_proba_one``.

    It is unless the final step overrides it; then one ``predict_proba_one`` call gives
    both the label (same dict, same tie-break) and the probabilities at half the cost.
    """
    return getattr(type(final_step(model)), "predict_one", None) is base.Classifier.predict_one
