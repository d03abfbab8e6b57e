"""Where published records go: a :class:`BatchProducer` in this process, or in a child.

``ProcessSink`` moves the sending to a child process: the daemon ships each batch of
ready-made records through a pipe (one pickle per batch) and the child encodes and sends
them. ``flush`` is a round trip: it returns once the child's producer has flushed
everything shipped before it, and raises if any send failed, so offsets are committed
only for outputs that are in Kafka.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from stream.exceptions import PublishError, PublishTimeout
from stream.kafka.batch_producer import BatchProducer
from stream.ports import Headers

log = logging.getLogger(__name__)

__all__ = ["ProcessSink"]

Output = tuple[str, bytes, bytes | None, Headers, int]  # ..., timestamp in ms

#: Records kept before a shipment even within a batch (bounds the pipe's message size).
SHIP_EVERY = 2000
#: How often an idle child moves its sends along.
IDLE_PUMP_S = 0.02


class ProcessSink:
    """Ships records to a child process that owns the producer."""

    def __init__(self, producer_config: dict[str, Any]) -> None:
        """``producer_config``: the keyword arguments of :class:`BatchProducer`."""
        context = multiprocessing.get_context("spawn")  # no fork of a threaded client
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child_conn, producer_config),
            name="streamlearn-publisher",
            daemon=True,
        )
        self._process.start()
        child_conn.close()
        self._pending: list[Output] = []
        self._expect_ready()

    def _expect_ready(self) -> None:
        reply = self._receive(timeout_s=60.0)
        if reply != ("ready", []):
            raise PublishError(f"the publisher process did not start: {reply[1]}")

    def send(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        # Stamped here, when the output was made, not when the child gets to it.
        self._pending.append((topic, value, key, headers, int(time.time() * 1000)))
        if len(self._pending) >= SHIP_EVERY:
            self.ship()

    def ship(self) -> None:
        if self._pending:
            self._write(("records", self._pending))
            self._pending = []

    def flush(self, timeout_s: float = 30.0) -> None:
        self.ship()
        self._write(("flush", timeout_s))
        kind, failures = self._receive(timeout_s + 30.0)
        if kind == "timeout":
            raise PublishTimeout(failures[0])
        if kind != "flushed" or failures:
            raise PublishError(
                f"{len(failures)} send(s) failed, first: {failures[0]}"
                if failures
                else f"the publisher process answered {kind!r}"
            )

    def _write(self, message: tuple[str, Any]) -> None:
        try:
            self._conn.send(message)
        except (BrokenPipeError, OSError) as exc:
            raise PublishError(f"the publisher process is gone: {exc}") from exc

    def _receive(self, timeout_s: float) -> tuple[str, list[str]]:
        if not self._conn.poll(timeout_s):
            raise PublishTimeout(f"the publisher process did not answer in {timeout_s:.0f} s")
        try:
            reply: tuple[str, list[str]] = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise PublishError(f"the publisher process is gone: {exc}") from exc
        return reply

    def close(self) -> None:
        try:
            self._write(("close", None))
            self._process.join(timeout=15)
        except PublishError:
            pass
        if self._process.is_alive():
            self._process.kill()
        self._conn.close()


def _serve(conn: Connection, producer_config: dict[str, Any]) -> None:
    """The child: send what arrives, flush and report failures when asked."""
    # Ctrl-C and a group-wide SIGTERM reach this process too; the daemon decides when
    # it ends (a close message, or end-of-file when the daemon itself is gone).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        sink = BatchProducer(**producer_config)
    except Exception as exc:
        conn.send(("failed", [repr(exc)]))
        return
    conn.send(("ready", []))
    while True:
        # Between messages the child keeps its sends moving: answers are read and
        # retries sent even while the daemon is busy learning.
        if not conn.poll(IDLE_PUMP_S):
            sink.ship()
            continue
        try:
            kind, body = conn.recv()
        except EOFError:  # the daemon is gone; what it shipped is flushed by close()
            break
        if kind == "records":
            for topic, value, key, headers, timestamp_ms in body:
                sink.send(topic, value, key, headers, timestamp_ms)
            sink.ship()
        elif kind == "flush":
            try:
                sink.flush(body)
                conn.send(("flushed", []))
            except PublishTimeout as exc:
                conn.send(("timeout", [str(exc)]))
            except PublishError as exc:
                conn.send(("flushed", [str(exc)]))
        elif kind == "close":
            break
    sink.close()
