"""Credentials on a live broker: SASL/SCRAM-SHA-512 over TLS and mutual TLS, on Apache Kafka.

One Apache Kafka broker for the module, with a SASL_SSL listener (SCRAM-SHA-512 users made
when its storage is formatted) and an SSL listener that requires client certificates,
signed by a throwaway CA the tests make with openssl and keytool (``certificates.py``).
Tansu has no SASL, so these run on Apache Kafka only.

``streamlearn produce`` and ``streamlearn run`` (the real subprocess) connect with each,
learn, and the predictions are read back with the same credentials. A wrong password, a
CA that did not sign the broker's certificate and a client certificate the broker does not
trust each stop ``run`` and ``produce`` at start with the cause in one line and exit code 2
(with ``--outage-timeout`` at 10 minutes: a retry loop would outlive the test's wait).
Finally every output of every run (its whole log at DEBUG, ``/metrics``, the run log, and
every record it wrote: predictions, dead letters with their headers, checkpoints) is
searched for every secret: none may appear.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stream.kafka.apache import ApacheKafkaBroker
from stream.kafka.broker_security import BrokerSecurity
from tests.integration.certificates import Pki, make_pki
from tests.integration.daemon_process import REPO, DaemonProcess, daemons

USER = "streamlearn"
PASSWORD = "scram-" + secrets.token_hex(12)
WRONG_PASSWORD = "wrong-" + secrets.token_hex(12)
CHECKPOINT_KEY = "ckpt-" + secrets.token_hex(16)
EVENTS = 300


@dataclass
class Outputs:
    """Everything a daemon run left that a person or a program could read."""

    texts: dict[str, str]
    records: dict[str, list[Any]]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured_broker(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApacheKafkaBroker]:
    log_path = tmp_path_factory.mktemp("secured-kafka") / "broker.log"
    security = BrokerSecurity({USER: PASSWORD}, pki.server)
    with ApacheKafkaBroker(log_path=log_path, security=security) as broker:
        yield broker


def _scram(broker: ApacheKafkaBroker, pki: Pki, password: str = PASSWORD) -> dict[str, Any]:
    """kafka-python settings, the CLI options and the environment of a SCRAM client."""
    return {
        "bootstrap": broker.bootstrap_for("SASL"),
        "options": {
            "security-protocol": "SASL_SSL",
            "sasl-mechanism": "SCRAM-SHA-512",
            "sasl-username": USER,
            "ssl-cafile": pki.ca,
        },
        "env": {"STREAMLEARN_SASL_PASSWORD": password},
        "kafka": {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": USER,
            "sasl_plain_password": password,
            "ssl_cafile": str(pki.ca),
        },
    }


def _mtls(
    broker: ApacheKafkaBroker,
    pki: Pki,
    cafile: Path | None = None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> dict[str, Any]:
    """The same for a client that authenticates with its certificate."""
    cafile, certfile = cafile or pki.ca, certfile or pki.client_cert
    keyfile = keyfile or pki.client_key
    password = pki.client_key_password if keyfile == pki.client_key else ""
    return {
        "bootstrap": broker.bootstrap_for("MTLS"),
        "options": {
            "security-protocol": "SSL",
            "ssl-cafile": cafile,
            "ssl-certfile": certfile,
            "ssl-keyfile": keyfile,
        },
        "env": {"STREAMLEARN_SSL_PASSWORD": password} if password else {},
        "kafka": {
            "security_protocol": "SSL",
            "ssl_cafile": str(cafile),
            "ssl_certfile": str(certfile),
            "ssl_keyfile": str(keyfile),
            **({"ssl_password": password} if password else {}),
        },
    }


def _produce(
    client: dict[str, Any], topic: str, count: int = EVENTS
) -> subprocess.CompletedProcess[str]:
    """``streamlearn produce`` as a person runs it, with the client's credentials."""
    command = [
        sys.executable,
        "-m",
        "stream",
        "produce",
        "--bootstrap-servers",
        client["bootstrap"],
        "--topic",
        topic,
        "--count",
        str(count),
        "--seed",
        "3",
    ]
    for name, value in client["options"].items():
        command += [f"--{name}", str(value)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLEARN_")}
    return subprocess.run(
        command,
        cwd=REPO,
        env={**env, **client["env"]},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _daemon(client: dict[str, Any], topic: str, log_path: Path, **options: Any) -> DaemonProcess:
    return DaemonProcess(
        client["bootstrap"],
        topic,
        log_path,
        options={**client["options"], "outage-timeout": 600, "log-level": "DEBUG", **options},
        env={**client["env"], "STREAMLEARN_CHECKPOINT_KEY": CHECKPOINT_KEY},
    )


def _read(client: dict[str, Any], topic: str) -> list[Any]:
    """Every record of ``topic``, read with the client's own credentials."""
    consumer = KafkaConsumer(
        bootstrap_servers=client["bootstrap"],
        group_id=None,
        enable_auto_commit=False,
        **client["kafka"],
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)  # Apache Kafka answers the high watermark
        records: list[Any] = []
        for _ in range(100):  # bounded: a few polls read a few hundred records
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
            for batch in consumer.poll(timeout_ms=500).values():
                records += batch
        assert all(consumer.position(tp) >= ends[tp] for tp in tps), f"{topic} not read to its end"
        return records
    finally:
        consumer.close()


def _run_and_collect(client: dict[str, Any], tmp_path: Path, **options: Any) -> Outputs:
    """Produce a stream and one undecodable record, run the daemon until it learned all of
    it, and collect what it left."""
    topic = f"secure-{uuid.uuid4().hex[:8]}"
    produced = _produce(client, topic)
    assert produced.returncode == 0, produced.stderr
    bad = KafkaProducer(bootstrap_servers=client["bootstrap"], **client["kafka"])
    bad.send(topic, b"not json at all", partition=0).get(timeout=60)
    bad.close()
    outputs = {
        "predictions-topic": f"{topic}-predictions",
        "dead-letter-topic": f"{topic}-dead",
        "checkpoint-topic": f"{topic}-checkpoints",
    }
    daemon = _daemon(
        client,
        topic,
        tmp_path / "daemon.log",
        **outputs,
        **{"checkpoint-store": "kafka", "drift-action": "retrain"},
        **options,
    )
    with daemons(daemon):
        daemon.start()
        daemon.wait_until(
            lambda: (
                daemon.metric_sum("streamlearn_events_total", outcome="learned") == EVENTS
                and daemon.metric_sum("streamlearn_dead_letters_total") == 1
            ),
            90,
            f"{EVENTS} events learned and 1 dead letter",
        )
        port = daemon.metrics_port()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            metrics = answer.read().decode()
        assert daemon.shutdown() == 0, daemon.log_tail()
    assert daemon.event_log is not None
    return Outputs(
        texts={
            "log": daemon.log(whole=True),
            "metrics": metrics,
            "run log": daemon.event_log.read_text(),
            "produce": produced.stderr,
        },
        records={name: _read(client, topic) for name, topic in outputs.items()},
    )


@pytest.fixture(scope="module")
def scram_run(
    secured_broker: ApacheKafkaBroker, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Outputs:
    return _run_and_collect(_scram(secured_broker, pki), tmp_path_factory.mktemp("scram"))


@pytest.fixture(scope="module")
def mtls_run(
    secured_broker: ApacheKafkaBroker, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Outputs:
    # The publisher child process gets the credentials too.
    return _run_and_collect(
        _mtls(secured_broker, pki), tmp_path_factory.mktemp("mtls"), publisher="process"
    )


@dataclass
class Refused:
    run_code: int
    run_log: str
    produce_code: int
    produce_err: str


def _refused(client: dict[str, Any], tmp_path: Path) -> Refused:
    """``run`` and ``produce`` with credentials the broker (or the client) refuses."""
    topic = f"refused-{uuid.uuid4().hex[:8]}"
    tmp_path.mkdir(parents=True, exist_ok=True)
    daemon = _daemon(client, topic, tmp_path / "refused.log")
    with daemons(daemon):
        daemon.start()
        # --outage-timeout is 600 s: only an exit at the first refusal ends this in time.
        code = daemon.wait(timeout_s=90)
    produced = _produce(client, topic, count=10)
    return Refused(code, daemon.log(whole=True), produced.returncode, produced.stderr)


@pytest.fixture(scope="module")
def refusals(
    secured_broker: ApacheKafkaBroker, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Refused]:
    folder = tmp_path_factory.mktemp("refused")
    cases = {
        "wrong password": _scram(secured_broker, pki, WRONG_PASSWORD),
        "untrusted CA": _mtls(secured_broker, pki, cafile=pki.other_ca),
        "untrusted client certificate": _mtls(
            secured_broker, pki, certfile=pki.other_ca, keyfile=pki.other_ca.with_suffix(".key")
        ),
    }
    return {
        name: _refused(client, folder / name.replace(" ", "-")) for name, client in cases.items()
    }


def _assert_learned(outputs: Outputs) -> None:
    predictions = outputs.records["predictions-topic"]
    assert len(predictions) == EVENTS
    [dead] = outputs.records["dead-letter-topic"]
    assert dead.value == b"not json at all"
    assert dict(dead.headers).get("streamlearn.reason") == b"not_json", dead.headers
    assert outputs.records["checkpoint-topic"], "no checkpoint reached the checkpoint topic"


def test_scram_sha_512_run_and_produce_learn_and_predictions_read_back(scram_run: Outputs) -> None:
    _assert_learned(scram_run)


def test_mutual_tls_run_and_produce_learn_and_predictions_read_back(mtls_run: Outputs) -> None:
    _assert_learned(mtls_run)


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("wrong password", f"authentication failed for user {USER} (SCRAM-SHA-512)"),
        ("untrusted CA", "certificate not trusted: the broker's certificate"),
        ("untrusted client certificate", "certificate not trusted: the broker at"),
    ],
)
def test_refused_credentials_stop_run_and_produce_at_start(
    refusals: dict[str, Refused], case: str, says: str
) -> None:
    refused = refusals[case]
    assert refused.run_code == 2, refused.run_log[-3000:]
    [line] = [ln for ln in refused.run_log.splitlines() if ln.startswith("streamlearn run: error:")]
    assert says in line, line
    assert "retrying" not in refused.run_log, "the refusal was retried"
    assert refused.produce_code == 2, refused.produce_err
    assert f"error: {says}" in refused.produce_err


def test_no_secret_in_any_log_metric_or_record(
    scram_run: Outputs, mtls_run: Outputs, refusals: dict[str, Refused], pki: Pki
) -> None:
    found = []
    secret_values = (PASSWORD, WRONG_PASSWORD, CHECKPOINT_KEY, *pki.secrets)
    texts = {
        f"{run} {name}": text
        for run, outputs in (("scram", scram_run), ("mtls", mtls_run))
        for name, text in outputs.texts.items()
    }
    texts |= {
        f"refused ({case}) {kind}": text
        for case, r in refusals.items()
        for kind, text in (("run log", r.run_log), ("produce", r.produce_err))
    }
    for where, text in texts.items():
        assert text, f"{where} is empty: nothing was scanned"
        found += [f"{where}: secret {n}" for n, s in enumerate(secret_values) if s in text]
    for run, outputs in (("scram", scram_run), ("mtls", mtls_run)):
        for topic, records in outputs.records.items():
            for record in records:
                blobs = [record.key or b"", record.value or b""]
                blobs += [name.encode() + value for name, value in record.headers or ()]
                found += [
                    f"{run} {topic} at {record.offset}: secret {n}"
                    for n, s in enumerate(secret_values)
                    if any(s.encode() in blob for blob in blobs)
                ]
    assert not found, found
