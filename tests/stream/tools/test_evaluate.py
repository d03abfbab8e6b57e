"""``streamlearn evaluate``: the daemon's loop run offline, and the figures read from it.

That its figures equal a real daemon's on a real broker is
tests/integration/test_evaluate_daemon.py; here, that they are the loop's own (the
learner's score, its run log, its published predictions) whatever the batch sizes, and
what the command prints.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from stream.cli import build_parser, main
from stream.daemon.offline import run_offline
from stream.settings import RunSettings
from stream.tools.evaluate import Scoring, build_stream, evaluate, figures_of
from stream.tools.evaluate_args import OFFLINE_IGNORED
from stream.tools.produce import SourceOptions

# A stream on which the default model drifts once and a retrain is decided (promoted).
STAGGER = SourceOptions(count=3_000, generator="stagger", seed=1, drift_at=(1_500,))
# Two drifts; the second retrain replays 704 events, more than a poll leaves behind it.
TWO_CHANGES = SourceOptions(count=6_000, generator="stagger", seed=1, drift_at=(2_000, 4_000))


def settings(**values: Any) -> RunSettings:
    base = {"bootstrap_servers": "offline", "topic": "t", "checkpoint_store": "none"}
    return RunSettings(**{**base, **values})


def without_times(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in line.items() if k != "time"} for line in lines]


def test_the_figures_are_the_loops_own_and_do_not_depend_on_batch_sizes(tmp_path: Path) -> None:
    config = settings(drift_action="retrain")
    result = evaluate(TWO_CHANGES, config, tmp_path / "a.jsonl")
    figures = result.figures
    kinds = [line["kind"] for line in figures.log]
    assert kinds == ["drift", "retrain"] * 2, figures.log
    # The overall score is the learner's; scoring its published predictions agrees exactly.
    assert figures.overall == result.run.learner.cumulative.get()
    scoring = Scoring(result.stream, result.run.predictions(), "accuracy")
    assert figures.scored == len(scoring.scored) == result.run.learner.cumulative.total
    assert scoring.from_index(0, len(scoring.scored)).value == pytest.approx(figures.overall)
    # Polls of 37 or 1,000 records and replay reads of 23 cut the work elsewhere: the
    # same figures (a replay ends before any held-back record is served).
    for per_poll, per_read in ((37, 23), (1_000, 23)):
        other = run_offline(config, result.stream.records, tmp_path / f"{per_poll}.jsonl",
                            records_per_poll=per_poll, records_per_read=per_read)  # fmt: skip
        again = figures_of(other, result.stream, figures.source, config, changes=(2_000, 4_000))
        assert again.overall == figures.overall
        assert without_times(again.log) == without_times(figures.log)
        assert again.after_drifts == figures.after_drifts
        assert again.after_changes == figures.after_changes


def test_windows_after_a_drift_and_after_the_change(tmp_path: Path) -> None:
    figures = evaluate(STAGGER, settings(drift_action="reset"), tmp_path / "log.jsonl",
                       windows=(200, 2_000)).figures  # fmt: skip
    [change] = figures.after_changes
    assert change["index"] == change["offset"] == 1_500
    assert [w["size"] for w in change["windows"]] == [200, 2_000]
    # The stream ends 3,000 events in: a window reaching past the end is cut short there.
    assert [w["events"] for w in change["windows"]] == [200, 1_500]
    drift = figures.after_drifts[0]
    assert drift["offset"] == figures.log[0]["offset"] > 1_500
    assert drift["windows"][1]["events"] == 3_000 - 1 - drift["offset"]
    assert all(0.0 <= w["value"] <= 1.0 for w in drift["windows"] + change["windows"])


def test_late_labels_are_scored_where_they_arrive(tmp_path: Path) -> None:
    options = SourceOptions(count=1_000, generator="sea", seed=2, label_delay=50)
    result = evaluate(options, settings(), tmp_path / "log.jsonl")
    stream = result.stream
    assert len(stream.records) == 2_000  # every event, then its label as a record of its own
    assert stream.events[0][:2] == (0, 50)  # the label of event 0 is sent before event 50
    scoring = Scoring(stream, result.run.predictions(), "accuracy")
    assert result.figures.scored == result.run.learner.cumulative.total == len(scoring.scored)
    assert scoring.from_index(0, 1_000).value == pytest.approx(result.figures.overall)


def test_a_regression_reports_its_mae(tmp_path: Path) -> None:
    options = SourceOptions(count=1_500, generator="friedman-drift", seed=3, drift_at=(1_000,))
    result = evaluate(options, settings(model="linear_model.LinearRegression"), tmp_path / "l")
    figures = result.figures
    assert figures.metric == "mae"
    scoring = Scoring(result.stream, result.run.predictions(), "mae")
    whole = scoring.from_index(0, figures.scored).value
    assert whole is not None and math.isclose(whole, figures.overall or 0.0, rel_tol=1e-9)
    assert figures.after_changes[0]["windows"][0]["value"] > 0


def test_a_challenger_that_takes_over_is_in_the_decision_log(tmp_path: Path) -> None:
    options = SourceOptions(count=3_000, generator="sea", seed=4)
    config = settings(
        model="dummy.PriorClassifier()",
        challengers=("lr=preprocessing.StandardScaler() | linear_model.LogisticRegression()",),
        challenger_window=500,
    )
    figures = evaluate(options, config, tmp_path / "log.jsonl").figures
    [switch] = [line for line in figures.log if line["kind"] == "switch"]
    assert switch["model"] == "lr" and switch["offset"] == 499
    assert switch["challenger_accuracy"] > switch["serving_accuracy"]


def test_a_file_is_evaluated_as_produce_would_replay_it(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("a,b,label\n" + "".join(f"{i % 7},{i % 3},{i % 2}\n" for i in range(400)))
    options = SourceOptions(file=path)
    stream = build_stream(options, "rows")
    assert len(stream.records) == 400
    assert json.loads(stream.records[3].value)["features"] == {"a": 3.0, "b": 0.0}
    figures = evaluate(options, settings(topic="rows"), tmp_path / "log.jsonl").figures
    assert figures.after_changes == []  # a file has no known change point
    assert figures.events == 400


@pytest.fixture
def no_settings_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command reads STREAMLEARN_* as run does (and refuses unknown ones)."""
    for name in list(os.environ):
        if name.startswith("STREAMLEARN_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_settings_in_env")
def test_the_command_prints_figures_json_and_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png, kept = tmp_path / "report.png", tmp_path / "kept.jsonl"
    common = ["evaluate", "--generator", "stagger", "--seed", "1", "--count", "3000",
              "--drift-at", "1500", "--drift-action", "retrain"]  # fmt: skip
    assert main([*common, "--report", str(png), "--event-log", str(kept)]) == 0
    text = capsys.readouterr().out
    assert "accuracy 0." in text and "after the change at event 1,500" in text
    assert "retrain" in text and f"report written to {png}" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(json.loads(line)["kind"] == "drift" for line in kept.read_text().splitlines())
    assert main([*common, "--json", "--window", "500"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["settings"]["drift_action"] == "retrain"
    assert [line["kind"] for line in figures["log"]] == ["drift", "retrain"]
    assert figures["after_changes"][0]["windows"][0]["size"] == 500


@pytest.mark.usefixtures("no_settings_in_env")
def test_a_model_that_does_not_wait_for_its_fits_is_warned_about(
    capsys: pytest.CaptureFixture[str],
) -> None:
    eager = "eager=sklearn(refit_every=100, refit_lag=50, wait=False):naive_bayes.GaussianNB"
    common = ["evaluate", "--generator", "sea", "--seed", "1", "--count", "300"]
    assert main([*common, "--challenger", eager]) == 0
    warned = capsys.readouterr().err
    assert "warning: eager has wait=False" in warned and "wait=True" in warned
    assert main([*common, "--challenger", eager.replace("wait=False", "wait=True")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_the_options_are_run_s_learning_settings(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    evaluate_parser = parser._subparsers._group_actions[0].choices["evaluate"]  # type: ignore[union-attr]
    offered = {action.dest for action in evaluate_parser._actions}
    fields = set(RunSettings.model_fields)
    assert fields >= OFFLINE_IGNORED  # every name left out is a setting
    assert {"model", "drift_action", "adwin_delta", "retrain_holdout_events"} <= offered
    assert not (OFFLINE_IGNORED & offered)
    assert fields - OFFLINE_IGNORED - {"checkpoint_key"} <= offered
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--count", "5", "--bootstrap-servers", "h:9092"])
    assert "--bootstrap-servers" in capsys.readouterr().err


@pytest.mark.usefixtures("no_settings_in_env")
def test_contradictory_sources_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--generator", "sea"]) == 2  # a generator needs a count
    assert "count is required" in capsys.readouterr().err
    assert main(["evaluate", "--count", "10", "--drift-at", "5", "--drift-width", "9",
                 "--drift-at", "8"]) == 2  # fmt: skip
    assert "overlap" in capsys.readouterr().err
