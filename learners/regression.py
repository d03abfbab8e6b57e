"""A regressor's learner: the absolute error where a classifier's has the hit.

Everything but the scoring is :class:`~learners.prequential.PartitionLearner`'s: late
labels, the feature bound, drift policy, checkpoints. Predictions are scored by their
absolute error: the mean absolute error since the start equals River's
``evaluate.progressive_val_score`` with ``metrics.MAE()``; ADWIN watches the absolute
error and the learner acts only when its mean went *up*; a retrain's candidate is
promoted only if its MAE on the holdout is strictly lower.

>>> from river import datasets, evaluate, linear_model, metrics, preprocessing
>>> model = preprocessing.StandardScaler() | linear_model.LinearRegression()
>>> learner = learner_for(model.clone(), drift_action="none")
>>> for offset, (x, y) in enumerate(datasets.TrumpApproval()):
...     _ = learner.step(x, y, offset)
>>> expected = evaluate.progressive_val_score(datasets.TrumpApproval(), model, metrics.MAE())
>>> abs(learner.cumulative.get() - expected.get()) < 1e-9
True
"""

from __future__ import annotations

import math
from typing import Any

from learners.baseline import NoChangeError
from learners.mae import CumulativeError, RollingError
from learners.outcomes import MAE, Scores
from learners.prequential import PartitionLearner, Prediction
from learners.retraining import RegressionRetrainJob
from learners.spec import REGRESSION, task_of


class RegressionLearner(PartitionLearner):
    """The learning state of one partition whose model ends in a River regressor."""

    task = REGRESSION
    metric = MAE
    retrain_job = RegressionRetrainJob

    def _new_scores(self, window: int) -> None:
        self.cumulative = CumulativeError()  # type: ignore[assignment]
        self.rolling = RollingError(window)  # type: ignore[assignment]
        self.baseline = self._new_baseline()

    def _new_baseline(self) -> Any:
        return NoChangeError(self.rolling_window)

    def scores(self) -> Scores | None:
        cumulative = self.cumulative
        if not cumulative.total:
            return None
        assert isinstance(cumulative, CumulativeError)
        rolling = self.rolling
        assert isinstance(rolling, RollingError)
        baseline = self.baseline
        scored = baseline.total > 0
        return Scores(
            MAE,
            cumulative.get(),
            rolling.get(),
            baseline.cumulative() if scored else None,
            baseline.rolling() if scored else None,
            cumulative.rmse(),
            rolling.rmse(),
        )

    def predict(self, x: dict[Any, Any]) -> Prediction:
        return self.model.predict_one(x), None

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
        """``PartitionLearner._learn``'s scoring with the absolute error in place of the hit."""
        detected = warned = False
        error_before = 0.0
        # A model with nothing to say is learned but not scored (as River does), and
        # infinitely wrong for a retrain's holdout.
        error = math.inf
        if y_pred is not None:
            error = abs(y_pred - y)
            self.cumulative.update(error)
            self.rolling.update(error)
            if watch:
                detector = self.detector
                width = detector.width
                error_before = detector.total / width if width else 0.0
                detector.update(error)
                detected = detector.drift_detected
                warned = self.warning is not None and self._warned(error)
        if self.drift_action == "retrain":
            self._remember(origin, error)
        self._learn_scored(x, y, error, offset, baseline, detected, warned, error_before)


def learner_for(model: Any, **options: Any) -> PartitionLearner:
    """The learner ``model`` needs, chosen once: a :class:`RegressionLearner` for a
    regressor, a :class:`PartitionLearner` for a classifier; ``options`` are the
    learner's constructor arguments."""
    if task_of(model) == REGRESSION:
        return RegressionLearner(model, **options)
    return PartitionLearner(model, **options)
