"""``streamlearn demo``: the whole picture on one machine, stopped with one Ctrl-C.

It runs on the embedded Tansu broker (starts in a second), or with ``--broker kafka`` on
Apache Kafka started from its jars (:mod:`stream.kafka.apache`).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from stream.daemon.app import configure_logging, run_daemon
from stream.kafka.admin import ensure_topics
from stream.kafka.apache import ApacheKafkaBroker, kafka_version
from stream.kafka.broker_process import BrokerProcess
from stream.kafka.tansu import EmbeddedBroker
from stream.settings import load_settings

DEMO_TOPIC = "events"
DEMO_EVENTS = 2_000_000
# Abrupt concept changes every 40,000 events: a drift every 20 s at the default rate.
DEMO_DRIFT_EVERY = 40_000
DEMO_DRIFTS = tuple(range(DEMO_DRIFT_EVERY, DEMO_EVENTS, DEMO_DRIFT_EVERY))


def run_demo(metrics_port: int = 9464, rate: float = 2000.0, broker: str = "tansu") -> int:
    """The demo on the embedded Tansu broker, or on Apache Kafka with ``broker="kafka"``."""
    workdir = Path(tempfile.mkdtemp(prefix="streamlearn-demo-"))
    configure_logging("INFO")
    with _start_broker(broker, workdir / "broker.log") as running:
        return _run_on(running.bootstrap_servers, metrics_port, rate, workdir)


def _start_broker(kind: str, log_path: Path) -> BrokerProcess:
    if kind == "kafka":
        print(f"starting Apache Kafka {kafka_version()} (log: {log_path})", flush=True)
        return ApacheKafkaBroker(log_path=log_path)
    print(f"starting the embedded broker (log: {log_path})", flush=True)
    return EmbeddedBroker(log_path=log_path)


def _run_on(bootstrap: str, metrics_port: int, rate: float, workdir: Path) -> int:
    print(f"broker ready on {bootstrap}")
    # Create the topic before anyone subscribes: a broker may auto-create it otherwise,
    # with its own partition count.
    ensure_topics({"bootstrap_servers": bootstrap}, [DEMO_TOPIC])
    producer = _start_producer(bootstrap, rate, workdir / "producer.log")
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
            "bootstrap_servers": bootstrap,
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
