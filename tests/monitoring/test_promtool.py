"""The shipped Prometheus config and rules pass promtool, and every alert is unit-tested.

promtool comes from Debian's ``prometheus`` package (``make prometheus``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.dashboard import PROMETHEUS_CONFIG, RULE_FILES

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "monitoring" / "prometheus"
ALERTS = PROMETHEUS_DIR / "rules" / "alerts.yml"
RECORDING = PROMETHEUS_DIR / "rules" / "recording.yml"
UNIT_TESTS = PROMETHEUS_DIR / "tests" / "alerts_test.yml"
OPERATIONS = REPO / "docs" / "operations.md"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed: run `make prometheus` (Debian package prometheus)")
    return path


def run_promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def rules(path: Path) -> list[dict[str, Any]]:
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in rules(ALERTS)]


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub derives from the headings of a Markdown document."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_rule_files_are_the_ones_the_config_loads() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    loaded = {(PROMETHEUS_CONFIG.parent / name).resolve() for name in config["rule_files"]}
    assert loaded == {path.resolve() for path in RULE_FILES} == {ALERTS, RECORDING}


def test_promtool_check_config(promtool: str) -> None:
    result = run_promtool(promtool, "check", "config", PROMETHEUS_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", RECORDING, ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rule_unit_tests(promtool: str) -> None:
    result = run_promtool(promtool, "test", "rules", UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_tests_catch_a_changed_hold_duration(promtool: str, tmp_path: Path) -> None:
    """Rewriting `for:` (as the live alert test does) keeps the rules valid and is noticed."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    shutil.copy(RECORDING, tmp_path / "rules" / RECORDING.name)
    shutil.copy(UNIT_TESTS, tmp_path / "tests" / UNIT_TESTS.name)
    text = ALERTS.read_text(encoding="utf-8")
    block = re.search(r"- alert: StreamlearnAccuracyLow\n(?:(?!\s+- alert:).*\n)*", text)
    assert block is not None and "for: 10m" in block.group(0)
    shortened = text.replace(block.group(0), block.group(0).replace("for: 10m", "for: 1m"))
    (tmp_path / "rules" / ALERTS.name).write_text(shortened, encoding="utf-8")

    checked = run_promtool(promtool, "check", "rules", tmp_path / "rules" / ALERTS.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run_promtool(promtool, "test", "rules", tmp_path / "tests" / UNIT_TESTS.name)
    assert tested.returncode != 0
    assert "StreamlearnAccuracyLow" in tested.stdout + tested.stderr


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(UNIT_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(alert_names())
    assert len(names) == 10
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown not firing"
    assert (firing | quiet) - names == set(), "unit tests name unknown alerts"


def test_the_unit_tests_load_the_shipped_rule_files() -> None:
    listed = load_yaml(UNIT_TESTS)["rule_files"]
    assert {(UNIT_TESTS.parent / name).resolve() for name in listed} == {ALERTS, RECORDING}


def test_every_alert_has_hold_severity_and_annotations() -> None:
    anchors = github_anchors(OPERATIONS.read_text(encoding="utf-8"))
    for rule in rules(ALERTS):
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        page, _, anchor = notes["runbook_url"].partition("#")
        assert page == "docs/operations.md", name
        assert anchor == name.lower() and anchor in anchors, name


def test_recording_rules_follow_the_naming_convention() -> None:
    names = [rule["record"] for rule in rules(RECORDING)]
    assert names, "no recording rules"
    for name in names:
        assert re.fullmatch(r"streamlearn(:[a-z0-9_]+){1,2}", name), name
