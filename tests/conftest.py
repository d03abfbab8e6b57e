"""Shared fixtures: a real Kafka broker for the integration tests.

Order of choice: ``KAFKA_BOOTSTRAP_SERVERS`` if set; testcontainers' Kafka when a
Docker engine answers; else the embedded Tansu broker on a free loopback port.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from stream.kafka.tansu import EmbeddedBroker


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real broker, for the whole session."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield kafka.get_bootstrap_server()
        return
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def broker_is_tansu() -> bool:
    """True when the session broker is the embedded one (it has quirks, see design.md)."""
    return not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and not _docker_answers()


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name unique to the test, so tests sharing one broker never meet."""
    safe = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return f"t-{safe}-{uuid.uuid4().hex[:8]}"
