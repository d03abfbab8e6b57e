"""The feature budget: at most N distinct names reach a learner's model; events of known names
always pass; a refused event leaves the learner untouched; no bound costs nothing."""

from __future__ import annotations

import pickle
from typing import Any, cast

import pytest
from river import base, linear_model, preprocessing

from learners.exceptions import FeatureBudgetExceeded
from learners.features import FeatureBudget
from learners.prequential import PartitionLearner


def _learner() -> PartitionLearner:
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    return PartitionLearner(cast(base.Classifier, model), drift_action="none")


def test_the_budget_admits_names_up_to_its_limit_and_known_ones_forever() -> None:
    budget = FeatureBudget(limit=3)
    assert budget.admit({"a": 1, "b": 2})
    assert not budget.admit({"a": 1, "c": 2, "d": 3})  # would make 4: refused whole
    assert budget.known == {"a", "b"}
    assert budget.admit({"c": 1})
    assert not budget.admit({"e": 1})
    for _ in range(3):
        assert budget.admit({"a": 1, "b": 2, "c": 3})
    assert budget.admit({})
    assert budget.unknown({"a": 1, "z": 2, "y": 3}) == ["y", "z"]


def test_a_budget_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FeatureBudget(limit=0)


def test_an_event_past_the_budget_never_reaches_the_model() -> None:
    learner = _learner()
    learner.limit_features(2)
    step = learner.stepper()
    for offset in range(20):
        step({"a": float(offset), "b": 1.0}, offset % 2 == 0, offset)
    before = pickle.dumps(learner)

    refused = r"1 new feature\(s\) \(c\) would pass the limit of 2"
    with pytest.raises(FeatureBudgetExceeded, match=refused):
        step({"a": 1.0, "c": 2.0}, True, 20)
    assert pickle.dumps(learner) == before  # not predicted, not scored, not learned

    step({"b": 3.0}, True, 21)  # known names keep working
    assert learner.learned == 21
    assert learner.feature_budget is not None and learner.feature_budget.known == {"a", "b"}


def test_unlabelled_events_count_against_the_budget_too() -> None:
    # Predicting alone makes a pipeline's scaler remember a name.
    learner = _learner()
    learner.limit_features(1)
    step = learner.stepper()
    step({"a": 1.0}, None, 0)
    with pytest.raises(FeatureBudgetExceeded):
        step({"b": 1.0}, None, 1)


def test_without_a_bound_the_step_is_the_plain_step() -> None:
    learner = _learner()
    assert learner.stepper() == learner.step
    learner.limit_features(5)
    assert learner.stepper() != learner.step
    learner.limit_features(None)
    assert learner.stepper() == learner.step
    assert learner.feature_budget is None


def test_a_new_limit_keeps_the_names_known() -> None:
    learner = _learner()
    learner.limit_features(2)
    learner.stepper()({"a": 1.0, "b": 2.0}, True, 0)
    learner.limit_features(3)
    step = learner.stepper()
    step({"c": 1.0}, True, 1)
    with pytest.raises(FeatureBudgetExceeded):
        step({"d": 1.0}, True, 2)


def test_the_budget_travels_with_the_learner_in_a_pickle() -> None:
    learner = _learner()
    learner.limit_features(2)
    learner.stepper()({"a": 1.0, "b": 2.0}, True, 0)
    restored: PartitionLearner = pickle.loads(pickle.dumps(learner))
    with pytest.raises(FeatureBudgetExceeded):
        restored.stepper()({"z": 1.0}, True, 1)


def test_a_learner_pickled_before_budgets_existed_has_none() -> None:
    learner = _learner()
    state: dict[str, Any] = learner.__dict__
    assert "feature_budget" not in state  # unset: the class attribute answers
    assert learner.feature_budget is None


def test_each_value_of_a_string_feature_counts_as_a_feature() -> None:
    # An identifier sent as a string grows a one-hot or nominal model by one per value,
    # under one name: the budget counts the values, so a producer cannot grow it that way.
    budget = FeatureBudget(limit=3)
    assert budget.admit({"amount": 1.0, "user": "u1"})
    assert budget.admit({"amount": 2.0, "user": "u2"})
    assert budget.admit({"amount": 3.0, "user": "u1"})  # a known value
    assert not budget.admit({"amount": 4.0, "user": "u3"})
    assert budget.unknown({"amount": 4.0, "user": "u3"}) == ["user=u3"]
    assert budget.known == {"amount", ("user", "u1"), ("user", "u2")}


@pytest.mark.parametrize(
    "spec",
    [
        "tree.HoeffdingTreeClassifier",
        "sklearn(window=50, refit_every=25):linear_model.LogisticRegression",
    ],
)
def test_an_endless_string_identifier_stops_at_the_budget(spec: str) -> None:
    from learners.spec import parse_model_spec

    learner = PartitionLearner(cast(base.Classifier, parse_model_spec(spec)), drift_action="none")
    learner.limit_features(10)
    step = learner.stepper()
    refused = 0
    for offset in range(200):
        try:
            step({"x": float(offset % 3), "id": f"user-{offset}"}, offset % 2 == 0, offset)
        except FeatureBudgetExceeded:
            refused += 1
    assert (learner.learned, refused) == (9, 191)  # "x" and nine identifiers
    vocabulary = getattr(learner.model, "_vocabulary", None)
    if vocabulary is not None:  # the wrapper's one-hot columns stopped growing too
        assert len(vocabulary) == 10
