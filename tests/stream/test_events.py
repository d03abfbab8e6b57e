"""The fast event reader agrees with pydantic's strict model on every value, good or bad."""

from __future__ import annotations

import json
import math
import random

import orjson
import pytest

from stream.events import (
    DEAD_LETTER_REASONS,
    DeadLetter,
    Event,
    LateLabel,
    decode,
    decode_number_labels,
    decoder_for,
    judge,
)
from stream.tools.generators import GENERATORS, concept_stream, generator_task
from stream.tools.produce import encode_event

EDGE_CASES = [
    b'{"features": {"a": 1, "b": 2.5, "c": "red", "d": true, "e": false}, "label": "x"}',
    b'{"features": {}, "label": 0}',
    b'{"features": {"a": 1.0}}',
    b'{"features": {"a": 1.0}, "label": null, "id": null, "timestamp": null, "seq": null}',
    b'{"features": {"a": 1.0}, "label": true, "extra": [1, {"b": 2}], "seq": 9}',
    b'{"features": {"a": 1.0}, "label": 1, "timestamp": 1700000000, "seq": 0}',
    b'{"features": {"a": 1.0}, "label": 123456789012345678901234567890}',
    b'{"features": {"a": 1e308, "b": -0.0, "c": 5e-324}, "label": false}',
    b'{"features": {"a": 1.0, "a": 2.0}, "label": true}',
    b'{"features": {"\\u00e9t\\u00e9": 1.0}, "label": "\\ud83d\\ude00"}',
    b'{"features": {"a": "\\ud800"}, "label": true}',
    b'{"features": {"a": NaN}, "label": true}',
    b'{"features": {"a": 1e999}, "label": true}',
    b'{"features": {"a": null}, "label": true}',
    b'{"features": {"a": [1]}, "label": true}',
    b'{"features": [1.0], "label": true}',
    b'{"features": {"a": 1.0}, "label": 1.5}',
    b'{"features": {"a": 1.0}, "label": true, "timestamp": true}',
    b'{"features": {"a": 1.0}, "label": true, "timestamp": "now"}',
    b'{"features": {"a": 1.0}, "label": true, "seq": 1.0}',
    b'{"features": {"a": 1.0}, "label": true, "seq": true}',
    b'{"features": {"a": 1.0}, "label": true, "id": 7}',
    b'{"label": true}',
    b"[1, 2]",
    b"42",
    b"null",
    b'"text"',
    b"not json",
    b"\xff\xfe",
    b'{"features": {"a": 1.0}, "label": tr',
    b'  {"features": {"a": 1.0}, "label": true}  ',
]


def same(value: bytes, number_labels: bool = False) -> Event | LateLabel | DeadLetter:
    fast = decode_number_labels if number_labels else decode
    got, reference = fast(value), judge(value, number_labels=number_labels)
    assert got == reference
    assert type(got) is type(reference)
    if isinstance(got, Event) and isinstance(reference, Event):
        for name in ("label", "timestamp", "seq", "id"):
            assert type(getattr(got, name)) is type(getattr(reference, name))
        assert [type(v) for v in got.features.values()] == [
            type(v) for v in reference.features.values()
        ]
    return got


@pytest.mark.parametrize("value", EDGE_CASES)
def test_edge_cases(value: bytes) -> None:
    result = same(value)
    if isinstance(result, DeadLetter):
        assert result.reason in DEAD_LETTER_REASONS


def test_generated_events() -> None:
    """What ``streamlearn produce`` writes, for every generator it has."""
    for name in GENERATORS:
        number_labels = generator_task(name) == "regression"
        for seq, (x, y) in enumerate(concept_stream(name, seed=3, count=200)):
            assert isinstance(same(encode_event(f"e{seq}", x, y, seq), number_labels), Event)


NUMBER_LABEL_CASES = [
    (b'{"features": {"a": 1.0}, "label": 1.5}', 1.5),
    (b'{"features": {"a": 1.0}, "label": -3}', -3),
    (b'{"features": {"a": 1.0}, "label": 1e308}', 1e308),
    (b'{"features": {"a": 1.0}}', None),
    (b'{"features": {"a": 1.0}, "label": true}', "bad_label"),
    (b'{"features": {"a": 1.0}, "label": "1.5"}', "bad_label"),
    (b'{"features": {"a": 1.0}, "label": NaN}', "bad_label"),
    (b'{"features": {"a": 1.0}, "label": 1e999}', "bad_label"),
    (b'{"id": "7", "label": 2.25}', 2.25),
    (b'{"id": "7", "label": false}', "bad_label"),
    (b'{"id": "7", "label": "x"}', "bad_label"),
    (b'{"label": 2.5}', "missing_features"),
]


@pytest.mark.parametrize(("value", "expected"), NUMBER_LABEL_CASES)
def test_a_regression_takes_finite_numbers_as_labels_and_nothing_else(
    value: bytes, expected: object
) -> None:
    result = same(value, number_labels=True)
    if isinstance(expected, str):
        assert isinstance(result, DeadLetter) and result.reason == expected
        assert "label" not in expected or "finite number" in result.detail
    elif isinstance(result, Event | LateLabel) and expected is not None:
        assert result.label == expected and type(result.label) is type(expected)
    else:
        assert isinstance(result, Event)


def test_a_classification_still_refuses_a_float_label() -> None:
    value = b'{"features": {"a": 1.0}, "label": 1.5}'
    result = decoder_for("classification")(value)
    assert isinstance(result, DeadLetter) and result.reason == "bad_label"
    assert decoder_for("regression")(value) == Event({"a": 1.0}, 1.5)


def test_integer_features_past_64_bits_become_their_float() -> None:
    """orjson reads them as the nearest double: the value every model computes with."""
    big = 123456789012345678901234567890
    value = b'{"features": {"a": %d, "b": 1}, "label": 1}' % big
    assert judge(value) == Event({"a": big, "b": 1}, 1)
    assert decode(value) == Event({"a": float(big), "b": 1}, 1)


def test_random_floats_parse_to_the_same_doubles() -> None:
    rng = random.Random(11)
    for _ in range(2000):
        x = rng.choice([rng.uniform(-1e6, 1e6), rng.gauss(0, 1e-9), math.ldexp(rng.random(), 900)])
        text = rng.choice([repr(x), f"{x:.17g}", f"{x:.6e}", json.dumps(x)])
        value = b'{"features": {"x": %s}, "label": true, "timestamp": %s}' % (
            text.encode(),
            text.encode(),
        )
        same(value)
    same(orjson.dumps({"features": {"x": 0.1 + 0.2}, "label": 3}))
