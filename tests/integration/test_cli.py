# Over 400 lines: one test per promise of the command line, sharing its subprocess helpers.
"""``streamlearn`` as a person runs it: real subprocesses against the real broker.

The daemon serves /healthz and /metrics while it learns, stops at once and cleanly on
SIGTERM or by itself when idle, takes its settings from the command line, the environment
and a TOML file (in that order of precedence), and refuses bad settings at start with exit
code 2 and a message instead of a traceback. ``streamlearn broker`` prints its address and
stops on SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from stream.cli import SECRET_FIELDS, main
from stream.kafka.tansu import free_port
from stream.settings import ENV_PREFIX, RunSettings
from stream.tools.produce import ProduceOptions, produce
from tests.integration.daemon_process import (
    DaemonProcess,
    checkpointed_offset,
    daemons,
    local_checkpoint,
    state_of,
)

pytestmark = pytest.mark.integration

COUNT = 600


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any STREAMLEARN_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(extra)
    return env


def _streamlearn(*args: str) -> list[str]:
    return [sys.executable, "-m", "stream", *args]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Make sure a process this test started is gone, whatever happened in the test."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def _committed(bootstrap: str, group: str, topic: str) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, 0))
    finally:
        consumer.close(autocommit=False)


@pytest.fixture(scope="module")
def topic(kafka_bootstrap: str) -> str:
    """One produced topic for every daemon of this module (each reads it with its own group)."""
    name = f"t-cli-{os.getpid()}-{time.monotonic_ns() % 10**8}"
    produce(
        ProduceOptions(kafka_bootstrap, name, count=COUNT, seed=4, generator="sea", partitions=1)
    )
    return name


# -- a running daemon -------------------------------------------------------------------------


@dataclass(frozen=True)
class Layered:
    """Where each setting of the precedence run came from."""

    file_group: str
    env_group: str
    cli_group: str


def test_daemon_serves_health_and_metrics_and_stops_cleanly_on_sigterm(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    # Settings in three layers; each observable value tells which layer won:
    # the file names the broker, the model and a wrong topic; the environment names the
    # right topic and another drift action; the command line names the drift action.
    groups = Layered(f"{topic}-file", f"{topic}-env", f"{topic}-cli")
    config = tmp_path / "streamlearn.toml"
    config.write_text(
        f'bootstrap_servers = "{kafka_bootstrap}"\n'
        'topic = "not-this-topic"\n'
        'model = "tree.HoeffdingTreeClassifier(grace_period=77)"\n'
        'drift_action = "retrain"\n'
        f'group_id = "{groups.file_group}"\n'
    )
    state_dir = tmp_path / "state"
    daemon = DaemonProcess(
        kafka_bootstrap,
        topic,
        tmp_path / "daemon.log",
        # None: not on the command line (the broker and topic come from the file and
        # the environment).
        {
            "bootstrap-servers": None,
            "topic": None,
            "config": config,
            "drift-action": "reset",
            "group-id": groups.cli_group,
            "session-timeout-ms": 6000,
            "state-dir": state_dir,
        },
        env={
            "STREAMLEARN_TOPIC": topic,
            "STREAMLEARN_DRIFT_ACTION": "none",
            "STREAMLEARN_GROUP_ID": groups.env_group,
        },
        port=free_port(),
    )
    with daemons(daemon):
        daemon.start()
        daemon.wait_until(
            lambda: (
                daemon.metric_sum("streamlearn_events_total", topic=topic, outcome="learned")
                == COUNT
            ),
            120,
            "every produced event learned",
        )
        health = daemon.health()
        assert health is not None and health["ready"] is True
        assert topic in str(health["detail"])
        assert daemon.metric("streamlearn_ready") == 1
        assert daemon.terminate(60) == 0  # SIGTERM handled: flushed, checkpointed, committed

    assert "Traceback" not in daemon.log()
    learner = state_of(local_checkpoint(state_dir, topic, 0)).learner
    assert learner.learned == COUNT
    assert learner.model.grace_period == 77  # only the file set the model
    assert learner.drift_action == "reset"  # the command line beat the environment and file
    # The command line's group committed everything; the others never consumed.
    assert _committed(kafka_bootstrap, groups.cli_group, topic) == COUNT
    assert _committed(kafka_bootstrap, groups.env_group, topic) is None
    assert _committed(kafka_bootstrap, groups.file_group, topic) is None


def test_daemon_stops_by_itself_after_being_idle(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    group = f"{topic}-idle"
    state_dir = tmp_path / "state"
    # The topic and group come from the environment, the rest from the command line.
    daemon = DaemonProcess(
        kafka_bootstrap,
        topic,
        tmp_path / "daemon.log",
        {
            "topic": None,
            "group-id": None,
            "stop-after-idle": 2,
            "session-timeout-ms": 6000,
            "drift-action": "none",
            "state-dir": state_dir,
        },
        env={"STREAMLEARN_TOPIC": topic, "STREAMLEARN_GROUP_ID": group},
    )
    with daemons(daemon):
        daemon.start()
        code = daemon.wait(120)  # no signal: it stops by itself
    assert code == 0, daemon.log_tail()
    # Everything was consumed, checkpointed and committed before it stopped.
    assert _committed(kafka_bootstrap, group, topic) == COUNT
    assert checkpointed_offset(state_dir, topic) == COUNT
    assert "Traceback" not in daemon.log()


# -- refused at start ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    args: tuple[str, ...]
    env: dict[str, str]
    says: tuple[str, ...]  # what the message must name


def _dead_broker() -> tuple[str, ...]:
    # Nothing listens on this port: a refusal that did not happen would end in a "no broker
    # answered" error after the short outage timeout, which the tests tell apart.
    return ("run", "--bootstrap-servers", f"127.0.0.1:{free_port()}", "--outage-timeout", "2")


def _refusals(config_dir: Path) -> dict[str, Refusal]:
    unknown_key = config_dir / "unknown-key.toml"
    unknown_key.write_text('topic = "t"\nlearning_rate = 0.1\n')
    base = (*_dead_broker(), "--topic", "t")
    return {
        "unknown-env": Refusal(base, {"STREAMLEARN_NOPE": "1"}, ("STREAMLEARN_NOPE",)),
        "unknown-toml-key": Refusal(
            (*_dead_broker(), "--config", str(unknown_key)), {}, ("learning_rate",)
        ),
        "model-os-system": Refusal((*base, "--model", "os.system"), {}, ("os.system",)),
        "model-code": Refusal(
            (*base, "--model", "__import__('os').system('true')"), {}, ("model spec",)
        ),
    }


REFUSALS = ("unknown-env", "unknown-toml-key", "model-os-system", "model-code")


@dataclass(frozen=True)
class Finished:
    code: int
    stderr: str
    says: tuple[str, ...]


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Finished]:
    """Every refusal case as a real process, all started at once (each start-up costs about
    a second of imports), then collected."""
    cases = _refusals(tmp_path_factory.mktemp("refusals"))
    assert sorted(cases) == sorted(REFUSALS)
    processes = {
        name: subprocess.Popen(
            _streamlearn(*case.args),
            cwd=tempfile.gettempdir(),
            env=_clean_env(**case.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name, case in cases.items()
    }
    finished = {}
    try:
        for name, process in processes.items():
            _, err = process.communicate(timeout=60)
            finished[name] = Finished(process.returncode, err.decode(), cases[name].says)
    finally:
        for process in processes.values():
            _stop(process)
    return finished


def _assert_refused(code: int, stderr: str, says: tuple[str, ...]) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("streamlearn run: error:"), stderr
    for word in says:
        assert word in stderr, (word, stderr)
    assert "no broker answered" not in stderr


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_settings_are_refused_at_start_with_a_clear_message(
    refused: dict[str, Finished], case: str
) -> None:
    result = refused[case]
    _assert_refused(result.code, result.stderr, result.says)


# More bad settings through the same entry point, in this process (a process start-up costs
# a second or more of imports); each fails while the settings are built, before anything
# connects or configures logging.
IN_PROCESS = {
    "drift-action": (("--drift-action", "maybe"), ("drift_action", "reset", "retrain")),
    "predictions-is-input": (("--predictions-topic", "t"), ("predictions_topic", "differ")),
    "sasl-without-credentials": (
        ("--security-protocol", "SASL_SSL"),
        ("SASL_SSL", "sasl_username", "sasl_password"),
    ),
    "sasl-password-only-in-env": (
        (
            "--security-protocol",
            "SASL_PLAINTEXT",
            "--sasl-mechanism",
            "PLAIN",
            "--sasl-username",
            "u",
        ),
        ("sasl_password",),
    ),
    "dead-letters-is-input": (("--dead-letter-topic", "t"), ("dead_letter_topic", "differ")),
    "outputs-are-one-topic": (
        ("--predictions-topic", "p", "--dead-letter-topic", "p"),
        ("predictions_topic", "dead_letter_topic"),
    ),
    "min-above-max": (
        ("--min-retrain-events", "500", "--max-retrain-events", "100"),
        ("min_retrain_events",),
    ),
    "bad-number": (("--adwin-delta", "lots"), ("adwin_delta",)),
    "no-model-errors-allowed": (("--max-model-errors", "0"), ("max_model_errors",)),
    "no-features-allowed": (("--max-features", "0"), ("max_features",)),
    "no-pending-allowed": (("--max-pending", "0"), ("max_pending",)),
    "labels-never-wait": (("--label-ttl", "0"), ("label_ttl",)),
    "ssl-without-ssl": (("--ssl-cafile", "/etc/hosts"), ("SSL", "PLAINTEXT")),
    "missing-config": (("--config", "/nonexistent/streamlearn.toml"), ("does not exist",)),
}


@pytest.mark.parametrize("case", sorted(IN_PROCESS))
def test_more_bad_settings_are_refused(
    case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    args, says = IN_PROCESS[case]
    code = main([*_dead_broker(), "--topic", "t", *args])
    _assert_refused(code, capsys.readouterr().err, says)


def test_an_unknown_option_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--topic", "t", "--learning-rate", "1"])
    assert exit_info.value.code == 2
    assert "--learning-rate" in capsys.readouterr().err


# -- help -----------------------------------------------------------------------------------------


def test_help_names_every_command() -> None:
    result = subprocess.run(
        _streamlearn("--help"),
        cwd=tempfile.gettempdir(),
        env=_clean_env(),
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert result.returncode == 0
    for command in ("run", "produce", "broker", "report", "demo"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), command


def test_run_help_names_every_option_but_no_secret() -> None:
    result = subprocess.run(
        _streamlearn("run", "--help"),
        cwd=tempfile.gettempdir(),
        env=_clean_env(),
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert result.returncode == 0
    options = set(re.findall(r"--[a-z][a-z0-9-]*", result.stdout))
    expected = {
        f"--{name.replace('_', '-')}"
        for name in RunSettings.model_fields
        if name not in SECRET_FIELDS
    }
    assert expected | {"--config", "--help"} <= options
    assert not {f"--{name.replace('_', '-')}" for name in SECRET_FIELDS} & options
    assert f"{ENV_PREFIX}BOOTSTRAP_SERVERS" in result.stdout.replace("\n", "")


# -- the embedded broker --------------------------------------------------------------------------


def _first_line(process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=timeout_s):
            raise AssertionError("the broker printed nothing")
    return process.stdout.readline().decode()


def _accepts(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


@pytest.fixture
def broker_process() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        _streamlearn("broker"),
        cwd=tempfile.gettempdir(),
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    children: list[int] = []
    try:
        yield process
    finally:
        # The Tansu process is this test's grandchild: if the command fails to stop it,
        # end it here by its id rather than leave it listening.
        children = _children(process.pid)
        _stop(process)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_broker_prints_its_address_serves_kafka_and_stops_on_sigterm(
    broker_process: subprocess.Popen[bytes],
) -> None:
    line = _first_line(broker_process)
    match = re.search(r"--bootstrap-servers (127\.0\.0\.1:\d+)", line)
    assert match, line
    address = match.group(1)
    # It speaks Kafka: a topic written there can be read back.
    produce(ProduceOptions(address, "probe", count=5, seed=1, partitions=1))
    consumer = KafkaConsumer(bootstrap_servers=address, enable_auto_commit=False)
    try:
        assert "probe" in consumer.topics()
    finally:
        consumer.close()

    broker_process.send_signal(signal.SIGTERM)
    # Tansu stops in milliseconds; ten seconds is a bound on a hang, not a measurement.
    assert broker_process.wait(timeout=10) == 0
    assert broker_process.stderr is not None
    assert b"Traceback" not in broker_process.stderr.read()
    assert not _accepts(address), "the broker process outlived the command"
