"""A record with an id and a label but no features is the late label of an earlier event;
both readers agree on it, and on what makes one bad."""

from __future__ import annotations

import pytest

from stream.events import DeadLetter, LateLabel, decode
from stream.tools.produce import encode_label
from tests.stream.test_events import same

LATE_LABELS = {
    b'{"id": "17", "label": 1}': LateLabel("17", 1),
    b'{"id": "a", "label": "cat"}': LateLabel("a", "cat"),
    b'{"id": "a", "label": false}': LateLabel("a", False),
    b'{"id": "a", "label": true, "timestamp": 1.5, "seq": 3, "extra": [1]}': LateLabel("a", True),
    b'{"id": "a", "label": 123456789012345678901234567890}': LateLabel(
        "a", 123456789012345678901234567890
    ),
}

NOT_LABELS = {
    b'{"id": "17"}': "missing_features",
    b'{"id": "17", "label": null}': "missing_features",
    b'{"label": 1}': "missing_features",
    b'{"id": 17, "label": 1}': "bad_field",
    b'{"id": "17", "label": 1.5}': "bad_label",
    b'{"id": "17", "label": [1]}': "bad_label",
    b'{"id": "17", "label": 1, "seq": "x"}': "bad_field",
    b'{"id": "17", "label": 1, "features": null}': "bad_feature",
}


@pytest.mark.parametrize("value", sorted(LATE_LABELS))
def test_an_id_and_a_label_without_features_is_a_late_label(value: bytes) -> None:
    got = same(value)
    assert got == LATE_LABELS[value] and type(got) is LateLabel
    assert type(got.label) is type(LATE_LABELS[value].label)  # 1 stays 1, not True


@pytest.mark.parametrize("value", sorted(NOT_LABELS))
def test_what_is_not_a_late_label_is_a_dead_letter_with_a_reason(value: bytes) -> None:
    got = same(value)
    assert isinstance(got, DeadLetter) and got.reason == NOT_LABELS[value], got


def test_the_producer_writes_late_labels_the_daemon_reads() -> None:
    for label in (True, 0, 7, "spam"):
        assert decode(encode_label("42-1", label)) == LateLabel("42-1", label)
