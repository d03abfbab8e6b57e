"""Run ``python -m stream run`` as a real subprocess: kill it, stop it, scrape it, read its state.

The reliability tests need what an operator has: a process that can die by SIGKILL at
any instruction, its ``/metrics`` and ``/healthz``, its run event log (``--event-log``,
kept next to its log), and the checkpoints it left behind. Tests wait on those (with
:func:`tests.waiting.wait_until`), never on the wording of the log. They also need
input whose per-partition ``seq`` keeps counting across several writes (the
``produce`` command restarts it at 0 each run), which :class:`Feeder` provides. The
command-line tests and the monitoring tests (on a port fixed in advance, as the target
of a real Prometheus) use the same :class:`DaemonProcess`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from learners.checkpoint import Checkpoint, decode_checkpoint
from learners.state import PartitionState
from stream.checkpoints.stores import LocalDirectoryStore
from stream.kafka.checkpoint_topic import KafkaTopicStore
from stream.tools.generators import concept_stream
from stream.tools.produce import encode_event
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
_METRICS_LINE = re.compile(r"metrics on http://[^:/]+:(\d+)/metrics")


@dataclass
class DaemonProcess:
    """One ``streamlearn run`` subprocess; ``options`` are CLI options without the ``--``.

    ``env`` adds environment variables (the checkpoint key is environment-only);
    every other ``STREAMLEARN_*`` variable of the test process is dropped, so the
    daemon sees exactly the settings the test gives it; an option given as None is
    left out (so the environment or ``--config`` may set it). ``port`` 0 lets the daemon
    pick its metrics port (read back from its log); a Prometheus scraping it needs
    the port in advance. The run event log goes to ``event_log`` (by default next to
    the log), appended to by every run. Used as a context manager it is shut down by
    SIGTERM, as an orchestrator would stop it.
    """

    bootstrap: str
    topic: str
    log_path: Path
    options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    event_log: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _log_start: int = 0
    _event_log_start: int = 0

    def __post_init__(self) -> None:
        if self.event_log is None:
            self.event_log = self.log_path.with_suffix(".events.jsonl")

    def command(self) -> list[str]:
        values = {
            "bootstrap-servers": self.bootstrap,
            "topic": self.topic,
            # One group per topic: tests sharing a broker must never share a group.
            "group-id": f"g-{self.topic}",
            "metrics-host": "127.0.0.1",
            "metrics-port": self.port,
            "session-timeout-ms": 2000,
            "event-log": self.event_log,
            **self.options,
        }
        args = [sys.executable, "-m", "stream", "run"]
        for name, value in values.items():
            if value is not None:
                args += [f"--{name}", str(value)]
        return args

    def start(self) -> DaemonProcess:
        """Start (or restart) the process, appending to the same log file."""
        assert self.process is None or self.process.poll() is not None, "still running"
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLEARN_")}
        env.update(self.env)
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        assert self.event_log is not None
        self._event_log_start = self.event_log.stat().st_size if self.event_log.exists() else 0
        with open(self.log_path, "ab") as sink:
            self.process = subprocess.Popen(
                self.command(), cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has been waited for, else None."""
        return None if self.process is None else self.process.returncode

    @property
    def target(self) -> str:
        """``host:port`` of /metrics, for a Prometheus scrape config."""
        assert self.port, "a scrape target needs a port chosen before the start"
        return f"127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self, whole: bool = False) -> str:
        """This run's log (or every run's, with ``whole``)."""
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_bytes()
        return text[0 if whole else self._log_start :].decode(errors="replace")

    def run_log(self, kind: str | None = None, whole: bool = False) -> list[dict[str, Any]]:
        """This run's run-log lines (every run's, with ``whole``), of ``kind`` if given."""
        if self.event_log is None or not self.event_log.exists():
            return []
        text = self.event_log.read_bytes()[0 if whole else self._event_log_start :]
        lines = []
        for line in text.decode(errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # the last line, half-written while the daemon runs
        return [line for line in lines if kind is None or line["kind"] == kind]

    def restored(self, whole: bool = False) -> list[int]:
        """Partitions assigned with their checkpoint restored, in order (this run's)."""
        return [line["partition"] for line in self.run_log("assigned", whole) if line["restored"]]

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` of this run's log, for failure messages."""
        text = self.log()
        return "\n".join(text.splitlines()[-lines:]) if text else "(no log)"

    # -- signals ------------------------------------------------------------------------

    def kill(self) -> int:
        """SIGKILL: no handler runs, nothing is flushed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=30)

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then wait for the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """Make sure the process is gone (test teardown)."""
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=30)

    def shutdown(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, SIGKILL if it outlives ``timeout_s``; the exit code, None if killed."""
        if self.running():
            try:
                self.terminate(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.returncode

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()

    def peak_rss_bytes(self) -> int:
        """The process's peak resident set so far (VmHWM), 0 when it is gone."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except (OSError, AssertionError):
            return 0
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) * 1024 if match else 0

    # -- HTTP ---------------------------------------------------------------------------

    def metrics_port(self) -> int | None:
        if self.port:
            return self.port
        match = _METRICS_LINE.search(self.log())
        return int(match.group(1)) if match else None

    def _get(self, path: str) -> tuple[int, str] | None:
        port = self.metrics_port()
        if port is None or not self.running():
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return None

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``/metrics`` keyed by (name, sorted labels); empty if unreachable."""
        answer = self._get("/metrics")
        if answer is None or answer[0] != 200:
            return {}
        samples = {}
        for family in text_string_to_metric_families(answer[1]):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def metric_sum(self, name: str, **labels: Any) -> float:
        """Sum of ``name`` over the series whose labels include ``labels``."""
        wanted = {(k, str(v)) for k, v in labels.items()}
        return sum(
            value
            for (sample, series), value in self.scrape().items()
            if sample == name and wanted <= set(series)
        )

    def metric(self, name: str, **labels: Any) -> float:
        """Like :meth:`metric_sum`, but fails the test when ``/metrics`` does not answer."""
        assert self.scrape(), "the daemon's /metrics does not answer"
        return self.metric_sum(name, **labels)

    def healthz(self) -> int | None:
        """The /healthz status code, or None while nothing answers."""
        answer = self._get("/healthz")
        return None if answer is None else answer[0]

    def health(self) -> dict[str, Any] | None:
        """The /healthz answer (``ready``, ``detail``), or None while nothing answers."""
        answer = self._get("/healthz")
        return None if answer is None else dict(json.loads(answer[1]))

    def wait_until(
        self, condition: Callable[[], object], timeout_s: float, what: str, every_s: float = 0.2
    ) -> None:
        """:func:`tests.waiting.wait_until`, failing at once if the process exits, and with
        the tail of its log."""

        def alive_and(condition: Callable[[], object] = condition) -> object:
            # A daemon that died would otherwise cost the whole timeout.
            assert self.running(), f"the daemon exited with {self.returncode}:\n{self.log_tail()}"
            return condition()

        wait_until(alive_and, timeout_s, what, every_s, details=self.log_tail)

    def wait_assigned(self, timeout_s: float = 60.0) -> None:
        """Wait until this run was assigned a partition of the topic (its series appear on
        /metrics: set up before the first batch)."""

        def assigned() -> bool:
            return any(
                name == "streamlearn_events_total" and dict(labels).get("topic") == self.topic
                for name, labels in self.scrape()
            )

        self.wait_until(assigned, timeout_s, f"a partition of {self.topic} assigned", 0.3)

    def wait_serving(self, timeout_s: float = 60.0) -> None:
        """Wait until this run answers /healthz: its signal handlers are in place, so a
        SIGTERM from now on ends it cleanly."""
        self.wait_until(lambda: self.healthz() is not None, timeout_s, "/healthz to answer")


@contextlib.contextmanager
def daemons(*processes: DaemonProcess) -> Iterator[tuple[DaemonProcess, ...]]:
    """Kill whatever is still running when the test ends, pass or fail."""
    try:
        yield processes
    finally:
        for process in processes:
            process.stop()


# -- checkpoints ------------------------------------------------------------------------


def local_checkpoint(
    state_dir: Path, topic: str, partition: int, key: bytes | None = None
) -> Checkpoint | None:
    blob = LocalDirectoryStore(state_dir).load(topic, partition)
    return None if blob is None else decode_checkpoint(blob, key=key)


def checkpointed_offset(state_dir: Path, topic: str, partition: int = 0) -> int | None:
    """Where the local checkpoint of the partition resumes, None when there is none."""
    checkpoint = local_checkpoint(state_dir, topic, partition)
    return None if checkpoint is None else checkpoint.next_offset


def kafka_checkpoint(
    bootstrap: str, checkpoint_topic: str, topic: str, partition: int, key: bytes | None = None
) -> Checkpoint | None:
    store = KafkaTopicStore(bootstrap, checkpoint_topic)
    try:
        blob = store.load(topic, partition)
    finally:
        store.close()
    return None if blob is None else decode_checkpoint(blob, key=key)


def state_of(checkpoint: Checkpoint | None) -> PartitionState:
    assert checkpoint is not None, "no checkpoint"
    assert isinstance(checkpoint.state, PartitionState)
    return checkpoint.state


# -- input ------------------------------------------------------------------------------


class Feeder:
    """Writes canonical events round-robin to a topic's partitions, ``seq`` never restarting.

    Event ``i`` goes to partition ``i % partitions`` like ``streamlearn produce`` does;
    successive :meth:`send` calls continue the stream and every partition's ``seq``.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int = 1,
        seed: int = 7,
        generator: str = "sea",
        drift_at: tuple[int, ...] = (),
        **producer_config: Any,
    ) -> None:
        self.topic = topic
        self.partitions = partitions
        self.seed = seed
        self.produced = [0] * partitions
        self._events = concept_stream(generator, seed=seed, drift_at=drift_at)
        self._index = 0
        config = {"linger_ms": 20, **producer_config}  # e.g. enable_idempotence=True
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, **config)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._delivery_errors: list[BaseException] = []

    @property
    def total(self) -> int:
        return sum(self.produced)

    def send(self, count: int, rate: float | None = None) -> None:
        """Send ``count`` events (at ``rate`` events/s if given) and wait for their delivery."""
        started = time.monotonic()
        for n in range(count):
            if rate is not None:
                delay = started + n / rate - time.monotonic()
                if delay > 0.001:
                    time.sleep(delay)
            features, label = next(self._events)
            partition = self._index % self.partitions
            value = encode_event(
                f"{self.seed}-{self._index}", features, label, self.produced[partition]
            )
            future = self._producer.send(self.topic, value=value, partition=partition)
            future.add_errback(self._delivery_errors.append)
            self.produced[partition] += 1
            self._index += 1
        self._producer.flush(timeout=120)
        # A lost send would make "learned == produced" wrong for a reason not under test.
        assert not self._delivery_errors, f"sends failed: {self._delivery_errors[:3]}"

    def send_in_background(self, count: int, rate: float) -> None:
        def target() -> None:
            try:
                self.send(count, rate)
            except BaseException as exc:  # surfaced by join()
                self._failure = exc

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()

    def sending(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout_s: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)
            assert not self._thread.is_alive(), "the feeder did not finish in time"
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        self._producer.close(timeout=10)
