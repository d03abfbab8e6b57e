"""The Grafana dashboard is well formed and speaks only the metric contract.

The contract is the metric table of docs/metrics.md; derived series must
be recording rules of monitoring/prometheus/rules/recording.yml.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.dashboard import (
    DASHBOARD,
    RULE_FILES,
    annotation_expressions,
    dashboard_expressions,
    iter_panels,
    load_dashboard,
    metric_names,
    rule_expressions,
    substitute_variables,
    template_variables,
)

REPO = Path(__file__).resolve().parents[2]
ARCHITECTURE = REPO / "docs" / "metrics.md"
RECORDING = REPO / "monitoring" / "prometheus" / "rules" / "recording.yml"
STANDARD = frozenset({"up"})
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# What the issue asks the dashboard to show, by the contract metric behind it.
REQUIRED = frozenset(
    {
        "streamlearn_accuracy",
        "streamlearn_adwin_width",
        "streamlearn_drifts_total",
        "streamlearn_model_resets_total",
        "streamlearn_retrains_total",
        "streamlearn_events_total",
        "streamlearn_processing_seconds",
        "streamlearn_end_to_end_latency_seconds",
        "streamlearn_consumer_lag",
        "streamlearn_dead_letters_total",
        "streamlearn_last_checkpoint_timestamp_seconds",
        "streamlearn_model_version",
        # Issue 10: memory, CPU and model size with its bound.
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "streamlearn_model_bytes",
        "streamlearn_model_bytes_limit",
        # Issue 13: regression's errors, and the no-change baseline next to the model's scores.
        "streamlearn_mae",
        "streamlearn_rmse",
        "streamlearn_baseline_accuracy",
        "streamlearn_baseline_mae",
    }
)


@cache
def contract() -> dict[str, tuple[str, str]]:
    """Metric name -> (type, labels column) from the tables in docs/metrics.md: ours, and
    those of prometheus_client's standard process and GC collectors."""
    # The labels column escapes its pipes (outcome=learned\|predicted\|...).
    row = r"^\| `((?:streamlearn|process|python)_\w+)` \| (\w+) \| ((?:[^|\\]|\\.)*) \|"
    rows = re.findall(row, ARCHITECTURE.read_text("utf-8"), re.M)
    assert len(rows) >= 10, "metric table not found in docs/metrics.md"
    return {name: (kind, labels.strip()) for name, kind, labels in rows}


@cache
def exported_series() -> dict[str, str]:
    """Series name as scraped -> contract metric it belongs to."""
    series = {}
    for name, (kind, _) in contract().items():
        series[name] = name
        if kind == "histogram":
            series.update({name + suffix: name for suffix in HISTOGRAM_SUFFIXES})
    return series


@cache
def recording_rules() -> dict[str, str]:
    """Recorded series name -> its expression."""
    with open(RECORDING, encoding="utf-8") as f:
        groups = yaml.safe_load(f)["groups"]
    return {rule["record"]: rule["expr"] for group in groups for rule in group["rules"]}


def underlying_metrics(expr: str) -> set[str]:
    """Contract metrics an expression reads, through recording rules."""
    series, recorded = exported_series(), recording_rules()
    found: set[str] = set()
    for name in metric_names(expr):
        if name in recorded:
            found |= underlying_metrics(recorded[name])
        elif name in series:
            found.add(series[name])
    return found


def has_topic_labels(metric: str) -> bool:
    labels = contract()[metric][1]
    return "topic" in labels and "partition" in labels


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard(DASHBOARD)


@pytest.fixture(scope="module")
def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list(iter_panels(dashboard))


def test_dashboard_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "streamlearn" and dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41


def test_every_panel_queries_prometheus(panels: list[dict[str, Any]]) -> None:
    assert len(panels) >= 12
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == "prometheus", panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]


def test_panels_have_unique_ids_and_do_not_overlap(dashboard: dict[str, Any]) -> None:
    everything = dashboard["panels"]
    ids = [panel["id"] for panel in everything]
    assert len(set(ids)) == len(ids)
    cells: set[tuple[int, int]] = set()
    for panel in everything:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) >= {"topic", "partition"}
    for name in ("topic", "partition"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == "prometheus"
        assert variable["includeAll"] and variable["multi"]
        query = variable["definition"]
        assert query == variable["query"]["query"]
        match = re.fullmatch(r"label_values\((\w+)(\{.*\})?, (\w+)\)", query)
        assert match and match.group(3) == name, query
        assert has_topic_labels(match.group(1))


def test_every_metric_is_in_the_contract_or_recorded() -> None:
    known = set(exported_series()) | set(recording_rules()) | STANDARD
    expressions = (
        dashboard_expressions(DASHBOARD)
        + annotation_expressions(DASHBOARD)
        + rule_expressions(RULE_FILES)
    )
    assert len(expressions) >= 30
    for expr in expressions:
        names = metric_names(expr)
        assert names, f"no metric in {expr}"
        assert names <= known, f"{sorted(names - known)} in {expr} are not contract metrics"


def test_recording_rules_read_only_the_contract() -> None:
    series = set(exported_series()) | STANDARD
    for name, expr in recording_rules().items():
        assert metric_names(expr) <= series, name


def test_dashboard_shows_everything_the_issue_asks_for() -> None:
    shown: set[str] = set()
    for expr in dashboard_expressions(DASHBOARD):
        shown |= underlying_metrics(expr)
    assert REQUIRED - shown == set()


def test_drifts_are_annotations(dashboard: dict[str, Any]) -> None:
    annotations = [a for a in dashboard["annotations"]["list"] if a.get("expr")]
    drift = [a for a in annotations if "streamlearn_drifts_total" in metric_names(a["expr"])]
    assert drift and drift[0]["enable"]
    for annotation in annotations:
        assert annotation["datasource"]["uid"] == "prometheus"


def test_partitioned_panels_follow_the_template_variables(
    dashboard: dict[str, Any], panels: list[dict[str, Any]]
) -> None:
    raw = [target["expr"] for panel in panels for target in panel["targets"]]
    raw += [a["expr"] for a in dashboard["annotations"]["list"] if a.get("expr")]
    for expr in raw:
        if any(has_topic_labels(metric) for metric in underlying_metrics(expr)):
            assert 'topic=~"$topic"' in expr and 'partition=~"$partition"' in expr, expr


def test_substituted_expressions_have_no_grafana_variables() -> None:
    for expr in dashboard_expressions(DASHBOARD) + annotation_expressions(DASHBOARD):
        assert "$" not in expr and "[[" not in expr, expr
    variables = template_variables(load_dashboard(DASHBOARD))
    assert (
        substitute_variables(
            'sum(rate(streamlearn_events_total{topic="$topic"}[$__rate_interval]))', variables
        )
        == 'sum(rate(streamlearn_events_total{topic=~".+"}[1m]))'
    )


def test_dashboard_expressions_parse_with_promtool(tmp_path: Path) -> None:
    """promtool parses every dashboard query, offered to it as a recording rule."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed: run `make prometheus` (Debian package prometheus)")
    exprs = dashboard_expressions(DASHBOARD) + annotation_expressions(DASHBOARD)
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout
