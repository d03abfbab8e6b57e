"""StreamlearnAccuracyLow fires in a real Prometheus when a partition's accuracy collapses,
and not for a healthy partition beside it.

One daemon (``python -m stream run``) learns one topic with two partitions: partition 0
holds a SEA stream a logistic regression learns well, partition 1 the same features
with coin-flip labels, which no model can beat. The shipped alert rule runs with its
``for:`` shortened in a temporary copy of alerts.yml; threshold and expression are
left as shipped.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaProducer
from river.datasets import synth

from monitoring.dashboard import RULE_FILES
from stream.tools.produce import encode_event
from tests.integration.daemon_process import DaemonProcess
from tests.integration.kafka_helpers import create_topic
from tests.monitoring.prometheus_server import PrometheusServer, free_port
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.prometheus, pytest.mark.timeout(150)]

ALERT = "StreamlearnAccuracyLow"
LR = "preprocessing.StandardScaler | linear_model.LogisticRegression"
SHORT_FOR = "5s"
EVENTS = 4_000  # per partition
CHUNK = 250
CHUNK_EVERY_S = 0.25  # 1,000 events/s per partition: the stream spans several scrapes
FIRE_WITHIN_S = 60.0
HEALTHY, COLLAPSED = 0, 1


def shortened_alerts(directory: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of alerts.yml with the accuracy alert's ``for`` shortened; returns the rule too."""
    (alerts_path,) = [path for path in RULE_FILES if path.name == "alerts.yml"]
    document = yaml.safe_load(alerts_path.read_text("utf-8"))
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    (rule,) = [rule for rule in rules if rule.get("alert") == ALERT]
    shipped = rule["for"]
    rule["for"] = SHORT_FOR
    copy = directory / "alerts.yml"
    copy.write_text(yaml.safe_dump(document, sort_keys=False))
    return copy, {**rule, "for": shipped}


def threshold_of(rule: dict[str, Any]) -> float:
    """The accuracy threshold in the alert expression (``...{window="rolling"} < X``)."""
    match = re.search(r'streamlearn_accuracy\{window="rolling"\}\s*<\s*([0-9.]+)', rule["expr"])
    assert match, rule["expr"]
    return float(match.group(1))


def sea_events() -> Iterator[bytes]:
    for seq, (x, y) in enumerate(synth.SEA(variant=0, seed=3).take(EVENTS)):
        yield encode_event(f"sea-{seq}", x, y, seq)


def coin_flip_events() -> Iterator[bytes]:
    """SEA-shaped features (three numbers in [0, 10)) with labels that carry no signal."""
    rng = random.Random(11)
    for seq in range(EVENTS):
        x = {i: rng.uniform(0, 10) for i in range(3)}
        yield encode_event(f"coin-{seq}", x, rng.random() < 0.5, seq)


def send_paced(bootstrap: str, topic: str) -> None:
    """Both partitions, a chunk each every ``CHUNK_EVERY_S``, so rates exist between scrapes."""
    streams = {HEALTHY: list(sea_events()), COLLAPSED: list(coin_flip_events())}
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for start in range(0, EVENTS, CHUNK):
            for partition, values in streams.items():
                for value in values[start : start + CHUNK]:
                    producer.send(topic, value=value, partition=partition)
            producer.flush()
            time.sleep(CHUNK_EVERY_S)
    finally:
        producer.close()


def alert_states(prometheus: PrometheusServer, topic: str) -> dict[str, str]:
    """partition -> state (pending or firing) of the accuracy alerts of ``topic``."""
    return {
        a["labels"]["partition"]: a["state"]
        for a in prometheus.alerts()
        if a["labels"].get("alertname") == ALERT and a["labels"].get("topic") == topic
    }


def rolling_accuracy(prometheus: PrometheusServer, topic: str) -> dict[str, float]:
    series = prometheus.series(f'streamlearn_accuracy{{window="rolling", topic="{topic}"}}')
    return {s["metric"]["partition"]: float(s["value"][1]) for s in series}


def test_accuracy_alert_fires_for_the_collapsed_partition_only(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    alerts, rule = shortened_alerts(tmp_path)
    threshold = threshold_of(rule)
    assert rule["for"] != SHORT_FOR  # the shipped duration is what the copy shortens
    create_topic(kafka_bootstrap, topic_name, partitions=2)
    options = {
        "model": LR,
        "drift-action": "none",
        "session-timeout-ms": 6000,
        "stop-after-idle": 300,
    }
    daemon = DaemonProcess(
        kafka_bootstrap, topic_name, tmp_path / "daemon.log", options, port=free_port()
    )
    rules = [path for path in RULE_FILES if path.name != "alerts.yml"] + [alerts]
    with daemon, PrometheusServer(tmp_path / "prometheus", [daemon.target], rules) as prometheus:
        daemon.wait_assigned()
        sender = threading.Thread(target=send_paced, args=(kafka_bootstrap, topic_name))
        sender.start()
        try:
            wait_until(
                lambda: alert_states(prometheus, topic_name).get(str(COLLAPSED)) == "firing",
                FIRE_WITHIN_S,
                "the alert to fire for the collapsed partition",
                every_s=0.5,
                details=lambda: (
                    alert_states(prometheus, topic_name),
                    rolling_accuracy(prometheus, topic_name),
                    daemon.log_tail(15),
                ),
            )
        finally:
            sender.join(timeout=60)
        states = alert_states(prometheus, topic_name)
        accuracy = rolling_accuracy(prometheus, topic_name)
        never_fired = prometheus.series(
            f'max_over_time(ALERTS{{alertname="{ALERT}", topic="{topic_name}", '
            f'partition="{HEALTHY}", alertstate="firing"}}[10m])'
        )
        log = daemon.log_tail(15)

    assert states.get(str(COLLAPSED)) == "firing", (states, accuracy, log)
    # The contrast: the healthy partition is learned, above the threshold, and never fired.
    assert accuracy[str(COLLAPSED)] < threshold < accuracy[str(HEALTHY)], accuracy
    assert str(HEALTHY) not in states, states
    assert never_fired == [], never_fired
    assert daemon.returncode == 0, log  # SIGTERM: finish the batch, commit, exit cleanly
