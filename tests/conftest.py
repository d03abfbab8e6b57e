"""Shared fixtures: real Kafka brokers for the integration tests.

Every test that takes ``kafka_bootstrap`` runs once per broker kind: on the embedded
Tansu broker and on Apache Kafka (from its jars, :mod:`stream.kafka.apache`), each one
started once for the whole session; the test ids end in ``[tansu]`` / ``[apache]``, so
``-k tansu`` runs one side. ``STREAMLEARN_TEST_BROKERS=tansu`` (or ``apache``) limits the
kinds; ``KAFKA_BOOTSTRAP_SERVERS`` replaces them with that one broker (kind ``external``).
Tests of what only a durable broker shows take ``apache_kafka`` instead: the same Apache
Kafka, whatever the kinds. Tests that freeze, stop or kill their broker take
``spare_broker`` (of ``broker_kind``) or ``spare_apache_kafka``: a second broker of the
kind, also started once for the session (and again after a test stopped it), so the
session's own broker is never touched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from stream.kafka.apache import ApacheKafkaBroker
from stream.kafka.broker_process import BrokerProcess
from stream.kafka.tansu import EmbeddedBroker

KINDS = ("tansu", "apache")


def _broker_kinds() -> list[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return ["external"]
    chosen = os.environ.get("STREAMLEARN_TEST_BROKERS")
    if not chosen:
        return list(KINDS)
    kinds = [kind.strip() for kind in chosen.split(",") if kind.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise pytest.UsageError(f"STREAMLEARN_TEST_BROKERS: one or more of {KINDS}, not {chosen!r}")
    return kinds


def one_broker() -> pytest.MarkDecorator:
    """For a test of our own code paths, not of Kafka's behaviour: run it on the first
    broker kind only (Tansu unless the kinds say otherwise), not on each."""
    return pytest.mark.parametrize("broker_kind", _broker_kinds()[:1], indirect=True)


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafkaBroker]:
    """Apache Kafka (single-node KRaft) for the whole session; its output in broker.log."""
    log_path = tmp_path_factory.mktemp("apache-kafka") / "broker.log"
    with ApacheKafkaBroker(log_path=log_path) as broker:
        yield broker


@pytest.fixture(scope="session", params=_broker_kinds())
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Which broker this run of the test talks to: tansu, apache or external."""
    return str(request.param)


@pytest.fixture(scope="session")
def kafka_bootstrap(
    broker_kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Bootstrap servers of a real broker of ``broker_kind``, for the whole session."""
    if broker_kind == "external":
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    elif broker_kind == "apache":
        yield request.getfixturevalue("apache_kafka").bootstrap_servers
    else:
        log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
        with EmbeddedBroker(log_path=log_path) as broker:
            yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def _spare_apache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafkaBroker]:
    folder = tmp_path_factory.mktemp("spare-apache-kafka")
    with ApacheKafkaBroker(log_dir=folder / "kafka", log_path=folder / "broker.log") as broker:
        yield broker


@pytest.fixture(scope="session")
def _spare_tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log_path = tmp_path_factory.mktemp("spare-tansu") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as broker:
        yield broker


def _answering(broker: BrokerProcess) -> BrokerProcess:
    """The broker running and answering: started again (same ports, same log directory)
    if an earlier test stopped or killed it; waited for if one just thawed it."""
    if broker.running:
        broker.wait_ready()
    else:
        broker.start()
    return broker


@pytest.fixture
def spare_broker(broker_kind: str, request: pytest.FixtureRequest) -> BrokerProcess:
    """A broker of ``broker_kind`` that the test may freeze (SIGSTOP), stop or kill."""
    if broker_kind == "external":
        pytest.skip("freezes or stops its broker: needs one it started itself")
    return _answering(request.getfixturevalue(f"_spare_{broker_kind}"))


@pytest.fixture
def spare_apache_kafka(_spare_apache: ApacheKafkaBroker) -> ApacheKafkaBroker:
    """The spare Apache Kafka, whatever the kinds: for tests that kill and restart it."""
    _answering(_spare_apache)
    return _spare_apache


@pytest.fixture(scope="session")
def broker_is_tansu(broker_kind: str) -> bool:
    """True when the test talks to the embedded Tansu broker (its quirks: design.md)."""
    return broker_kind == "tansu"


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name unique to the test, so tests sharing one broker never meet."""
    safe = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return f"t-{safe}-{uuid.uuid4().hex[:8]}"


_APACHE_FIXTURES = {"apache_kafka", "spare_apache_kafka", "_spare_apache"}


def broker_group(item: pytest.Item) -> str | None:
    """The brokers a test needs, as an xdist group: ``tansu``, ``apache``, ``external``, or
    None for a test that needs none.

    With ``pytest -n 2 --dist loadgroup`` every test of a group runs on one worker, so
    each worker starts only its own brokers (session fixtures are per worker) and no two
    workers ever share a broker, a topic or a group.
    """
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "broker_kind" in callspec.params:
        return str(callspec.params["broker_kind"])
    if _APACHE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return "apache"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = broker_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
