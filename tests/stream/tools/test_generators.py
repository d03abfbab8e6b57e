"""Event sources: reproducible concept streams with real drifts, and file replay."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from river import linear_model, preprocessing, tree
from river.datasets import synth

from stream.tools.generators import (
    GENERATORS,
    REGRESSION_GENERATORS,
    SourceError,
    concept_at,
    concept_count,
    concept_seed,
    concept_stream,
    file_stream,
)


def take(generator: str, n: int, **kwargs: Any) -> list[tuple[dict[Any, Any], Any]]:
    return list(concept_stream(generator, count=n, **kwargs))


def test_the_issue_generators_are_offered() -> None:
    assert {"sea", "agrawal", "hyperplane", "stagger", "rbf-drift"} <= set(GENERATORS)
    assert all(concept_count(g) >= 2 for g in GENERATORS)


@pytest.mark.parametrize("generator", GENERATORS)
def test_same_seed_same_stream_other_seed_other_stream(generator: str) -> None:
    first = take(generator, 300, seed=5, drift_at=[100, 200])
    assert first == take(generator, 300, seed=5, drift_at=[100, 200])
    assert first != take(generator, 300, seed=6, drift_at=[100, 200])


def test_without_drift_it_is_the_plain_river_stream() -> None:
    expected = list(synth.Agrawal(classification_function=0, seed=9).take(200))
    assert take("agrawal", 200, seed=9) == expected
    assert take("friedman-drift", 200, seed=9) == list(synth.Friedman(seed=9).take(200))


def test_friedman_drift_labels_are_numbers() -> None:
    labels = [y for _, y in take("friedman-drift", 100, seed=2, drift_at=[30, 60])]
    assert all(type(y) is float for y in labels)
    assert len(set(labels)) == 100


def test_the_concept_switches_exactly_at_each_drift_point() -> None:
    stream = take("sea", 60, seed=3, drift_at=[25, 40])
    concept_0 = list(synth.SEA(variant=0, seed=3).take(25))
    concept_1 = list(synth.SEA(variant=1, seed=concept_seed(3, 1)).take(15))
    concept_2 = list(synth.SEA(variant=2, seed=concept_seed(3, 2)).take(20))
    assert stream == concept_0 + concept_1 + concept_2


def test_concepts_cycle_and_a_returning_concept_continues_its_own_points() -> None:
    # STAGGER has 3 concepts: the 4th segment is concept 0 again, continuing after event 10.
    stream = take("stagger", 40, seed=1, drift_at=[10, 20, 30])
    plain = list(synth.STAGGER(classification_function=0, seed=1).take(20))
    assert stream[:10] == plain[:10]
    assert stream[30:] == plain[10:]
    assert [concept_at(i, [10, 20, 30], 3) for i in (0, 10, 20, 30)] == [0, 1, 2, 0]


def test_the_stream_is_unbounded_without_a_count() -> None:
    events = concept_stream("sea", seed=1, drift_at=[5])
    assert len(list(itertools.islice(events, 50))) == 50


def _model_for(generator: str) -> Any:
    if generator == "hyperplane":  # a linear concept: a linear model learns it fast
        return preprocessing.StandardScaler() | linear_model.LogisticRegression()
    return tree.HoeffdingTreeClassifier(grace_period=50)


def _accuracy(model: Any, pairs: list[tuple[dict[Any, Any], Any]]) -> float:
    return sum(model.predict_one(x) == y for x, y in pairs) / len(pairs)


CLASSIFICATION_GENERATORS = [g for g in GENERATORS if g not in REGRESSION_GENERATORS]


@pytest.mark.parametrize("generator", CLASSIFICATION_GENERATORS)
def test_a_model_of_one_concept_gets_worse_on_the_next(generator: str) -> None:
    # If two neighbouring segments were the same concept, accuracy would not drop.
    segment, held_out = 2_000, 400
    drifts = [segment, 2 * segment]
    stream = take(generator, 3 * segment, seed=11, drift_at=drifts)
    for start in (0, segment):
        model = _model_for(generator)
        for x, y in stream[start : start + segment - held_out]:
            model.learn_one(x, y)
        before = _accuracy(model, stream[start + segment - held_out : start + segment])
        after = _accuracy(model, stream[start + segment : start + segment + held_out])
        assert after < before - 0.05, (generator, start, before, after)


def _mae(model: Any, pairs: list[tuple[dict[Any, Any], Any]]) -> float:
    return sum(abs(model.predict_one(x) - y) for x, y in pairs) / len(pairs)


@pytest.mark.parametrize("generator", REGRESSION_GENERATORS)
def test_a_regressor_of_one_concept_gets_worse_on_the_next(generator: str) -> None:
    segment, held_out = 2_000, 400
    stream = take(generator, 3 * segment, seed=11, drift_at=[segment, 2 * segment])
    for start in (0, segment):
        model = tree.HoeffdingTreeRegressor(grace_period=50)
        for x, y in stream[start : start + segment - held_out]:
            model.learn_one(x, y)
        before = _mae(model, stream[start + segment - held_out : start + segment])
        after = _mae(model, stream[start + segment : start + segment + held_out])
        assert after > 1.3 * before, (generator, start, before, after)


@pytest.mark.parametrize(
    ("drift_at", "count", "message"),
    [
        ([0], 10, "must be positive"),
        ([-3], None, "must be positive"),
        ([5, 5], 10, "strictly increasing"),
        ([7, 3], 10, "strictly increasing"),
        ([10], 10, "not before the end"),
        ([2.5], 10, "not an integer"),
    ],
)
def test_bad_drift_points_are_refused(drift_at: list[Any], count: int | None, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        concept_stream("sea", seed=1, drift_at=drift_at, count=count)


def test_an_unknown_generator_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown generator 'seaa'.*agrawal"):
        concept_stream("seaa", seed=1, count=3)


def test_csv_numbers_become_floats_text_stays_and_labels_are_classes(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("x,colour,y\n1.5,red,1\n2,,0\n-3e2,blue,\n")
    pairs = list(file_stream(path, label_column="y"))
    assert pairs == [
        ({"x": 1.5, "colour": "red"}, 1),
        ({"x": 2.0}, 0),  # an empty cell is a missing feature
        ({"x": -300.0, "colour": "blue"}, None),  # an empty label: unlabelled
    ]


def test_csv_label_column_defaults_to_label_and_text_labels_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "mail.csv"
    path.write_text("words,label\n3,spam\n8,ham\n")
    assert list(file_stream(path, label_column=None)) == [
        ({"words": 3.0}, "spam"),
        ({"words": 8.0}, "ham"),
    ]


def test_csv_without_the_label_column_is_refused_naming_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(SourceError, match=r"no label column 'y'.*\['a', 'b'\]"):
        file_stream(path, label_column="y")


def test_jsonl_reads_canonical_events_and_flat_objects(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [
        {"id": "a", "features": {"x": 1, "c": "red", "ok": True}, "label": True},
        {"features": {"x": 2.5, "gone": None}},
        {"x": 3, "target": "cat"},
        {"x": 4, "target": 1.0},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    assert list(file_stream(path, label_column="target")) == [
        ({"x": 1, "c": "red", "ok": True}, True),
        ({"x": 2.5}, None),
        ({"x": 3}, "cat"),
        ({"x": 4}, 1),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"events.jsonl:2: not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"x": 1}', "no label key 'label'"),
        ('{"x": {"deep": 1}, "label": 1}', "is not a number"),
        ('{"x": 1, "label": 0.5}', "is not a class"),
    ],
)
def test_bad_jsonl_lines_are_refused_with_their_line_number(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"x": 0, "label": 0}\n' + line + "\n")
    with pytest.raises(SourceError, match=message):
        list(file_stream(path))


def test_the_format_comes_from_the_extension_unless_given(tmp_path: Path) -> None:
    path = tmp_path / "events.txt"
    path.write_text('{"x": 1, "label": 0}\n')
    with pytest.raises(SourceError, match="cannot tell the format"):
        file_stream(path)
    assert list(file_stream(path, fmt="jsonl")) == [({"x": 1}, 0)]


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        file_stream(tmp_path / "nope.csv")


def test_number_labels_of_a_file_reach_a_regression_as_floats(tmp_path: Path) -> None:
    from stream.events import Event, decode_number_labels
    from stream.tools.produce import encode_event

    csv_file = tmp_path / "targets.csv"
    csv_file.write_text("x,label\n1.0,2.5\n2.0,3\n3.0,\n")
    jsonl_file = tmp_path / "targets.jsonl"
    jsonl_file.write_text('{"x": 1.0, "label": 2.5}\n{"features": {"x": 2.0}, "label": -0.125}\n')
    from_csv = list(file_stream(csv_file, number_labels=True))
    assert [label for _, label in from_csv] == [2.5, 3.0, None]
    from_jsonl = list(file_stream(jsonl_file, number_labels=True))
    assert [label for _, label in from_jsonl] == [2.5, -0.125]
    for n, (features, label) in enumerate(from_csv[:2] + from_jsonl):
        event = decode_number_labels(encode_event(str(n), features, label, n))
        assert type(event) is Event and event.label == label and type(event.label) is float


def test_without_number_labels_a_float_label_is_refused_with_the_way_out(tmp_path: Path) -> None:
    jsonl_file = tmp_path / "targets.jsonl"
    jsonl_file.write_text('{"x": 1.0, "label": 2.5}\n')
    with pytest.raises(SourceError, match="--number-labels"):
        list(file_stream(jsonl_file))
    bad = tmp_path / "bad.csv"
    bad.write_text("x,label\n1.0,spam\n")
    with pytest.raises(SourceError, match=r"bad.csv:2: label 'spam' is not a number"):
        list(file_stream(bad, number_labels=True))
