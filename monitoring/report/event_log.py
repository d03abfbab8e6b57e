"""Read the daemon's JSON-lines run event log into a :class:`RunLog`.

The format is in docs/architecture.md ("Run event log"). Records of an unknown ``kind``
are skipped, so a report from an older release still reads a newer daemon's log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitoring.exceptions import ReportError
from monitoring.report.run import (
    RETRAIN_RESULTS,
    AccuracyPoint,
    DriftPoint,
    PartitionSeries,
    RebuildPoint,
    ResetPoint,
    RetrainPoint,
    RunLog,
)


class _BadRecord(ValueError):
    """One line of the event log does not follow the documented format."""


def _number(value: Any) -> float:
    # bool is an int subclass in Python; true/false is never a figure here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadRecord(f"expected a number, got {value!r}")
    return float(value)


def _integer(value: Any) -> int:
    # Writers may emit counts as floats (ADWIN's width is a float in River); accept 512.0.
    number = _number(value)
    if not number.is_integer():
        raise _BadRecord(f"expected an integer, got {value!r}")
    return int(number)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _BadRecord(f"expected a string, got {value!r}")
    return value


def _get(record: dict[str, Any], name: str, convert: Callable[[Any], Any]) -> Any:
    if name not in record:
        raise _BadRecord(f"missing field {name!r}")
    try:
        return convert(record[name])
    except _BadRecord as error:
        raise _BadRecord(f"field {name!r}: {error}") from None


def _add_accuracy(series: PartitionSeries, record: dict[str, Any], base: dict[str, Any]) -> None:
    series.accuracy.append(
        AccuracyPoint(
            learned=base["learned"],
            time=base["time"],
            cumulative=_get(record, "cumulative", _number),
            rolling=_get(record, "rolling", _number),
        )
    )


def _add_drift(series: PartitionSeries, record: dict[str, Any], base: dict[str, Any]) -> None:
    series.drifts.append(
        DriftPoint(
            **base,
            error_before=_get(record, "error_before", _number),
            error_after=_get(record, "error_after", _number),
            width=_get(record, "width", _integer),
            action=_get(record, "action", _text),
        )
    )


def _add_reset(series: PartitionSeries, record: dict[str, Any], base: dict[str, Any]) -> None:
    series.resets.append(ResetPoint(**base, model_version=_get(record, "model_version", _integer)))


def _add_retrain(series: PartitionSeries, record: dict[str, Any], base: dict[str, Any]) -> None:
    result = _get(record, "result", _text)
    if result not in RETRAIN_RESULTS:
        raise _BadRecord(f"field 'result': expected one of {RETRAIN_RESULTS}, got {result!r}")
    # A regressor's decision carries MAEs (candidate_mae, serving_mae), no accuracies.
    accuracies = "candidate_mae" not in record
    series.retrains.append(
        RetrainPoint(
            **base,
            result=result,
            candidate_accuracy=_get(record, "candidate_accuracy", _number) if accuracies else None,
            serving_accuracy=_get(record, "serving_accuracy", _number) if accuracies else None,
            trained_on=_get(record, "trained_on", _integer),
            evaluated_on=_get(record, "evaluated_on", _integer),
            model_version=_get(record, "model_version", _integer),
        )
    )


def _add_mae(series: PartitionSeries, record: dict[str, Any], base: dict[str, Any]) -> None:
    """A regression's scores: mean absolute errors, drawn where accuracy is."""
    series.metric = "mae"
    _add_accuracy(series, record, base)


def _add_rebuild(series: PartitionSeries, record: dict[str, Any], base: dict[str, Any]) -> None:
    """A rebuild is marked where it ended (its start line has nothing to draw)."""
    if _get(record, "phase", _text) != "end":
        return
    reason, result = _get(record, "reason", _text), _get(record, "result", _text)
    series.rebuilds.append(RebuildPoint(**base, result=result, reason=reason))


_KINDS = {
    "accuracy": _add_accuracy,
    "mae": _add_mae,
    "drift": _add_drift,
    "reset": _add_reset,
    "retrain": _add_retrain,
    "rebuild": _add_rebuild,
}


def _add_line(run: RunLog, line: str) -> None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise _BadRecord(f"not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise _BadRecord("expected a JSON object")
    add = _KINDS.get(_get(record, "kind", _text))
    if add is None:
        return  # a kind from a newer daemon: skip it so old reports keep working
    topic, partition = _get(record, "topic", _text), _get(record, "partition", _integer)
    base = {
        "learned": _get(record, "learned", _integer),
        "time": _get(record, "time", _number),
        "offset": _get(record, "offset", _integer),
    }
    add(run.partition(topic, partition), record, base)


def load_event_log(path: str | Path) -> RunLog:
    """Read a JSON-lines run event log (see docs/architecture.md, "Run event log").

    Blank lines and records of unknown ``kind`` are skipped; any other line that
    does not follow the format raises :class:`ReportError` naming its line number.
    """
    run = RunLog(source=str(path))
    try:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    _add_line(run, line)
                except _BadRecord as error:
                    raise ReportError(f"{path}, line {number}: {error}") from None
    except OSError as error:
        raise ReportError(f"cannot read event log {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ReportError(f"event log {path} is not UTF-8 text: {error}") from None
    return run
