"""Small helpers for tests that talk to the real broker: write raw records, read topics back,
and run the real daemon until it has been idle."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import CollectorRegistry

from stream.daemon.app import run_daemon
from stream.kafka.broker_process import BrokerProcess
from stream.kafka.fetched_records import speed_up_fetches
from stream.settings import load_settings
from tests.waiting import wait_until


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def send_raw(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None]],
    partition: int = 0,
) -> int:
    """Send (key, value) pairs to one partition, in order; returns how many."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    count = 0
    for key, value in records:
        producer.send(topic, key=key, value=value, partition=partition)
        count += 1
    producer.flush()
    producer.close()
    return count


def read_all(
    bootstrap: str,
    topic: str,
    timeout_s: float = 60.0,
    quiet_s: float = 1.0,
    fast_fetches: bool = False,
) -> list[ConsumerRecord]:
    """Every record of ``topic``, in partition then offset order.

    Reads until every partition's position reaches the high watermark reported with the
    fetches (the embedded broker's ListOffsets answer is not the high watermark) and
    nothing new arrived for ``quiet_s``; bounded by ``timeout_s``. With ``fast_fetches``
    the daemon's reader (``stream/kafka/fetched_records.py``) parses the fetches.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    if fast_fetches:
        speed_up_fetches(consumer)
    partitions = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    last_new = time.monotonic()
    while time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=200)
        for recs in batch.values():
            records.extend(recs)
        if batch:
            last_new = time.monotonic()
        caught_up = all(
            consumer.highwater(tp) is not None and consumer.position(tp) >= consumer.highwater(tp)
            for tp in tps
        )
        if caught_up and time.monotonic() - last_new >= quiet_s:
            break
    consumer.close()
    return sorted(records, key=lambda r: (r.partition, r.offset))


def daemon_settings(bootstrap: str, topic: str, **overrides: Any) -> dict[str, Any]:
    """Settings for a test daemon; checkpoints go to a fresh temporary directory."""
    values: dict[str, Any] = {
        "state_dir": tempfile.mkdtemp(prefix="streamlearn-state-"),
        "bootstrap_servers": bootstrap,
        "topic": topic,
        "group_id": f"g-{topic}",
        "metrics_port": 0,
        "metrics_host": "127.0.0.1",
        "stop_after_idle": 2,
        "session_timeout_ms": 2000,
        "log_level": "INFO",
    }
    values.update(overrides)
    return values


def run_until_idle(bootstrap: str, topic: str, **overrides: Any) -> CollectorRegistry:
    """Run the real daemon (composition root and all) until idle; returns its registry."""
    registry = CollectorRegistry()
    settings = load_settings(daemon_settings(bootstrap, topic, **overrides), environ={})
    result: dict[str, Any] = {}

    def target() -> None:
        result["code"] = run_daemon(settings, registry=registry, handle_signals=False)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=240)
    assert not thread.is_alive(), "the daemon did not stop after being idle"
    assert result.get("code") == 0
    return registry


def sample(registry: CollectorRegistry, name: str, **labels: Any) -> float:
    value = registry.get_sample_value(name, {k: str(v) for k, v in labels.items()})
    return 0.0 if value is None else value


@contextlib.contextmanager
def frozen(broker: BrokerProcess) -> Iterator[None]:
    """SIGSTOP the broker process for the block, SIGCONT it afterwards whatever happens.

    Tansu keeps its log in memory, so a real stop would lose every record; a frozen broker
    (Tansu, or Apache Kafka's JVM: broker and controller at once) stops answering, its TCP
    connections open, and comes back with its data."""
    pid = broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        # The signal takes effect when the kernel next schedules the broker: until then it
        # may still answer a request sent right after kill() returned (seen under load).
        wait_until(lambda: _stopped(pid), 10.0, f"broker pid {pid} stopped")
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _stopped(pid: int) -> bool:
    """True once every thread of ``pid`` is stopped (state ``T`` in /proc)."""
    tasks = Path(f"/proc/{pid}/task")
    states = [(task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in tasks.iterdir()]
    return all(state == "T" for state in states)
