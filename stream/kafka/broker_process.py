"""What the two broker launchers share: one broker child process on a loopback port.

:class:`BrokerProcess` runs the command a launcher builds (:mod:`stream.kafka.tansu`,
:mod:`stream.kafka.apache`) in a session of its own, its output appended to a log file,
waits until the launcher's own readiness check passes, and stops it (SIGTERM, then kill -9)
or kills it. ``pid`` is the broker itself, never a wrapper script, so the tests can freeze
it with SIGSTOP and thaw it with SIGCONT.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from stream.exceptions import BrokerError

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port``.

    SO_REUSEADDR as the brokers' own server sockets: a port whose connections linger in
    TIME_WAIT after a kill is free for a restarted broker, a listening one never is.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def listening(host: str, port: int) -> bool:
    """True when a connection to ``host:port`` is accepted."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class BrokerProcess:
    """A broker process on ``host:port``: a context manager, or ``start()`` / ``stop()``.

    Subclasses give :meth:`command` (what to run, after any preparation), :meth:`answers`
    (is it ready) and ``name`` (for messages). After ``stop()`` or ``kill()``, ``start()``
    runs it again on the same port.
    """

    name = "the broker"
    ready_poll_s = 0.05

    def __init__(self, host: str, port: int, log_path: Path | None, ready_timeout_s: float) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def ports(self) -> Sequence[int]:
        """The ports the broker listens on, each refused at start when taken."""
        return (self.port,)

    def command(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        raise NotImplementedError

    def start(self) -> Self:
        if self.running:
            return self
        # A broker may not exit when its port is taken, and a client would then reach
        # the other listener: check first.
        for port in self.ports():
            if not port_is_free(self.host, port):
                raise BrokerError(f"port {port} on {self.host} is already in use")
        command = self.command()
        sink = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            # A session of its own: Ctrl-C in a terminal signals the whole foreground group,
            # and the broker must outlive the clients that are still shutting down.
            self._process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            if self.log_path:
                sink.close()  # type: ignore[union-attr]
        started = time.monotonic()
        self.wait_ready()
        log.info(
            "%s ready on %s in %.1fs", self.name, self.bootstrap_servers, time.monotonic() - started
        )
        return self

    def wait_ready(self) -> None:
        """Until :meth:`answers` says yes; stopped and refused if it exits or the time is up."""
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                where = f" (its output: {self.log_path})" if self.log_path else ""
                raise BrokerError(
                    f"{self.name} exited with code {self._process.returncode} at start{where}"
                )
            if self.answers():
                return
            time.sleep(self.ready_poll_s)
        self.stop()
        raise BrokerError(
            f"{self.name} did not answer on {self.bootstrap_servers} "
            f"within {self.ready_timeout_s:.0f}s"
        )

    @property
    def pid(self) -> int | None:
        """The broker process id (tests freeze it with SIGSTOP to simulate an outage)."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self) -> int:
        """Block until the broker process exits; returns its exit code."""
        if self._process is None:
            raise BrokerError("the broker was never started")
        return self._process.wait()

    def kill(self) -> None:
        """kill -9: no shutdown, nothing flushed beyond what the OS already has."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        """A controlled shutdown (SIGTERM); kill -9 if it takes longer than ``timeout_s``."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs: killed", self.name, timeout_s)
            self.kill()

    def close(self) -> None:
        """Stop; launchers that own files remove them too."""
        self.stop()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def run_in_foreground(broker: BrokerProcess, banner: Callable[[BrokerProcess], str]) -> int:
    """Run ``broker`` until Ctrl-C or SIGTERM, printing ``banner`` once it answers; then
    close it (``streamlearn broker``, ``make kafka``)."""
    # Interrupt the wait below; stopping from inside the handler would race that wait.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        broker.start()
        print(banner(broker), flush=True)
        broker.wait()
    except KeyboardInterrupt:
        pass
    finally:
        broker.close()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
