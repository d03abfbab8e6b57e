"""Readiness follows the broker's answers, not just its open connections."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from stream.daemon.app import run_daemon
from stream.kafka.tansu import EmbeddedBroker
from stream.settings import load_settings
from tests.integration.kafka_helpers import create_topic, daemon_settings, frozen, sample, send_raw
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

TOPIC = "ready"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of the test's own, since it is frozen."""
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as started:
        yield started


def events(start: int, count: int) -> list[tuple[bytes | None, bytes | None]]:
    return [
        (None, json.dumps({"features": {"x": i % 7}, "label": i % 2 == 0}).encode())
        for i in range(start, start + count)
    ]


def test_a_frozen_broker_makes_the_daemon_not_ready_until_it_answers_again(
    broker: EmbeddedBroker,
) -> None:
    bootstrap = broker.bootstrap_servers
    create_topic(bootstrap, TOPIC)
    send_raw(bootstrap, TOPIC, events(0, 200))
    registry = CollectorRegistry()
    # Idle stop well past the freeze, so the daemon ends by itself after the last records.
    settings = load_settings(daemon_settings(bootstrap, TOPIC, stop_after_idle=15), environ={})
    result: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: result.update(code=run_daemon(settings, registry=registry,
                                                     handle_signals=False)),
        daemon=True,
    )
    thread.start()

    def learned() -> float:
        return sample(registry, "streamlearn_events_total", topic=TOPIC, partition=0,
                      outcome="learned")

    def ready() -> float:
        return sample(registry, "streamlearn_ready")

    wait_until(lambda: learned() >= 200 and ready() == 1, 60, "200 events learned")
    with frozen(broker):
        # Its TCP connections stay open; only the unanswered heartbeats tell.
        wait_until(lambda: ready() == 0, 20, "readiness to drop while the broker is frozen")
    wait_until(lambda: ready() == 1, 60, "readiness to come back once the broker answers")
    send_raw(bootstrap, TOPIC, events(200, 100))
    wait_until(lambda: learned() >= 300, 60, "the events sent after the freeze")
    thread.join(timeout=90)
    assert not thread.is_alive() and result.get("code") == 0
