"""Kafka's own Java clients (from the fetched jars) on both ends, on Apache Kafka.

Events written by Kafka's console producer with each codec (gzip, snappy, lz4, zstd)
are learned, and a line that is no event is dead-lettered; Kafka's console consumer
reads the predictions and the dead letters back, the dead letters' headers included.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stream.kafka.apache import ApacheKafkaBroker, java_command, write_log4j_config
from stream.tools.generators import concept_stream
from stream.tools.produce import encode_event
from tests.integration.kafka_helpers import create_topic, run_until_idle, sample

pytestmark = pytest.mark.integration

CODECS = ("gzip", "snappy", "lz4", "zstd")
PER_CODEC = 300
TOOL_JVM = ("-Xmx256m",)


def console_producer(bootstrap: str, topic: str, codec: str, lines: list[str], log4j: list[str]):
    command = java_command(
        "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", bootstrap,
        "--topic", topic, "--compression-codec", codec,
        jvm_options=(*TOOL_JVM, *log4j),
    )  # fmt: skip
    done = subprocess.run(
        command,
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def console_consumer(
    bootstrap: str, topic: str, count: int, log4j: list[str], *properties: str
) -> list[str]:
    command = java_command(
        "org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", bootstrap,
        "--topic", topic, "--from-beginning", "--max-messages", str(count),
        "--timeout-ms", "30000", *[arg for p in properties for arg in ("--property", p)],
        jvm_options=(*TOOL_JVM, *log4j),
    )  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def test_events_from_the_java_producer_with_each_codec_and_outputs_read_by_the_java_consumer(
    apache_kafka: ApacheKafkaBroker, topic_name: str, tmp_path: Path
) -> None:
    bootstrap = apache_kafka.bootstrap_servers
    log4j = write_log4j_config(tmp_path / "log4j2.properties")
    create_topic(bootstrap, topic_name, 1)
    events = concept_stream("sea", seed=17)
    ids: list[str] = []
    for n, codec in enumerate(CODECS):
        lines = []
        for i in range(PER_CODEC):
            features, label = next(events)
            ids.append(f"{codec}-{i}")
            lines.append(encode_event(ids[-1], features, label, n * PER_CODEC + i).decode())
        lines.append(f"no event, written with {codec}")  # one dead letter per codec
        console_producer(bootstrap, topic_name, codec, lines, log4j)

    predictions, dead = f"{topic_name}.predictions", f"{topic_name}.dead"
    registry = run_until_idle(
        bootstrap,
        topic_name,
        predictions_topic=predictions,
        dead_letter_topic=dead,
        drift_action="none",
    )
    labels = {"topic": topic_name, "partition": 0}
    total = len(CODECS) * PER_CODEC
    assert sample(registry, "streamlearn_events_total", **labels, outcome="learned") == total
    assert sample(registry, "streamlearn_sequence_gaps_total", **labels) == 0
    assert sample(registry, "streamlearn_dead_letters_total", reason="not_json") == len(CODECS)

    values = console_consumer(bootstrap, predictions, total, log4j)
    assert sorted(json.loads(line)["id"] for line in values) == sorted(ids)

    letters = console_consumer(
        bootstrap, dead, len(CODECS), log4j, "print.headers=true", "headers.separator=|"
    )
    assert len(letters) == len(CODECS)
    for n, (line, codec) in enumerate(zip(letters, CODECS, strict=True)):
        headers_text, value = line.split("\t", 1)
        headers = dict(header.split(":", 1) for header in headers_text.split("|"))
        assert value == f"no event, written with {codec}"
        assert headers["streamlearn.reason"] == "not_json"
        assert headers["streamlearn.topic"] == topic_name
        assert headers["streamlearn.partition"] == "0"
        # Each codec's producer wrote PER_CODEC events, then the bad line.
        assert headers["streamlearn.offset"] == str((n + 1) * (PER_CODEC + 1) - 1)
