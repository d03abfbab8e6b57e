"""``streamlearn demo``: the whole picture on one machine, stopped with one Ctrl-C."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from stream.daemon.app import configure_logging, run_daemon
from stream.kafka.admin import ensure_topics
from stream.kafka.tansu import EmbeddedBroker
from stream.settings import load_settings

DEMO_TOPIC = "events"
DEMO_EVENTS = 2_000_000
# Abrupt concept changes every 40,000 events: a drift every 20 s at the default rate.
DEMO_DRIFT_EVERY = 40_000
DEMO_DRIFTS = tuple(range(DEMO_DRIFT_EVERY, DEMO_EVENTS, DEMO_DRIFT_EVERY))


def run_demo(metrics_port: int = 9464, rate: float = 2000.0) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="streamlearn-demo-"))
    configure_logging("INFO")
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        print(f"embedded broker on {broker.bootstrap_servers} (log: {workdir / 'broker.log'})")
        # Create the topic before anyone subscribes: a broker may auto-create it otherwise,
        # with its own partition count.
        ensure_topics({"bootstrap_servers": broker.bootstrap_servers}, [DEMO_TOPIC])
        producer = _start_producer(broker.bootstrap_servers, rate, workdir / "producer.log")
        print(
            f"producer: agrawal stream at {rate:.0f} events/s, "
            f"a concept change every {DEMO_DRIFT_EVERY:,} events"
        )
        print(f"metrics:  http://127.0.0.1:{metrics_port}/metrics   health: /healthz")
        print(
            f"event log: {workdir / 'events.jsonl'} "
            f"(then: streamlearn report --event-log {workdir / 'events.jsonl'})"
        )
        print("Ctrl-C stops everything.\n", flush=True)
        settings = load_settings(
            {
                "bootstrap_servers": broker.bootstrap_servers,
                "topic": DEMO_TOPIC,
                "group_id": "streamlearn-demo",
                "model": "tree.HoeffdingTreeClassifier(grace_period=100)",
                "drift_action": "retrain",
                "metrics_port": metrics_port,
                "predictions_topic": f"{DEMO_TOPIC}.predictions",
                "dead_letter_topic": f"{DEMO_TOPIC}.dead-letters",
                "event_log": workdir / "events.jsonl",
                "state_dir": workdir / "state",
                "session_timeout_ms": 6000,
            }
        )
        try:
            return run_daemon(settings, status_interval_s=3.0)
        finally:
            producer.terminate()
            producer.wait(timeout=10)


def _start_producer(bootstrap: str, rate: float, log_path: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "stream",
        "produce",
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        DEMO_TOPIC,
        "--generator",
        "agrawal",
        "--count",
        str(DEMO_EVENTS),
        "--seed",
        "7",
        "--rate",
        str(rate),
        "--partitions",
        "1",
    ]
    for drift in DEMO_DRIFTS:
        command += ["--drift-at", str(drift)]
    with open(log_path, "wb") as log:
        # Its own session, so Ctrl-C reaches only the demo, which stops it in order.
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
