"""Decode and validate Kafka record values into events, or into dead letters with a reason.

The canonical value is JSON::

    {"id": "optional string", "features": {"name": number | string | bool},
     "label": bool | int | string | null, "timestamp": optional epoch seconds,
     "seq": optional per-partition sequence number}

A record with a label but no ``features`` is the label of an earlier event that came
without one (``docs/labels.md``): ``{"id": "17", "label": 1}`` becomes a :class:`LateLabel`.

A regression's labels are finite numbers instead (an integer or a float, never a bool or a
string): :func:`decoder_for` gives the decoder of a task, chosen once at start-up.

Two readers agree on what is valid. The fast one, orjson plus a few type checks, takes
the well-formed events (about 2 µs, where pydantic-core takes 3.5). Anything it does not
accept outright, pydantic's strict model judges: it accepts the odd valid value (a label
past 64 bits) and names the reason for everything else. One difference: a feature that is
an integer past 64 bits arrives as its nearest float, the value a model computes with.

>>> decode(b'{"features": {"x": 1.5}, "label": true}').label
True
>>> decode(b'{"features": {"x": NaN}, "label": 1}').reason
'non_finite'
>>> decode(b'{"id": "17", "label": 1}')
LateLabel(id='17', label=1)
>>> decode(b'{"label": 1}').reason
'missing_features'
>>> decode_number_labels(b'{"features": {"x": 1.5}, "label": 2.5}').label
2.5
>>> decode_number_labels(b'{"features": {"x": 1.5}, "label": "2.5"}').reason
'bad_label'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

FeatureValue = StrictBool | StrictInt | StrictFloat | StrictStr
Label = StrictBool | StrictInt | StrictStr
NumberLabel = StrictInt | StrictFloat

#: Reasons a record cannot become an event.
DECODE_REASONS: Final = (
    "empty_value",
    "not_json",
    "not_an_object",
    "missing_features",
    "bad_feature",
    "non_finite",
    "bad_label",
    "bad_field",
)
#: Reasons a valid event is not learned: the model raised on it, or it would take the
#: model past ``--max-features`` (``stream/daemon/model_errors.py``).
MODEL_REASONS: Final = ("model_error", "too_many_features")
#: A record of the labels topic (``--labels-topic``) that is an event, not a label.
NOT_A_LABEL: Final = "not_a_label"
#: Every reason a record can be dead-lettered for; metrics pre-create one series each.
DEAD_LETTER_REASONS: Final = (*DECODE_REASONS, *MODEL_REASONS, NOT_A_LABEL)


class Event(NamedTuple):
    """One validated event (a tuple: built and read on the hot path, cheaply)."""

    features: dict[str, Any]
    label: bool | int | float | str | None = None
    id: str | None = None
    timestamp: float | int | None = None
    seq: int | None = None


class _EventModel(BaseModel):
    """The rules for an event; unknown extra fields are ignored for forward compatibility."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)

    id: StrictStr | None = None
    features: dict[str, FeatureValue]
    label: Label | None = None
    timestamp: StrictFloat | StrictInt | None = None
    seq: StrictInt | None = None


class _NumberLabelEventModel(_EventModel):
    """An event of a regression: its label, when it has one, is a finite number."""

    label: NumberLabel | None = None  # type: ignore[assignment]


class LateLabel(NamedTuple):
    """The label of the earlier event ``id``, which came without one."""

    id: str
    label: bool | int | float | str


class _LateLabelModel(BaseModel):
    """A record without features: a late label when it has one (not null)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)

    id: StrictStr | None = None
    label: Label | None = None
    timestamp: StrictFloat | StrictInt | None = None
    seq: StrictInt | None = None


class _NumberLateLabelModel(_LateLabelModel):
    label: NumberLabel | None = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not become an event; ``reason`` is one of DEAD_LETTER_REASONS."""

    reason: str
    detail: str


Decoder = Callable[[bytes | None], "Event | LateLabel | DeadLetter"]


def decode(value: bytes | None) -> Event | LateLabel | DeadLetter:
    """Turn one record value into an :class:`Event` (or the :class:`LateLabel` of an
    earlier one), or a :class:`DeadLetter` saying why not. Labels are classes."""
    if not value:
        return DeadLetter("empty_value", "the record has no value")
    try:
        event = _well_formed(orjson.loads(value), _LABEL_TYPES)
    except orjson.JSONDecodeError:  # NaN, 1e999, integers past 64 bits: pydantic judges
        event = None
    return event if event is not None else judge(value)


def decode_number_labels(value: bytes | None) -> Event | LateLabel | DeadLetter:
    """:func:`decode` for a regression: a label is a finite number (int or float)."""
    if not value:
        return DeadLetter("empty_value", "the record has no value")
    try:
        event = _well_formed(orjson.loads(value), _NUMBER_LABEL_TYPES)
    except orjson.JSONDecodeError:
        event = None
    return event if event is not None else judge(value, number_labels=True)


def decoder_for(task: str) -> Decoder:
    """The decoder of a task (``learners.spec.task_of``): number labels for a regression."""
    return decode_number_labels if task == "regression" else decode


def judge(value: bytes, number_labels: bool = False) -> Event | LateLabel | DeadLetter:
    """pydantic's verdict on ``value``: the reference that :func:`decode` (or, with
    ``number_labels``, :func:`decode_number_labels`) agrees with."""
    rules = _NumberLabelEventModel if number_labels else _EventModel
    try:
        model = rules.model_validate_json(value)
    except ValidationError as exc:
        letter = _dead_letter(exc, number_labels)
        if letter.reason == "missing_features":
            return _judge_late_label(value, letter, number_labels)
        return letter
    return Event(model.features, model.label, model.id, model.timestamp, model.seq)


def _judge_late_label(
    value: bytes, missing: DeadLetter, number_labels: bool
) -> LateLabel | DeadLetter:
    """A record without features: a late label if it has an id and a label, else ``missing``."""
    rules = _NumberLateLabelModel if number_labels else _LateLabelModel
    try:
        model = rules.model_validate_json(value)
    except ValidationError as exc:
        return _dead_letter(exc, number_labels)
    if model.label is None or model.id is None:
        return missing  # no features, and no event id a label could belong to
    return LateLabel(model.id, model.label)


_FEATURE_TYPES = frozenset((bool, int, float, str))
_LABEL_TYPES: frozenset[type] = frozenset((bool, int, str, type(None)))
_NUMBER_LABEL_TYPES: frozenset[type] = frozenset((int, float, type(None)))
_TIMESTAMP_TYPES = frozenset((int, float, type(None)))


def _well_formed(data: Any, label_types: frozenset[type]) -> Event | LateLabel | None:
    """The event ``data`` (parsed JSON) holds, if it is plainly valid; else None.

    Exact types (``type(x) in``) keep booleans out of numbers as pydantic's strict types
    do; orjson never yields a non-finite float.
    """
    if type(data) is not dict:
        return None
    features = data.get("features")
    if type(features) is not dict:
        return _late_label(data, label_types) if features is None else None
    for feature in features.values():
        if type(feature) not in _FEATURE_TYPES:
            return None
    get = data.get
    label, event_id, timestamp, seq = get("label"), get("id"), get("timestamp"), get("seq")
    if (
        type(label) not in label_types
        or (event_id is not None and type(event_id) is not str)
        or type(timestamp) not in _TIMESTAMP_TYPES
        or (seq is not None and type(seq) is not int)
    ):
        return None
    return Event(features, label, event_id, timestamp, seq)


def _late_label(data: dict[str, Any], label_types: frozenset[type]) -> LateLabel | None:
    """The late label ``data`` (parsed JSON, no ``features``) holds, if plainly valid."""
    get = data.get
    event_id, label, timestamp, seq = get("id"), get("label"), get("timestamp"), get("seq")
    if (
        type(event_id) is not str
        or label is None
        or type(label) not in label_types
        or "features" in data
        or type(timestamp) not in _TIMESTAMP_TYPES
        or (seq is not None and type(seq) is not int)
    ):
        return None
    return LateLabel(event_id, label)


_UNION_MEMBERS = {"bool", "int", "float", "str"}


def _describe(
    loc: tuple[int | str, ...], message: str, several: bool, number_labels: bool = False
) -> str:
    """``features.a: not a number, string or bool`` rather than pydantic's per-member text."""
    if several and loc and loc[-1] in _UNION_MEMBERS:
        loc = loc[:-1]
        field = loc[0] if loc else ""
        message = {
            "features": "must be a finite number, a string or a bool",
            "label": "must be a finite number"
            if number_labels
            else "must be a bool, an integer or a string",
        }.get(str(field), "must be a finite number")
    return f"{'.'.join(str(part) for part in loc) or 'value'}: {message}"


def _dead_letter(exc: ValidationError, number_labels: bool = False) -> DeadLetter:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    loc = first["loc"]
    detail = _describe(loc, first["msg"], len(errors) > 1, number_labels)
    kinds = {error["type"] for error in errors}
    if first["type"] == "json_invalid":
        return DeadLetter("not_json", detail)
    if first["type"] == "model_type":
        return DeadLetter("not_an_object", detail)
    field = loc[0] if loc else ""
    if field == "features":
        if first["type"] == "missing":
            return DeadLetter("missing_features", detail)
        reason = "non_finite" if "finite_number" in kinds else "bad_feature"
        return DeadLetter(reason, detail)
    if field == "label":
        return DeadLetter("bad_label", detail)
    return DeadLetter("bad_field", detail)
