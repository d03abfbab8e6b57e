"""Every PromQL expression of the dashboard and the rules, against a real Prometheus
scraping real daemons that learn from the broker.

Three daemons run as ``python -m stream run`` subprocesses, each on its own topic: two
classifiers, one resetting and one retraining on drift, so drifts, resets and retrains
all happen, and a regressor (resetting), so the regression panels and rules have data
too; one classifier and the regressor run a challenger, for the per-model panels. They
learn from SEA (and Friedman) streams with abrupt changes, produced at a steady rate
while Prometheus (the project's config and rules, intervals shortened to 1 s)
scrapes them, plus a few undecodable records for the dead-letter series. Then every
expression is sent to ``/api/v1/query``: each must parse, and every dashboard
panel and annotation query must return at least one series.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitoring.dashboard import (
    DASHBOARD,
    RULE_FILES,
    annotation_expressions,
    dashboard_expressions,
    rule_expressions,
)
from stream.tools.produce import ProduceOptions, produce
from tests.integration.daemon_process import DaemonProcess
from tests.integration.kafka_helpers import create_topic, send_raw
from tests.monitoring.prometheus_server import PrometheusServer, free_port
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.prometheus, pytest.mark.timeout(150)]

LR = "preprocessing.StandardScaler | linear_model.LogisticRegression"
REGRESSOR = "preprocessing.StandardScaler | tree.HoeffdingTreeRegressor(grace_period=50)"
# Daemon name -> (model, drift action, generator).
DAEMONS = {
    "reset": (LR, "reset", "sea"),
    "retrain": (LR, "retrain", "sea"),
    "regression": (REGRESSOR, "reset", "friedman-drift"),
}
# A challenger for the per-model panels, of each task.
CHALLENGERS = {
    "reset": "tree=tree.HoeffdingTreeClassifier",
    "regression": "linear=preprocessing.StandardScaler | linear_model.LinearRegression",
}
# 16 s of stream at 1,500 events/s: a drift every 4 s, many scrapes in between.
EVENTS = 24_000
DRIFT_AT = (6_000, 12_000, 18_000)
RATE = 1_500.0
# One record per dead-letter reason the decoder can tell apart from plain bad JSON.
BAD_RECORDS: list[tuple[bytes | None, bytes | None]] = [
    (None, b""),
    (None, b"not json"),
    (None, b"[1, 2]"),
    (None, b'{"label": 1}'),
    (None, b'{"features": {"x": [1]}, "label": 1}'),
    (None, b'{"features": {"x": 1.0}, "label": [1]}'),
] * 5
# After the last produced event: at most this long for every expression to have data.
SETTLE_S = 45.0


@dataclass
class Evaluation:
    """What Prometheus answered for one expression."""

    expr: str
    status: str
    error: str
    series: int


def evaluate(prometheus: PrometheusServer, exprs: list[str]) -> list[Evaluation]:
    results = []
    for expr in exprs:
        answer = prometheus.query(expr)
        data = answer.get("data") or {}
        results.append(
            Evaluation(
                expr,
                str(answer.get("status")),
                str(answer.get("error", "")),
                len(data.get("result", [])),
            )
        )
    return results


def problems(evaluations: list[Evaluation], need_data: bool) -> list[str]:
    """One line per expression that failed to parse or, if ``need_data``, returned nothing."""
    lines = []
    for e in evaluations:
        if e.status != "success":
            lines.append(f"does not evaluate ({e.error}): {e.expr}")
        elif need_data and e.series == 0:
            lines.append(f"no series: {e.expr}")
    return lines


def scalar(prometheus: PrometheusServer, expr: str) -> float | None:
    """The value of a query answering one series, else None."""
    result = prometheus.series(expr)
    return float(result[0]["value"][1]) if len(result) == 1 else None


def produce_stream(bootstrap: str, topic: str, seed: int, produced: dict[str, int]) -> None:
    """Bad records first (their series already scraped at 0), then the paced stream of
    the daemon's generator; records in ``produced`` how many records were delivered."""
    bad = send_raw(bootstrap, topic, BAD_RECORDS)
    generator = DAEMONS[topic.rsplit("-", 1)[1]][2]
    summary = produce(
        ProduceOptions(
            bootstrap,
            topic,
            count=EVENTS,
            seed=seed,
            generator=generator,
            drift_at=DRIFT_AT,
            partitions=1,
            rate=RATE,
        )
    )
    produced[topic] = bad + summary.produced


@pytest.fixture
def daemons(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> Iterator[dict[str, DaemonProcess]]:
    """One daemon per entry of DAEMONS, each on its own topic, stopped (SIGTERM) at the end."""
    started: dict[str, DaemonProcess] = {}
    try:
        for name, (model, action, _) in DAEMONS.items():
            topic = f"{topic_name}-{name}"
            create_topic(kafka_bootstrap, topic)
            options = {
                "model": model,
                "drift-action": action,
                "session-timeout-ms": 6000,
                "predictions-topic": f"{topic}.predictions",
                "dead-letter-topic": f"{topic}.dead-letters",
                "state-dir": tmp_path / f"state-{name}",
                "checkpoint-interval": 1,
                # A safety net only: the fixture stops it long before.
                "stop-after-idle": 300,
            }
            if name in CHALLENGERS:
                options["challenger"] = CHALLENGERS[name]
            log_path = tmp_path / f"daemon-{name}.log"
            daemon = DaemonProcess(kafka_bootstrap, topic, log_path, options, port=free_port())
            started[topic] = daemon.start()
        yield started
    finally:
        for daemon in started.values():
            daemon.shutdown()


def test_every_expression_evaluates_against_live_daemons(
    kafka_bootstrap: str, daemons: dict[str, DaemonProcess], tmp_path: Path
) -> None:
    targets = [daemon.target for daemon in daemons.values()]
    with PrometheusServer(tmp_path / "prometheus", targets) as prometheus:
        for daemon in daemons.values():
            daemon.wait_assigned()
        # Every partition's counters scraped at zero first, so their rise shows in rates.
        assigned = 'count(streamlearn_events_total{outcome="dead_lettered"} == 0)'
        wait_until(
            lambda: scalar(prometheus, assigned) == len(daemons),
            30,
            "every daemon's partitions scraped at zero",
            every_s=0.5,
            details=prometheus.targets_up,
        )
        produced: dict[str, int] = {}
        producers = [
            threading.Thread(target=produce_stream, args=(kafka_bootstrap, topic, seed, produced))
            for seed, topic in enumerate(daemons, start=2)
        ]
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join(timeout=90)
        assert produced == dict.fromkeys(daemons, len(BAD_RECORDS) + EVENTS)

        check_rules_loaded(prometheus)
        check_every_expression(prometheus, daemons)


def check_every_expression(prometheus: PrometheusServer, daemons: dict[str, DaemonProcess]) -> None:
    panels = dashboard_expressions(DASHBOARD)
    annotations = annotation_expressions(DASHBOARD)
    rules = rule_expressions(RULE_FILES)
    assert panels and annotations and rules

    # The daemons may still be catching up and the 1 s rule evaluations lag behind
    # the scrapes: poll until everything has data, bounded.
    def all_answered() -> list[str]:
        found = problems(evaluate(prometheus, panels + annotations), need_data=True)
        found += problems(evaluate(prometheus, rules), need_data=False)
        return found

    wait_until(
        lambda: not all_answered(),
        SETTLE_S,
        "every expression to answer",
        every_s=1.0,
        details=lambda: "\n".join(all_answered()) + "\n" + logs(daemons),
    )
    check_things_happened(prometheus, list(daemons))


def check_things_happened(prometheus: PrometheusServer, topics: list[str]) -> None:
    """The panels show a real run: rates computed, drifts, decisions, dead letters."""
    (reset_topic,) = [topic for topic in topics if topic.endswith("-reset")]
    (retrain_topic,) = [topic for topic in topics if topic.endswith("-retrain")]
    (regression_topic,) = [topic for topic in topics if topic.endswith("-regression")]
    expected = {
        # Rates over the 1 s scrapes: records flowed while Prometheus watched.
        'streamlearn:events:rate1m{outcome="learned"} > 0': set(topics),
        'streamlearn:events:rate1m{outcome="dead_lettered"} > 0': set(topics),
        "sum by (topic) (streamlearn_drifts_total) > 0": set(topics),
        "sum by (topic) (streamlearn_model_resets_total) > 0": {reset_topic, regression_topic},
        # Each task exports its own scores, and a baseline margin both.
        "streamlearn_accuracy": {reset_topic, retrain_topic},
        "streamlearn_mae": {regression_topic},
        "streamlearn:baseline_margin": set(topics),
        "sum by (topic) (streamlearn_retrains_total) > 0": {retrain_topic},
        "sum by (topic) (streamlearn_checkpoints_total) > 0": set(topics),
    }

    def missing() -> list[str]:
        found = {expr: {s["metric"].get("topic") for s in prometheus.series(expr)}
                 for expr in expected}  # fmt: skip
        return [f"{expr}: {found[expr]} != {wanted}"
                for expr, wanted in expected.items() if found[expr] != wanted]  # fmt: skip

    # A daemon still catching up under load reaches its drifts later than the scrapes
    # show data: wait, bounded, for what the run must have done.
    wait_until(
        lambda: not missing(),
        SETTLE_S,
        "every daemon's drifts and decisions",
        every_s=1.0,
        details=lambda: "\n".join(missing()),
    )
    dead = prometheus.series("streamlearn:dead_letters:rate1m > 0")
    reasons = {s["metric"]["reason"] for s in dead}
    assert {
        "empty_value",
        "not_json",
        "not_an_object",
        "missing_features",
        "bad_feature",
        "bad_label",
    } <= reasons


def check_rules_loaded(prometheus: PrometheusServer) -> None:
    """Every rule group of the shipped files is loaded and every rule evaluates cleanly."""
    import yaml

    wanted: dict[str, int] = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text("utf-8"))["groups"]:
            wanted[group["name"]] = len(group["rules"])

    def unhealthy() -> list[str]:
        groups = prometheus.rule_groups()
        found = {g["name"]: len(g["rules"]) for g in groups}
        bad = [] if found == wanted else [f"groups loaded {found}, expected {wanted}"]
        bad += [
            f"{g['name']}/{r['name']}: health {r['health']} {r.get('lastError', '')}"
            for g in groups
            for r in g["rules"]
            if r["health"] != "ok"
        ]
        return bad

    wait_until(
        lambda: not unhealthy(),
        15,
        "every rule group loaded and healthy",
        every_s=0.5,
        details=unhealthy,
    )


def logs(daemons: dict[str, DaemonProcess]) -> str:
    return "\n".join(f"--- {topic}\n{d.log_tail(15)}" for topic, d in daemons.items())
