"""The producer: pure pieces (pacing, options, encoding) and runs against a real broker."""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from stream.events import Event, decode
from stream.exceptions import SettingsError
from stream.tools.generators import SourceError, concept_stream
from stream.tools.produce import (
    Pacer,
    ProduceOptions,
    ProduceSummary,
    add_produce_arguments,
    encode_event,
    produce,
    run_produce,
    security_from_args,
)

# ------------------------------------------------------------------ pacing, fake clock


class FakeClock:
    """A clock that only moves when slept on or told to."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_pacer_spaces_events_by_one_over_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        pacer.wait()
    assert clock.slept == pytest.approx([0.1] * 4)
    assert clock.now == pytest.approx(100.4)


def test_pacer_does_not_drift_when_sleeps_overshoot() -> None:
    clock = FakeClock()

    def late_sleep(seconds: float) -> None:
        clock.slept.append(seconds)
        clock.now += seconds + 0.02  # the OS wakes us 20 ms late every time

    pacer = Pacer(10.0, clock=clock, sleep=late_sleep)
    for _ in range(11):
        pacer.wait()
    # Each sleep is shortened by the previous overshoot, so event 10 is due at +1.0 s
    # and only the last overshoot remains, instead of 10 of them adding up.
    assert clock.slept[1:] == pytest.approx([0.08] * 9)
    assert clock.now == pytest.approx(101.02)


def test_pacer_skips_tiny_sleeps_and_catches_up_later() -> None:
    clock = FakeClock()
    pacer = Pacer(2_000.0, clock=clock, sleep=clock.sleep, min_sleep_s=0.0012)
    for _ in range(5):
        pacer.wait()
    # Events 1 and 2 are due too soon to sleep for; event 3 sleeps their time too,
    # and event 4, 0.5 ms after it, goes at once again.
    assert clock.slept == [pytest.approx(0.0015)]


def test_pacer_time_spent_sending_counts_against_the_sleep() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    pacer.wait()
    clock.now += 0.07  # the send itself took 70 ms
    pacer.wait()
    assert clock.slept == [pytest.approx(0.03)]


def test_pacer_after_a_stall_bursts_at_most_its_backlog() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep, max_backlog_s=0.5)
    pacer.wait()
    clock.now += 60.0  # a minute-long stall (broker away, laptop asleep)
    waits = 0
    while not clock.slept and waits < 1_000:
        pacer.wait()
        waits += 1
    # 0.5 s of backlog at 10 events/s and the event due now go at once (6), the 7th waits.
    assert waits == 7
    assert clock.slept == [pytest.approx(0.1)]


# ------------------------------------------------------------------ options, encoding


def options(**overrides: Any) -> ProduceOptions:
    values: dict[str, Any] = {"bootstrap_servers": "127.0.0.1:9092", "topic": "t", "count": 10}
    values.update(overrides)
    return ProduceOptions(**values)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"count": None}, "count is required"),
        ({"count": 0}, "count must be positive"),
        ({"partitions": 0}, "partitions must be at least 1"),
        ({"rate": 0.0}, "rate must be a positive"),
        ({"rate": float("inf")}, "rate must be a positive"),
        ({"generator": "nope"}, "unknown generator 'nope'"),
        ({"drift_at": (10,)}, "not before the end"),
        ({"drift_at": (5, 2)}, "strictly increasing"),
        ({"label_column": "y"}, "label column applies to a replayed file"),
        ({"file": Path("x.csv"), "drift_at": (3,)}, "drift points apply to generators"),
        ({"kafka_config": {"bootstrap_servers": "x"}}, "must not set"),
        ({"kafka_config": {"sasl_passwrd": "x"}}, "unknown Kafka producer settings"),
        ({"topic": " "}, "topic must not be empty"),
        ({"key": "hash"}, "key must be one of"),
    ],
)
def test_contradictory_or_bad_options_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        options(**overrides)


def test_a_file_needs_no_count_and_security_settings_pass_through() -> None:
    opts = options(count=None, file=Path("x.csv"), kafka_config={"security_protocol": "SSL"})
    assert opts.count is None
    assert opts.kafka_config == {"security_protocol": "SSL"}


def test_encoded_events_are_canonical_json_with_numpy_values_made_plain() -> None:
    value = encode_event("7-3", {0: np.float64(0.5), "b": np.bool_(False)}, np.int64(1), seq=4)
    raw = json.loads(value)
    assert raw["id"] == "7-3"
    assert raw["features"] == {"0": 0.5, "b": False}
    assert raw["label"] == 1 and type(raw["label"]) is int
    assert raw["seq"] == 4 and isinstance(raw["timestamp"], float)
    assert b" " not in value  # compact separators
    event = decode(value)
    assert isinstance(event, Event) and event.features["b"] is False


def test_non_finite_features_are_refused_rather_than_sent_as_invalid_json() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode_event("1-0", {"x": float("nan")}, 1, seq=0)


def test_summary_line_names_drifts_and_failures() -> None:
    summary = ProduceSummary("T", 1, 900, 100, 2.0, (300, 600))
    assert summary.line() == (
        "produced 900 events to T (1 partition) in 2.0 s, 450 events/s,"
        " drifts at [300, 600], 100 failed"
    )


def test_help_explains_every_option() -> None:
    parser = argparse.ArgumentParser()
    add_produce_arguments(parser)
    for action in parser._actions:
        assert action.help, action.dest


# ------------------------------------------------------------------ against a real broker


def read_back(bootstrap: str, topic: str, expected: int) -> list[Any]:
    """Every record of ``topic`` from the beginning, bounded by a deadline."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + 30.0
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        # One more short poll: anything beyond `expected` would be a duplicate.
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


@pytest.mark.integration
def test_produced_events_read_back_complete_canonical_and_in_order(
    kafka_bootstrap: str, topic_name: str
) -> None:
    count, drifts = 3_000, (1_000, 2_000)
    out = io.StringIO()
    opts = options(
        bootstrap_servers=kafka_bootstrap,
        topic=topic_name,
        count=count,
        seed=7,
        generator="sea",
        drift_at=drifts,
        partitions=2,
    )
    summary = produce(opts, out=out)

    assert (summary.produced, summary.failed, summary.partitions) == (count, 0, 2)
    assert out.getvalue().splitlines()[-1] == summary.line()
    assert f"produced {count} events to {topic_name} (2 partitions)" in summary.line()
    assert "drifts at [1000, 2000], 0 failed" in summary.line()

    records = read_back(kafka_bootstrap, topic_name, count)
    assert len(records) == count
    events = {r.value and json.loads(r.value)["id"]: (r, json.loads(r.value)) for r in records}
    assert len(events) == count  # no duplicates

    expected = list(concept_stream("sea", seed=7, drift_at=drifts, count=count))
    seqs: dict[int, list[int]] = {0: [], 1: []}
    for i, (x, y) in enumerate(expected):
        record, event = events[f"7-{i}"]
        assert record.partition == i % 2
        assert record.key == f"7-{i}".encode()
        assert set(event) == {"id", "features", "label", "timestamp", "seq"}
        assert isinstance(decode(record.value), Event)
        # Same features and label at the same index: the drift points are where they were.
        assert event["features"] == {str(k): v for k, v in x.items()}
        assert event["label"] == y
        seqs[record.partition].append(event["seq"])
    for partition, numbers in seqs.items():
        in_offset_order = [
            json.loads(r.value)["seq"]
            for r in sorted(records, key=lambda r: r.offset)
            if r.partition == partition
        ]
        assert in_offset_order == list(range(count // 2)) == sorted(numbers)


@pytest.mark.integration
def test_an_existing_topic_with_fewer_partitions_gets_a_warning_not_a_crash(
    kafka_bootstrap: str, topic_name: str
) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics({topic_name: {"num_partitions": 1, "replication_factor": -1}})
        admin.wait_for_topics([topic_name], timeout_ms=10_000)
    finally:
        admin.close()
    out = io.StringIO()
    opts = options(bootstrap_servers=kafka_bootstrap, topic=topic_name, count=50, partitions=3)
    summary = produce(opts, out=out)
    assert "warning: topic" in out.getvalue() and "fewer than the 3 asked for" in out.getvalue()
    assert (summary.partitions, summary.produced, summary.failed) == (1, 50, 0)
    seqs = [json.loads(r.value)["seq"] for r in read_back(kafka_bootstrap, topic_name, 50)]
    assert sorted(seqs) == list(range(50))


@pytest.mark.integration
def test_refused_sends_are_counted_and_reported(kafka_bootstrap: str, topic_name: str) -> None:
    # Every event is larger than the producer may send, so each send fails.
    out = io.StringIO()
    opts = options(
        bootstrap_servers=kafka_bootstrap,
        topic=topic_name,
        count=20,
        kafka_config={"max_request_size": 64},
    )
    summary = produce(opts, out=out)
    assert (summary.produced, summary.failed) == (0, 20)
    assert summary.line().endswith(", 20 failed")
    assert "delivery error: MessageSizeTooLargeError" in out.getvalue()


@pytest.mark.integration
def test_the_command_replays_a_csv_file(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("a,b,cls\n" + "".join(f"{i},{i % 3 == 0},{i % 2}\n" for i in range(40)))
    parser = argparse.ArgumentParser()
    add_produce_arguments(parser)
    args = parser.parse_args(
        ["--bootstrap-servers", kafka_bootstrap, "--topic", topic_name, "--seed", "3",
         "--file", str(path), "--label-column", "cls", "--partitions", "2", "--rate", "100000"]
    )  # fmt: skip
    out = io.StringIO()
    assert run_produce(args, out=out) == 0
    assert f"produced 40 events to {topic_name} (2 partitions)" in out.getvalue()
    records = read_back(kafka_bootstrap, topic_name, 40)
    events = sorted((json.loads(r.value) for r in records), key=lambda e: int(e["id"][2:]))
    assert [e["label"] for e in events] == [i % 2 for i in range(40)]
    assert events[3]["features"] == {"a": 3.0, "b": "True"}


def test_the_command_refuses_a_generator_run_without_count() -> None:
    parser = argparse.ArgumentParser()
    add_produce_arguments(parser)
    args = parser.parse_args(["--bootstrap-servers", "127.0.0.1:1", "--topic", "t"])
    out = io.StringIO()
    assert run_produce(args, out=out) == 2
    assert "count is required" in out.getvalue()


class TerminalOutput(io.StringIO):
    """Captured output that says it is a terminal, as stderr does in a shell."""

    def isatty(self) -> bool:
        return True


@pytest.mark.integration
def test_a_terminal_gets_a_progress_line_before_the_summary(
    kafka_bootstrap: str, topic_name: str
) -> None:
    out = TerminalOutput()
    opts = options(bootstrap_servers=kafka_bootstrap, topic=topic_name, count=200, seed=1)
    summary = produce(opts, out=out)
    progress, summary_line = out.getvalue().rsplit("\n", 2)[:2]
    assert progress.startswith("\r") and "200/200 (100%) events" in progress
    assert summary_line == summary.line()


def test_values_json_cannot_carry_are_refused() -> None:
    with pytest.raises(SourceError, match="not JSON-safe"):
        encode_event("1-0", {"x": [1, 2]}, 1, seq=0)


@pytest.mark.integration
def test_a_pipe_gets_no_progress_line(kafka_bootstrap: str, topic_name: str) -> None:
    out = io.StringIO()
    produce(options(bootstrap_servers=kafka_bootstrap, topic=topic_name, count=20), out=out)
    assert "\r" not in out.getvalue() and len(out.getvalue().splitlines()) == 1


# ------------------------------------------------------------------ security options


def _security_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_produce_arguments(parser)
    return parser.parse_args(["--bootstrap-servers", "h:1", "--topic", "t", *argv])


def test_produce_without_security_options_passes_no_security_settings() -> None:
    assert security_from_args(_security_args(), environ={}) == {}


def test_produce_takes_sasl_options_and_the_password_from_the_environment() -> None:
    args = _security_args(
        "--security-protocol",
        "SASL_SSL",
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--sasl-username",
        "alice",
        "--ssl-cafile",
        "ca.pem",
    )
    config = security_from_args(args, environ={"STREAMLEARN_SASL_PASSWORD": "pw"})
    assert config == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": "pw",
        "ssl_cafile": "ca.pem",
    }


def test_produce_refuses_sasl_without_its_password_as_run_does() -> None:
    args = _security_args(
        "--security-protocol",
        "SASL_PLAINTEXT",
        "--sasl-mechanism",
        "PLAIN",
        "--sasl-username",
        "alice",
    )
    with pytest.raises(SettingsError, match="needs sasl_mechanism, sasl_username and sasl_pass"):
        security_from_args(args, environ={})
