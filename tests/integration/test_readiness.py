"""Readiness follows the broker's answers, not just its open connections.

On Tansu and on Apache Kafka, each time on the spare broker of the kind (conftest.py),
since the test freezes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream.kafka.broker_process import BrokerProcess
from tests.integration.daemon_process import DaemonProcess, daemons
from tests.integration.kafka_helpers import create_topic, frozen, send_raw

pytestmark = pytest.mark.integration


def events(start: int, count: int) -> list[tuple[bytes | None, bytes | None]]:
    return [
        (None, json.dumps({"features": {"x": i % 7}, "label": i % 2 == 0}).encode())
        for i in range(start, start + count)
    ]


def test_a_frozen_broker_makes_the_daemon_not_ready_until_it_answers_again(
    spare_broker: BrokerProcess, topic_name: str, tmp_path: Path
) -> None:
    bootstrap = spare_broker.bootstrap_servers
    create_topic(bootstrap, topic_name)
    send_raw(bootstrap, topic_name, events(0, 200))
    # Ended by SIGTERM once it learned the last events: no idle stop to wait for (and none
    # that could end it while the broker is frozen or the group is joined again).
    daemon = DaemonProcess(
        bootstrap, topic_name, tmp_path / "daemon.log", {"state-dir": tmp_path / "state"}
    )

    def learned() -> float:
        return daemon.metric_sum("streamlearn_events_total", partition=0, outcome="learned")

    def ready() -> float:
        return daemon.metric("streamlearn_ready")

    with daemons(daemon):
        daemon.start()
        daemon.wait_until(lambda: learned() >= 200 and ready() == 1, 60, "200 events learned")
        with frozen(spare_broker):
            # Its TCP connections stay open; only the unanswered heartbeats tell.
            daemon.wait_until(
                lambda: ready() == 0, 20, "readiness to drop while the broker is frozen"
            )
        daemon.wait_until(
            lambda: ready() == 1, 60, "readiness to come back once the broker answers"
        )
        send_raw(bootstrap, topic_name, events(200, 100))
        daemon.wait_until(lambda: learned() >= 300, 60, "the events sent after the freeze")
        assert daemon.terminate() == 0
