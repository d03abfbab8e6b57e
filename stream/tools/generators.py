"""Event sources for the producer: River's synthetic streams with abrupt drifts, and files.

Pure code, no Kafka: every source is an iterator of ``(features, label)`` pairs. Labels
are classes, except for the regression generators (:data:`REGRESSION_GENERATORS`), whose
labels are numbers.

River 0.26's ``ConceptDriftStream`` overflows for a change point far from the start,
so concepts are composed here. A *concept* is one River generator with one setting
(SEA's variant, Agrawal's classification function, a hyperplane drawn from another
seed, ...). Each concept keeps its own iterator, seeded from ``seed`` and the
concept's index, so the whole stream is reproducible, and a concept met again after
a cycle continues where it stopped instead of replaying the same points.

River (and scipy under it) is imported when a concept is first built, not with this
module: the CLI lists :data:`GENERATORS` in ``streamlearn produce --help`` and that
must not cost the ~0.2 s River takes to import.

>>> pairs = list(concept_stream("sea", seed=7, drift_at=[3], count=5))
>>> len(pairs)
5
>>> pairs == list(concept_stream("sea", seed=7, drift_at=[3], count=5))
True
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from stream.exceptions import StreamError

Features = dict[Any, Any]
Label = bool | int | float | str | None
Pair = tuple[Features, Label]
FileFormat = Literal["csv", "jsonl"]

# One concept: a River dataset, iterated for its (features, label) pairs.
Concept = Iterable[tuple[dict[Any, Any], Any]]
# Builds the River dataset of concept ``index`` of a generator, given a concept seed.
ConceptFactory = Callable[[int, int], Concept]


class SourceError(StreamError, ValueError):
    """An event source (generator, drift points or file) is misconfigured or unreadable."""


# Each factory imports its River class itself: see the module docstring.


def _sea(index: int, seed: int) -> Concept:
    from river.datasets.synth import SEA

    return SEA(variant=index, seed=seed)


def _agrawal(index: int, seed: int) -> Concept:
    from river.datasets.synth import Agrawal

    return Agrawal(classification_function=index, seed=seed)


def _hyperplane(index: int, seed: int) -> Concept:
    from river.datasets.synth import Hyperplane

    return Hyperplane(seed=seed)  # another seed draws another hyperplane: another concept


def _stagger(index: int, seed: int) -> Concept:
    from river.datasets.synth import STAGGER

    return STAGGER(classification_function=index, seed=seed)


def _rbf(index: int, seed: int) -> Concept:
    from river.datasets.synth import RandomRBFDrift

    # Another model seed draws other centroids: another concept. A few centroids also
    # move slowly inside each concept, which is what the "-drift" generator is for.
    return RandomRBFDrift(
        seed_model=seed, seed_sample=seed, change_speed=0.0001, n_drift_centroids=10
    )


def _sine(index: int, seed: int) -> Concept:
    from river.datasets.synth import Sine

    return Sine(classification_function=index, seed=seed)


def _mixed(index: int, seed: int) -> Concept:
    from river.datasets.synth import Mixed

    return Mixed(classification_function=index, seed=seed)


# FriedmanDrift's change points, picked so one target function holds from the first event
# on: the original, then the two of the global drift (the relevant features swapped).
_FRIEDMAN_POSITIONS = ((2**62, 2**62 + 1), (0, 2**62), (-1, 0))


def _friedman(index: int, seed: int) -> Concept:
    from river.datasets.synth import FriedmanDrift

    # The gradual variant with no transition window is abrupt, and draws no extra random
    # numbers; its change points are spent on choosing the concept (see above).
    position = _FRIEDMAN_POSITIONS[index]
    return FriedmanDrift(drift_type="gsg", position=position, transition_window=0, seed=seed)


# generator name -> (number of distinct concepts, factory(concept index, concept seed));
# the one registry of generator names, which the CLI offers as --generator choices.
_CONCEPTS: dict[str, tuple[int, ConceptFactory]] = {
    "sea": (4, _sea),
    "agrawal": (10, _agrawal),
    "hyperplane": (4, _hyperplane),
    "stagger": (3, _stagger),
    "rbf-drift": (4, _rbf),
    "sine": (4, _sine),
    "mixed": (2, _mixed),
    "friedman-drift": (3, _friedman),
}

GENERATORS: tuple[str, ...] = tuple(_CONCEPTS)
#: Generators whose labels are numbers (a regression's); the others' are classes.
REGRESSION_GENERATORS: tuple[str, ...] = ("friedman-drift",)


def generator_task(generator: str) -> str:
    """``"regression"`` for a generator of number labels, else ``"classification"``.

    >>> generator_task("friedman-drift"), generator_task("sea")
    ('regression', 'classification')
    """
    _concepts_of(generator)  # an unknown name is refused here too
    return "regression" if generator in REGRESSION_GENERATORS else "classification"


def concept_seed(seed: int, index: int) -> int:
    """Seed of concept ``index``: ``seed`` itself for the first, a stable hash after.

    Concept 0 is exactly River's generator with ``seed``, so a stream without drift
    is the plain River stream. The hash is spelled out (not ``hash()``) so it is the
    same in every process.

    >>> concept_seed(42, 0)
    42
    >>> concept_seed(42, 1) == concept_seed(42, 1) != concept_seed(42, 2)
    True
    """
    if index == 0:
        return seed
    digest = hashlib.sha256(f"streamlearn/{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def concept_count(generator: str) -> int:
    """How many distinct concepts ``generator`` cycles through."""
    return _concepts_of(generator)[0]


def _concepts_of(generator: str) -> tuple[int, ConceptFactory]:
    try:
        return _CONCEPTS[generator]
    except KeyError:
        known = ", ".join(GENERATORS)
        raise SourceError(f"unknown generator {generator!r}; choose one of: {known}") from None


def validate_drift_at(
    drift_at: Sequence[int], count: int | None = None, width: int = 0
) -> tuple[int, ...]:
    """Check the drift points (and the gradual changes' ``width``); return them as a tuple.

    >>> validate_drift_at([10, 20], count=30)
    (10, 20)
    >>> validate_drift_at([20, 10])
    Traceback (most recent call last):
    ...
    stream.tools.generators.SourceError: drift points must be strictly increasing, got [20, 10]
    """
    points = tuple(drift_at)
    for point in points:
        if isinstance(point, bool) or not isinstance(point, int):
            raise SourceError(f"drift point {point!r} is not an integer event index")
        if point <= 0:
            raise SourceError(f"drift point {point} must be positive (an event index after 0)")
        if count is not None and point >= count:
            raise SourceError(f"drift point {point} is not before the end of the stream ({count})")
    if any(b <= a for a, b in itertools.pairwise(points)):
        raise SourceError(f"drift points must be strictly increasing, got {list(points)}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 0:
        raise SourceError(f"drift width must be a whole number of events >= 0, got {width!r}")
    if width and any(b - a < width for a, b in itertools.pairwise(points)):
        raise SourceError(f"gradual changes of {width} events overlap: drift points {list(points)}")
    return points


def concept_stream(
    generator: str,
    *,
    seed: int,
    drift_at: Sequence[int] = (),
    count: int | None = None,
    drift_width: int = 0,
) -> Iterator[Pair]:
    """Yield ``count`` events (forever if None) of ``generator``, changing concept at each drift.

    Event ``drift_at[k]`` is the first event of concept ``(k + 1) % n`` where ``n`` is
    the generator's number of concepts, so two neighbouring segments always differ.
    With ``drift_width`` W > 0 each change is gradual: event ``K + j`` (0 <= j < W) comes
    from the new concept with probability (j + 1) / (W + 1), else from the old one (a
    linear ramp, drawn from a random stream of its own, so W = 0 is the abrupt stream).
    Arguments are checked here, before the first event is asked for.

    >>> abrupt = list(concept_stream("sea", seed=7, drift_at=[50], count=300))
    >>> gradual = list(concept_stream("sea", seed=7, drift_at=[50], count=300, drift_width=100))
    >>> abrupt[:50] == gradual[:50], abrupt[50:] == gradual[50:]
    (True, False)
    """
    n_concepts, factory = _concepts_of(generator)
    points = validate_drift_at(drift_at, count, drift_width)
    if count is not None and count < 0:
        raise SourceError(f"count must not be negative, got {count}")
    return _concept_events(factory, n_concepts, seed, points, count, drift_width)


def _concept_events(
    factory: ConceptFactory,
    n_concepts: int,
    seed: int,
    points: tuple[int, ...],
    count: int | None,
    width: int = 0,
) -> Iterator[Pair]:
    iterators: dict[int, Iterator[tuple[dict[Any, Any], Any]]] = {}
    segment = 0
    indices = range(count) if count is not None else itertools.count()
    # A string seed is hashed the same way in every process (random.seed's version 2).
    ramp = random.Random(f"streamlearn/gradual/{seed}")
    for i in indices:
        if segment < len(points) and i == points[segment]:
            segment += 1
        concept = segment % n_concepts
        if width and segment and i - points[segment - 1] < width:
            into = i - points[segment - 1] + 1  # events into the change, 1..W
            if ramp.random() >= into / (width + 1):
                concept = (segment - 1) % n_concepts  # still the old concept
        if concept not in iterators:
            iterators[concept] = iter(factory(concept, concept_seed(seed, concept)))
        yield next(iterators[concept])


def concept_at(index: int, drift_at: Sequence[int], n_concepts: int) -> int:
    """Concept index that event ``index`` comes from (the rule :func:`concept_stream` uses).

    >>> [concept_at(i, [2, 4], 3) for i in range(6)]
    [0, 0, 1, 1, 2, 2]
    """
    passed = sum(1 for point in drift_at if point <= index)
    return passed % n_concepts


# ----------------------------------------------------------------------------- files


def guess_format(path: Path) -> FileFormat:
    """File format from the extension: ``.csv`` or ``.jsonl``/``.ndjson``/``.json``."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise SourceError(f"cannot tell the format of {path} from its extension; say 'csv' or 'jsonl'")


def parse_cell(text: str) -> float | str:
    """A CSV cell as a float when it reads as a finite number, else the text.

    >>> parse_cell("1.5"), parse_cell(" 2 "), parse_cell("red")
    (1.5, 2.0, 'red')
    """
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def parse_label(text: str) -> Label:
    """A CSV label: an int when it is a whole number, None when empty, else the text.

    Events carry class labels (bool, int or string): ``"1"`` and ``"1.0"`` are the
    class ``1``, and any other text, ``"0.5"`` included, is a class named by that text.

    >>> parse_label("1"), parse_label("1.0"), parse_label(""), parse_label("spam")
    (1, 1, None, 'spam')
    """
    text = text.strip()
    if not text:
        return None
    value = parse_cell(text)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return text


def file_stream(
    path: str | Path,
    *,
    label_column: str | None = None,
    fmt: FileFormat | None = None,
    number_labels: bool = False,
) -> Iterator[Pair]:
    """Yield ``(features, label)`` from a CSV or JSON-lines file.

    CSV: the header names the columns; ``label_column`` (default ``"label"``) is the
    label, every other non-empty cell a feature, as a float where it parses.
    JSON lines: each line either a canonical event ``{"features": {...}, "label": y}``
    or a flat object whose ``label_column`` key is the label. Missing values (empty
    cells, null, NaN) are left out of the features, as River expects.
    Labels are classes, or with ``number_labels`` numbers (a regression's targets, as
    floats); a missing label leaves the event unlabelled.
    """
    path = Path(path)
    fmt = fmt or guess_format(path)
    if fmt not in ("csv", "jsonl"):
        raise SourceError(f"unknown file format {fmt!r}; use 'csv' or 'jsonl'")
    if not path.is_file():
        raise SourceError(f"no such file: {path}")
    column = label_column or "label"
    label = number_label if number_labels else None
    if fmt == "csv":
        return _csv_events(path, column, label)
    return _jsonl_events(path, column, label)


#: Reads a label (a CSV cell's text or a JSON value, and where it is) as a number.
NumberLabel = Callable[[Any, str], "float | None"]


def number_label(value: Any, where: str) -> float | None:
    """A regression's target: a finite number (from JSON or a CSV cell's text), None
    when missing.

    >>> number_label("2.5", "f:2"), number_label(3, "f:3"), number_label("", "f:4")
    (2.5, 3.0, None)
    """
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
        parsed = parse_cell(value)
        if isinstance(parsed, float):
            return parsed
    elif value is None:
        return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        return number if math.isfinite(number) else None
    raise SourceError(f"{where}: label {value!r} is not a number (--number-labels)")


def _csv_events(path: Path, column: str, label: NumberLabel | None) -> Iterator[Pair]:
    handle = path.open(newline="", encoding="utf-8")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(handle, delimiter=delimiter)
    header = reader.fieldnames or []
    if column not in header:
        handle.close()
        raise SourceError(f"{path}: no label column {column!r}; columns are {list(header)}")
    return _csv_rows(handle, reader, column, label, path)


def _csv_rows(
    handle: Any, reader: csv.DictReader[str], column: str, number: NumberLabel | None, path: Path
) -> Iterator[Pair]:
    with handle:
        for row in reader:
            text = row.get(column) or ""
            where = f"{path}:{reader.line_num}"
            label = parse_label(text) if number is None else number(text, where)
            features = {
                name: parse_cell(text)
                for name, text in row.items()
                if name != column and name is not None and text not in (None, "")
            }
            yield features, label


def _jsonl_events(path: Path, column: str, label: NumberLabel | None) -> Iterator[Pair]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield _json_pair(line, column, f"{path}:{number}", label or _label)


def _json_pair(line: str, column: str, where: str, read_label: Callable[[Any, str], Label]) -> Pair:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise SourceError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if isinstance(obj.get("features"), dict):
        return _clean_features(obj["features"], where), read_label(obj.get("label"), where)
    if column not in obj:
        raise SourceError(f"{where}: no label key {column!r} and no 'features' object")
    features = {k: v for k, v in obj.items() if k != column}
    return _clean_features(features, where), read_label(obj[column], where)


def _clean_features(features: dict[str, Any], where: str) -> Features:
    cleaned: Features = {}
    for name, value in features.items():
        value = _scalar(value, where)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue  # missing value: River models skip absent features
        cleaned[name] = value
    return cleaned


def _label(value: Any, where: str) -> Label:
    label = _scalar(value, where)
    if not isinstance(label, float):
        return label
    if not math.isfinite(label):
        return None  # a NaN label is a missing label: the event is unlabelled
    if label.is_integer():
        return int(label)  # 1.0 is the class 1
    raise SourceError(
        f"{where}: label {label!r} is not a class (bool, int or string); for a regression's "
        "numbers, produce with --number-labels"
    )


def _scalar(value: Any, where: str) -> bool | int | float | str | None:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise SourceError(f"{where}: value {value!r} is not a number, string, bool or null")
