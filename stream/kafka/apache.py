"""Launch Apache Kafka itself: a single-node KRaft broker and controller, from its jars.

The release is pinned in ``apache-kafka.pom.xml`` beside this module; :func:`fetch_jars`
copies ``kafka_2.13``, ``kafka-tools`` and their runtime dependencies from Maven Central
into a cache folder with ``mvn dependency:copy-dependencies`` (Maven keeps its own cache in
``~/.m2``), once per pom. :class:`ApacheKafkaBroker` mirrors the embedded Tansu launcher
(:mod:`stream.kafka.tansu`): free loopback ports, a log directory in a temporary folder
(formatted with the storage tool first), a readiness check that asks the broker for
metadata, a clean stop, and for the tests a ``kill()`` (kill -9) and a restart on the same
log directory. ``python -m stream.kafka.apache`` runs one in the foreground.

Java 17 and Maven must be installed; without them this says which to install.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from stream.exceptions import BrokerError
from stream.kafka.broker_process import BrokerProcess, free_port, listening, run_in_foreground
from stream.kafka.broker_security import BrokerSecurity

log = logging.getLogger(__name__)

POM = Path(__file__).with_name("apache-kafka.pom.xml")
_MAVEN_NS = {"m": "http://maven.apache.org/POM/4.0.0"}

INSTALL_JAVA = "install Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"
INSTALL_MAVEN = "install Maven (Debian: apt-get install maven)"

# What a one-node development cluster needs (one replica of every internal topic) and what
# makes it quick to use: a group's first join is not delayed, a consumer may ask for a short
# session timeout (the tests' 2 s), internal topics have one partition, and retention and
# compaction look at the logs every second, so a test sees them act within seconds. The
# controller forgets a broker killed with kill -9 after 4 s instead of 9 (its restart is
# refused as a duplicate registration until then).
BASE_CONFIG: Mapping[str, str] = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "num.partitions": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "broker.session.timeout.ms": "4000",
    "broker.heartbeat.interval.ms": "500",
    "group.min.session.timeout.ms": "500",
    "log.retention.check.interval.ms": "1000",
    "log.cleaner.backoff.ms": "1000",
    "auto.create.topics.enable": "true",
}

JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
)

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.target = {target}
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.apache.name = org.apache.kafka
logger.apache.level = {level}
"""


def kafka_version(pom: Path = POM) -> str:
    """The Apache Kafka release pinned in the pom.

    >>> kafka_version().split(".")[0]
    '4'
    """
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", _MAVEN_NS)
    if node is None or not node.text:
        raise BrokerError(f"{pom} names no kafka.version")
    return node.text.strip()


def jars_dir(pom: Path = POM) -> Path:
    """Where the jars of this pom live: one folder per release and pom content.

    ``STREAMLEARN_KAFKA_JARS`` names a folder to use instead (it must hold the jars).
    """
    configured = os.environ.get("STREAMLEARN_KAFKA_JARS")
    if configured:
        return Path(configured)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:10]
    return cache / "streamlearn" / f"apache-kafka-{kafka_version(pom)}-{digest}"


def _complete_marker(folder: Path) -> Path:
    return folder / ".complete"


def _require(command: str, install: str) -> str:
    path = shutil.which(command)
    if path is None:
        raise BrokerError(f"Apache Kafka needs '{command}', which is not on PATH: {install}")
    return path


def java_binary() -> str:
    """``$JAVA_HOME/bin/java`` if set, else ``java`` on the PATH; refused if missing."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return _require("java", INSTALL_JAVA)


def fetch_jars(pom: Path = POM, quiet: bool = True) -> Path:
    """The folder of Kafka's jars, copied from Maven Central on first use; idempotent.

    Maven writes into a fresh folder that is renamed into place when complete, so an
    interrupted fetch, or two at once, never leave a half-filled folder behind.
    """
    target = jars_dir(pom)
    if _complete_marker(target).exists():
        return target
    if os.environ.get("STREAMLEARN_KAFKA_JARS"):
        raise BrokerError(f"STREAMLEARN_KAFKA_JARS={target} holds no fetched Kafka jars")
    java_binary()  # refuse early: Maven would fail on a missing Java in a less clear way
    mvn = _require("mvn", INSTALL_MAVEN)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    command = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    log.info("fetching Apache Kafka %s jars with Maven into %s", kafka_version(pom), target)
    # Maven may leave target/ next to the pom: build in a scratch folder instead.
    done = subprocess.run(command, cwd=staging, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise BrokerError(f"Maven could not fetch Apache Kafka's jars:\n{tail}")
    shutil.rmtree(staging / "target", ignore_errors=True)
    _complete_marker(staging).write_text(" ".join(command) + "\n")
    try:
        staging.rename(target)
    except OSError:  # another fetch finished first: theirs is as good
        shutil.rmtree(staging, ignore_errors=True)
        if not _complete_marker(target).exists():
            raise
    return target


def java_command(main_class: str, *args: str, jvm_options: Sequence[str] = ()) -> list[str]:
    """The command line running one of Kafka's main classes on the fetched jars."""
    classpath = str(fetch_jars() / "*")
    return [java_binary(), *jvm_options, "-cp", classpath, main_class, *args]


def write_log4j_config(path: Path, level: str = "WARN", target: str = "SYSTEM_ERR") -> list[str]:
    """Write a log4j 2 configuration; returns the JVM option that selects it.

    Kafka's tools (the console consumer...) print their output on stdout: their logs go
    to stderr (``target``) so the two never mix.
    """
    path.write_text(LOG4J2.format(level=level, target=target))
    return [f"-Dlog4j2.configurationFile={path}"]


class ApacheKafkaBroker(BrokerProcess):
    """Apache Kafka (KRaft, broker and controller in one JVM) on ``host:port``.

    A context manager, or ``start()`` / ``stop()`` (:class:`BrokerProcess`, as the Tansu
    launcher); after ``stop()`` or ``kill()``,
    ``start()`` again restarts it on the same ports and log directory (the data survive).
    ``config`` adds or overrides broker settings. ``security`` opens secured listeners
    besides the PLAINTEXT one (:mod:`stream.kafka.broker_security`); their addresses are
    :meth:`bootstrap_for`.

    >>> broker = ApacheKafkaBroker(port=0)
    >>> broker.port > 0 and broker.controller_port > 0 and broker.port != broker.controller_port
    True
    """

    name = "Apache Kafka"
    ready_poll_s = 0.2

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        controller_port: int = 0,
        log_dir: Path | None = None,
        log_path: Path | None = None,
        config: Mapping[str, str] | None = None,
        ready_timeout_s: float = 90.0,
        log_level: str = "INFO",
        security: BrokerSecurity | None = None,
    ) -> None:
        super().__init__(host, port, log_path, ready_timeout_s)
        self.controller_port = controller_port or _another_free_port(host, self.port)
        self.security = security
        taken = {self.port, self.controller_port}
        #: Port of each secured listener, by listener name (``SASL``, ``MTLS``).
        self.listener_ports: dict[str, int] = {}
        for name in security.listeners() if security else ():
            self.listener_ports[name] = port = _free_port_besides(host, taken)
            taken.add(port)
        self._own_dir = log_dir is None
        self._log_dir = log_dir
        self.config = dict(config or {})
        self.log_level = log_level

    def bootstrap_for(self, listener: str) -> str:
        """The address of the secured listener ``listener`` (``SASL`` or ``MTLS``)."""
        if listener not in self.listener_ports:
            raise BrokerError(f"no {listener} listener: start the broker with security= for it")
        return f"{self.host}:{self.listener_ports[listener]}"

    @property
    def log_dir(self) -> Path:
        """Configuration and data; a temporary folder (made on first use) unless given."""
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="streamlearn-kafka-"))
        return self._log_dir

    @property
    def data_dir(self) -> Path:
        return self.log_dir / "data"

    def server_properties(self) -> dict[str, str]:
        """The broker's configuration (what ``server.properties`` holds)."""
        config = {
            **BASE_CONFIG,
            "listeners": f"PLAINTEXT://{self.host}:{self.port},"
            f"CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "log.dirs": str(self.data_dir),
        }
        if self.security is not None:
            config |= self._secured_listeners(self.security, config)
        return {**config, **self.config}

    def _secured_listeners(
        self, security: BrokerSecurity, config: dict[str, str]
    ) -> dict[str, str]:
        # Each listener advertises itself: a client bootstrapped on it is sent back to it.
        addresses = "".join(
            f",{name}://{self.host}:{port}" for name, port in self.listener_ports.items()
        )
        protocols = "".join(
            f",{name}:{protocol}" for name, protocol in security.listeners().items()
        )
        return {
            "listeners": config["listeners"] + addresses,
            "advertised.listeners": config["advertised.listeners"] + addresses,
            "listener.security.protocol.map": BASE_CONFIG["listener.security.protocol.map"]
            + protocols,
            **security.properties(),
        }

    def _write_configs(self) -> Path:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        properties = self.log_dir / "server.properties"
        properties.write_text(
            "".join(f"{key}={value}\n" for key, value in self.server_properties().items())
        )
        write_log4j_config(self.log_dir / "log4j2.properties", self.log_level, "SYSTEM_OUT")
        return properties

    def _jvm_options(self) -> list[str]:
        return [*JVM_OPTIONS, f"-Dlog4j2.configurationFile={self.log_dir / 'log4j2.properties'}"]

    def _format_storage(self, properties: Path) -> None:
        # Formatting writes meta.properties into the log dir; a restart must keep the data.
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = _cluster_id()
        users = self.security.format_arguments() if self.security else []
        command = java_command(
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(properties),
            "--ignore-formatted",
            *users,
            jvm_options=self._jvm_options(),
        )
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BrokerError(f"kafka-storage format failed: {(done.stdout + done.stderr)[-2000:]}")

    def ports(self) -> tuple[int, int]:
        return (self.port, self.controller_port)

    def command(self) -> list[str]:
        properties = self._write_configs()
        self._format_storage(properties)
        return java_command("kafka.Kafka", str(properties), jvm_options=self._jvm_options())

    def answers(self) -> bool:
        """The broker answers a metadata request listing itself and a controller."""
        if not listening(self.host, self.port):
            return False  # not yet: spare the admin client its connection errors
        admin = None
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, request_timeout_ms=3000
            )
            cluster = admin.describe_cluster()
            return bool(cluster.get("brokers")) and cluster.get("controller_id", -1) != -1
        except (KafkaError, OSError, ValueError):
            return False
        finally:
            if admin is not None:
                admin.close()

    def close(self) -> None:
        """Stop, and remove the log directory if this launcher made it."""
        self.stop()
        if self._own_dir and self._log_dir is not None:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None


def _another_free_port(host: str, taken: int) -> int:
    return _free_port_besides(host, {taken})


def _free_port_besides(host: str, taken: set[int]) -> int:
    port = free_port(host)
    while port in taken:
        port = free_port(host)
    return port


def _cluster_id() -> str:
    """A fresh cluster id as Kafka makes them: a random UUID, 22 characters of base64url.

    Never one that starts with "-", as Kafka's own: a command line would take it for an option.

    >>> ids = [_cluster_id() for _ in range(200)]
    >>> {len(i) for i in ids}, any(i.startswith("-") for i in ids)
    ({22}, False)
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stream.kafka.apache [--fetch-only]``: fetch the jars, run a broker."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m stream.kafka.apache", description=main.__doc__)
    parser.add_argument(
        "--fetch-only",
        action="store_true",
        help="fetch the jars (if not yet) and print their folder",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.fetch_only:
            print(f"Apache Kafka {kafka_version()} jars: {fetch_jars(quiet=False)}")
            return 0
        return run_foreground(args.host, args.port)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_foreground(host: str = "127.0.0.1", port: int = 0) -> int:
    """Run a broker until Ctrl-C or SIGTERM, its data in a temporary folder removed after."""
    broker = ApacheKafkaBroker(host, port)
    return run_in_foreground(
        broker,
        lambda _: (
            f"Apache Kafka {kafka_version()} ready: --bootstrap-servers "
            f"{broker.bootstrap_servers}  (data: {broker.data_dir}; Ctrl-C stops it)"
        ),
    )


if __name__ == "__main__":
    raise SystemExit(main())
