"""Tests of the model-specification parser (``learners.spec``)."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from river import (
    compose,
    datasets,
    drift,
    ensemble,
    linear_model,
    naive_bayes,
    optim,
    preprocessing,
    stats,
    tree,
)

from learners.exceptions import ModelSpecError
from learners.spec import (
    CLASSIFICATION,
    REGRESSION,
    describe_model,
    parse_model_spec,
    task_of,
)

HELP = "A model spec is River classes written module.Class"


def build(spec: str) -> Any:
    """``parse_model_spec``, typed loosely so tests can read each class's own attributes."""
    return parse_model_spec(spec)


def steps(model: Any) -> list[Any]:
    return list(model.steps.values())


# --- specs that are accepted -------------------------------------------------------------


def test_bare_class_names_joined_by_a_bar_make_a_pipeline() -> None:
    model = build("preprocessing.StandardScaler | linear_model.LogisticRegression")
    assert isinstance(model, compose.Pipeline)
    scaler, classifier = steps(model)
    assert type(scaler) is preprocessing.StandardScaler
    assert type(classifier) is linear_model.LogisticRegression


def test_keyword_arguments_reach_the_constructor() -> None:
    model = build("tree.HoeffdingAdaptiveTreeClassifier(grace_period=100, seed=42)")
    assert type(model) is tree.HoeffdingAdaptiveTreeClassifier
    assert model.grace_period == 100
    assert model.seed == 42


def test_nested_calls_build_optimizers_and_positional_arguments_work() -> None:
    model = build(
        "preprocessing.StandardScaler() | "
        "linear_model.LogisticRegression(optimizer=optim.SGD(0.05), l2=0.0)"
    )
    classifier = steps(model)[-1]
    assert isinstance(classifier, linear_model.LogisticRegression)
    assert type(classifier.optimizer) is optim.SGD
    assert classifier.optimizer.learning_rate == 0.05
    assert classifier.l2 == 0.0


def test_a_single_class_is_the_model_itself() -> None:
    model = build("naive_bayes.GaussianNB")
    assert type(model) is naive_bayes.GaussianNB


def test_literal_arguments_of_every_kind() -> None:
    model = build(
        "tree.HoeffdingAdaptiveTreeClassifier(delta=-1e-7, tau=+0.1, max_depth=-(-5), "
        "nominal_attributes=['colour', 'size'], split_criterion='gini', binary_split=True, "
        "seed=None)"
    )
    assert model.delta == -1e-7
    assert model.tau == 0.1
    assert model.max_depth == 5
    assert model.nominal_attributes == ["colour", "size"]
    assert model.split_criterion == "gini"
    assert model.binary_split is True
    assert model.seed is None


def test_dicts_tuples_and_lists_may_hold_literals_and_models() -> None:
    renamed = build("compose.Renamer({'a': 'x', 1: (2, 3)}) | naive_bayes.GaussianNB")
    assert steps(renamed)[0].mapping == {"a": "x", 1: (2, 3)}
    imputed = build("preprocessing.StatImputer(('x', stats.Mean())) | naive_bayes.GaussianNB")
    ((feature, stat),) = steps(imputed)[0].imputers
    assert feature == "x"
    assert type(stat) is stats.Mean
    voting = build(
        "ensemble.VotingClassifier([naive_bayes.GaussianNB, tree.HoeffdingTreeClassifier()])"
    )
    assert [type(m) for m in voting.models] == [
        naive_bayes.GaussianNB,
        tree.HoeffdingTreeClassifier,
    ]


def test_named_steps_through_an_explicit_pipeline_call() -> None:
    pipe = build(
        "compose.Pipeline(('scale', preprocessing.StandardScaler()), "
        "('model', linear_model.LogisticRegression(loss=optim.losses.Log(1.0, 2.0))))"
    )
    assert list(pipe.steps) == ["scale", "model"]
    assert pipe["model"].loss.weight_neg == 2.0


def test_three_part_names_leading_river_and_grouping_parentheses() -> None:
    model = build(
        "river.preprocessing.StandardScaler | (preprocessing.MinMaxScaler | "
        "tree.HoeffdingAdaptiveTreeClassifier(drift_detector=drift.binary.DDM()))"
    )
    assert [type(s) for s in steps(model)] == [
        preprocessing.StandardScaler,
        preprocessing.MinMaxScaler,
        tree.HoeffdingAdaptiveTreeClassifier,
    ]
    assert type(steps(model)[-1].drift_detector) is drift.binary.DDM


def test_a_spec_may_span_lines_and_carry_comments() -> None:
    model = build(
        """
        preprocessing.StandardScaler   # scale first
        | linear_model.LogisticRegression(
            l2=0.1,
        )
        """
    )
    assert steps(model)[-1].l2 == 0.1


def test_every_parse_builds_fresh_objects() -> None:
    spec = "preprocessing.StandardScaler | linear_model.LogisticRegression"
    first, second = build(spec), build(spec)
    first.learn_one({"x": 1.0}, True)
    assert steps(first)[0] is not steps(second)[0]
    assert steps(second)[-1].weights == {}


def test_the_parsed_model_learns_exactly_like_the_hand_built_one() -> None:
    parsed = build(
        "preprocessing.StandardScaler | linear_model.LogisticRegression(optimizer=optim.SGD(0.05))"
    )
    by_hand = preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.SGD(0.05)
    )
    for x, y in datasets.Phishing().take(200):
        assert parsed.predict_proba_one(x) == by_hand.predict_proba_one(x)
        parsed.learn_one(x, y)
        by_hand.learn_one(x, y)


REPO = Path(__file__).resolve().parents[2]
HASHER_DOCS = (REPO / "README.md", REPO / "docs" / "operations.md")
EVENTS, NEW_NAMES_PER_EVENT = 4_000, 20


def documented_hasher_specs() -> list[str]:
    """The FeatureHasher model specs the README and the operations guide tell people to use."""
    found = []
    for path in HASHER_DOCS:
        found += re.findall(r"(preprocessing\.FeatureHasher\([^`\"\n]*)", path.read_text("utf-8"))
    assert found, "no FeatureHasher spec in the docs"
    return sorted(set(found))


def _endless_features(seed: int) -> Any:
    """Events that each bring names never seen before, a string feature and one signal."""
    rng = random.Random(seed)
    for i in range(EVENTS):
        x: dict[str, Any] = {"signal": rng.random(), "colour": rng.choice(["red", "green"])}
        x.update({f"id{i}_{j}": rng.random() for j in range(NEW_NAMES_PER_EVENT)})
        yield x, x["signal"] > 0.5


@pytest.mark.parametrize("spec", documented_hasher_specs())
def test_the_documented_feature_hasher_bounds_an_endless_feature_space(spec: str) -> None:
    model = build(spec)
    hasher = steps(model)[0]
    assert type(hasher) is preprocessing.FeatureHasher
    assert hasher.n_features < EVENTS * NEW_NAMES_PER_EVENT  # more names than buckets
    hits = 0
    for i, (x, y) in enumerate(_endless_features(seed=7)):
        y_pred = model.predict_one(x)  # string values too: hashed as name=value tokens
        hits += i >= EVENTS // 2 and y_pred == y
        model.learn_one(x, y)
    classifier = steps(model)[-1]
    assert 0 < len(classifier.weights) <= hasher.n_features
    assert hits / (EVENTS // 2) > 0.9  # and the signal is still learned through the hashing


def test_without_hashing_the_same_stream_grows_a_weight_per_name() -> None:
    model = build("linear_model.LogisticRegression")
    for x, y in _endless_features(seed=7):
        model.learn_one({k: v for k, v in x.items() if k != "colour"}, y)
    assert len(model.weights) == EVENTS * NEW_NAMES_PER_EVENT + 1


# --- specs that are refused --------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "quoted", "reason"),
    [
        ("__import__('os').system('x')", "__import__('os').system", "not a dotted name"),
        ("os.system", "os.system", "no River module 'river.os'"),
        ("river.__builtins__", "river.__builtins__", "private name '__builtins__'"),
        (
            "linear_model.LogisticRegression.__init__.__globals__",
            "linear_model.LogisticRegression.__init__.__globals__",
            "private name '__init__'",
        ),
        ("().__class__.__base__.__subclasses__()", "().__class__", "not a dotted name"),
        ("open('/etc/passwd')", "open", "name its River module"),
        ("LogisticRegression", "LogisticRegression", "name its River module"),
        ("linear_model.np", "linear_model.np", "river.linear_model has no name 'np'"),
        ("utils.math.dot", "utils.math.dot", "not a River class"),
        ("datasets.Phishing", "datasets.Phishing", "not a River class"),
        ("stream.Cache", "stream.Cache", "not a River class"),
        ("lambda: 1", "lambda: 1", "not a River class or a call of one"),
        ("[tree.HoeffdingTreeClassifier][0]", "[tree.HoeffdingTreeClassifier][0]", "not a River"),
        ("'naive_bayes.GaussianNB'", "'naive_bayes.GaussianNB'", "not a River class"),
        (
            "preprocessing.StandardScaler + naive_bayes.GaussianNB",
            "preprocessing.StandardScaler + naive_bayes.GaussianNB",
            "only | may join",
        ),
        ("optim.SGD | naive_bayes.GaussianNB", "optim.SGD", "not an estimator"),
        ("linear_model.LogisticRegression(l2=x)", "x", "a bare name"),
        ("linear_model.LogisticRegression(l2=f'{1}')", "f'{1}'", "JoinedStr expressions"),
        ("linear_model.LogisticRegression(l2=1 + 1)", "1 + 1", "BinOp expressions"),
        ("linear_model.LogisticRegression(l2=[1][0])", "[1][0]", "Subscript expressions"),
        ("linear_model.LogisticRegression(l2=lambda: 0)", "lambda: 0", "Lambda expressions"),
        ("linear_model.LogisticRegression(l2=...)", "...", "Constant expressions"),
        ("linear_model.LogisticRegression(l2=-'a')", "-'a'", "only to a number"),
        ("linear_model.LogisticRegression(l2=float('inf'))", "float", "name its River module"),
        ("linear_model.LogisticRegression(*[0.1])", "*[0.1]", "* arguments"),
        ("linear_model.LogisticRegression(**{'l2': 0.1})", "{'l2': 0.1}", "** arguments"),
        ("ensemble.VotingClassifier({**{}})", "{}", "** unpacking"),
        ("ensemble.VotingClassifier({optim.SGD(): 1})", "optim.SGD()", "dict key"),
        ("compose.Pipeline() | naive_bayes.GaussianNB", "compose.Pipeline()", "empty pipeline"),
        (
            "naive_bayes.GaussianNB | compose.Pipeline(('x', compose.Pipeline()))",
            "naive_bayes.GaussianNB | compose.Pipeline(('x', compose.Pipeline()))",
            "these steps do not make a pipeline",
        ),
    ],
)
def test_refused_parts_are_quoted_with_the_rules(spec: str, quoted: str, reason: str) -> None:
    with pytest.raises(ModelSpecError) as caught:
        parse_model_spec(spec)
    message = str(caught.value)
    assert f"{quoted!r}:" in message
    assert reason in message
    assert HELP in message


def test_nothing_in_a_refused_spec_runs(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    for spec in (
        f"__import__('pathlib').Path('{target}').touch()",
        f"open('{target}', 'w')",
        f"linear_model.LogisticRegression(l2=open('{target}', 'w'))",
    ):
        with pytest.raises(ModelSpecError):
            parse_model_spec(spec)
    assert not target.exists()


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("linear_model.LogisticRegression(", "'(' was never closed"),
        ("linear_model.LogisticRegression(l2=1 1)", "at line 1, column"),
        ("naive_bayes.GaussianNB\x00", "null bytes"),
        ("(" * 300 + "naive_bayes.GaussianNB" + ")" * 300, "too many nested parentheses"),
    ],
)
def test_empty_and_malformed_text_is_refused(spec: str, reason: str) -> None:
    with pytest.raises(ModelSpecError, match=re.escape(reason)) as caught:
        parse_model_spec(spec)
    assert HELP in str(caught.value)


def test_a_bad_keyword_names_the_class_the_keyword_and_what_it_accepts() -> None:
    with pytest.raises(ModelSpecError) as caught:
        parse_model_spec("preprocessing.StandardScaler | linear_model.LogisticRegression(l3=1)")
    message = str(caught.value)
    assert "'linear_model.LogisticRegression'" in message
    assert "'l3'" in message
    assert "it accepts: optimizer, loss, l2, l1" in message


def test_too_many_positional_arguments_name_the_class() -> None:
    with pytest.raises(ModelSpecError, match=r"'naive_bayes.GaussianNB': too many positional"):
        parse_model_spec("naive_bayes.GaussianNB(1)")


def test_a_constructor_that_refuses_its_values_is_a_spec_error() -> None:
    with pytest.raises(ModelSpecError) as caught:
        parse_model_spec("ensemble.VotingClassifier([])")
    assert "'ensemble.VotingClassifier' refused its arguments" in str(caught.value)
    assert "At least 2 models" in str(caught.value)
    with pytest.raises(ModelSpecError, match=re.escape("'base.Classifier' refused its arguments")):
        parse_model_spec("base.Classifier")  # abstract


@pytest.mark.parametrize(
    ("spec", "final"),
    [
        ("preprocessing.StandardScaler", "StandardScaler"),
        ("linear_model.LogisticRegression | preprocessing.StandardScaler", "StandardScaler"),
        ("anomaly.HalfSpaceTrees(seed=1)", "HalfSpaceTrees"),
        ("compose.Pipeline(('empty', compose.Pipeline()))", "an empty pipeline"),
    ],
)
def test_the_model_must_end_in_a_classifier_or_a_regressor(spec: str, final: str) -> None:
    with pytest.raises(
        ModelSpecError, match=f"must end in a classifier .* or a regressor .* ends in {final},"
    ):
        parse_model_spec(spec)


@pytest.mark.parametrize(
    ("spec", "task"),
    [
        ("linear_model.LinearRegression", REGRESSION),
        ("preprocessing.StandardScaler | linear_model.LinearRegression", REGRESSION),
        ("tree.HoeffdingTreeRegressor(grace_period=50)", REGRESSION),
        ("preprocessing.StandardScaler | linear_model.LogisticRegression", CLASSIFICATION),
        ("tree.HoeffdingTreeClassifier", CLASSIFICATION),
    ],
)
def test_a_regressor_may_end_the_pipeline_and_tells_the_task(spec: str, task: str) -> None:
    assert task_of(parse_model_spec(spec)) == task


def test_a_nested_pipeline_is_judged_by_its_last_step() -> None:
    model = build(
        "preprocessing.StandardScaler | compose.Pipeline(preprocessing.MinMaxScaler(), "
        "naive_bayes.GaussianNB())"
    )
    assert type(steps(steps(model)[-1])[-1]) is naive_bayes.GaussianNB


# --- describe_model ----------------------------------------------------------------------


def test_describe_model_is_one_short_line_with_changed_arguments_only() -> None:
    model = parse_model_spec(
        "preprocessing.StandardScaler | "
        "linear_model.LogisticRegression(optimizer=optim.SGD(0.05), l2=0.0, l1=0.001)"
    )
    assert describe_model(model) == (
        "StandardScaler | "
        "LogisticRegression(optimizer=SGD(lr=Constant(learning_rate=0.05)), l1=0.001)"
    )


def test_describe_model_shows_nested_models_and_nested_pipelines() -> None:
    voting = ensemble.VotingClassifier(
        [naive_bayes.GaussianNB(), tree.HoeffdingTreeClassifier(grace_period=10)]
    )
    assert describe_model(voting) == (
        "VotingClassifier(models=[GaussianNB, HoeffdingTreeClassifier(grace_period=10)])"
    )
    nested = preprocessing.StandardScaler() | compose.Pipeline(
        preprocessing.MinMaxScaler(), naive_bayes.GaussianNB()
    )
    assert describe_model(nested) == "StandardScaler | MinMaxScaler | GaussianNB"  # River flattens
    explicit = compose.Pipeline(
        preprocessing.StandardScaler(),
        compose.Pipeline(preprocessing.MinMaxScaler(), naive_bayes.GaussianNB()),
    )
    assert describe_model(explicit) == "StandardScaler | (MinMaxScaler | GaussianNB)"
    assert "\n" not in describe_model(tree.HoeffdingAdaptiveTreeClassifier())


class _Multiline:
    def __repr__(self) -> str:
        return "Thing (\n  a=1\n)"


def test_describe_model_of_a_non_river_object_collapses_its_repr() -> None:
    assert describe_model(_Multiline()) == "Thing ( a=1 )"
