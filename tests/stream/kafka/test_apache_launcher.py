"""The Apache Kafka launcher without starting Kafka: the pinned release, where the jars
go, and the refusals that name what to install."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.exceptions import BrokerError
from stream.kafka import apache
from stream.kafka.apache import ApacheKafkaBroker, fetch_jars, jars_dir, kafka_version
from stream.kafka.broker_security import BrokerSecurity, ServerTls


def test_the_pinned_release_is_a_kafka_4() -> None:
    assert kafka_version().startswith("4.")


def test_jars_are_cached_per_release_and_pom(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("STREAMLEARN_KAFKA_JARS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = jars_dir()
    assert folder.parent == tmp_path / "streamlearn"
    assert folder.name.startswith(f"apache-kafka-{kafka_version()}-")
    other = tmp_path / "other.pom.xml"
    other.write_text(apache.POM.read_text().replace("<version>1</version>", "<version>2</version>"))
    assert jars_dir(other) != folder  # another pom, another folder: never stale jars


@pytest.mark.parametrize(("missing", "install"), [("java", "openjdk-17"), ("mvn", "maven")])
def test_missing_java_or_maven_is_an_error_naming_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, missing: str, install: str
) -> None:
    monkeypatch.delenv("STREAMLEARN_KAFKA_JARS", raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing fetched there yet
    real_which = apache.shutil.which
    monkeypatch.setattr(
        apache.shutil, "which", lambda name: None if name == missing else real_which(name)
    )
    with pytest.raises(BrokerError, match=rf"needs '{missing}'.*{install}"):
        fetch_jars()
    with pytest.raises(BrokerError, match=install):
        ApacheKafkaBroker(log_dir=tmp_path / "kafka").start()


def test_a_jars_folder_named_by_the_environment_must_hold_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STREAMLEARN_KAFKA_JARS", str(tmp_path))
    with pytest.raises(BrokerError, match="holds no fetched Kafka jars"):
        fetch_jars()


def test_the_configuration_is_a_one_node_kraft_cluster_on_loopback(tmp_path: Path) -> None:
    broker = ApacheKafkaBroker(log_dir=tmp_path, config={"num.partitions": "3"})
    config = broker.server_properties()
    assert config["process.roles"] == "broker,controller"
    assert config["controller.quorum.voters"] == f"1@127.0.0.1:{broker.controller_port}"
    assert config["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{broker.port}"
    assert config["log.dirs"] == str(tmp_path / "data")
    assert config["num.partitions"] == "3"  # what the caller adds wins


def test_secured_listeners_sit_beside_the_plaintext_one(tmp_path: Path) -> None:
    tls = ServerTls(tmp_path / "k.p12", "kp", tmp_path / "t.p12", "tp")
    broker = ApacheKafkaBroker(log_dir=tmp_path, security=BrokerSecurity({"alice": "pw"}, tls))
    config = broker.server_properties()
    sasl, mtls = broker.bootstrap_for("SASL"), broker.bootstrap_for("MTLS")
    assert config["listeners"].split(",")[2:] == [f"SASL://{sasl}", f"MTLS://{mtls}"]
    assert config["advertised.listeners"].endswith(f",SASL://{sasl},MTLS://{mtls}")
    assert config["listener.security.protocol.map"].endswith(",SASL:SASL_SSL,MTLS:SSL")
    assert config["inter.broker.listener.name"] == "PLAINTEXT"
    assert config["listener.name.mtls.ssl.client.auth"] == "required"
    assert "listener.name.sasl.ssl.client.auth" not in config
    assert config["listener.name.sasl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert broker.security is not None
    assert broker.security.format_arguments() == [
        "--add-scram",
        "SCRAM-SHA-512=[name=alice,password=pw]",
    ]
    ports = {broker.port, broker.controller_port, *broker.listener_ports.values()}
    assert len(ports) == 4


def test_the_default_broker_has_no_secured_listener(tmp_path: Path) -> None:
    broker = ApacheKafkaBroker(log_dir=tmp_path)
    assert broker.server_properties()["listener.security.protocol.map"] == (
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    )
    with pytest.raises(BrokerError, match="no SASL listener"):
        broker.bootstrap_for("SASL")
