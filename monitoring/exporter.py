"""Serve ``/metrics`` (Prometheus text) and ``/healthz`` (readiness) from one small HTTP server.

``/healthz`` answers 200 while the daemon is ready (connected and consuming) and 503
with the reason otherwise, so an orchestrator can tell a daemon waiting for its broker
from a working one.

With :class:`TlsFiles` (``--metrics-tls-certfile`` and ``--metrics-tls-keyfile``) both are
served over HTTPS only (TLS 1.2 or later). The TLS handshake runs in the connection's own
thread with a timeout, so a client that connects and stalls never holds up the others.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from monitoring.exceptions import MonitoringError

log = logging.getLogger(__name__)

#: Longest a connection may stall (TLS handshake, request, each write), in seconds.
CONNECTION_TIMEOUT_S = 10.0

#: Returns (ready, detail) for /healthz.
HealthCheck = Callable[[], tuple[bool, str]]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass(frozen=True)
class TlsFiles:
    """The server certificate (PEM, with its chain) and its unencrypted private key."""

    certfile: Path
    keyfile: Path

    def context(self) -> ssl.SSLContext:
        """A server context, or :class:`MonitoringError` saying why the files do not do."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            # A password callback that refuses: OpenSSL would otherwise prompt on the
            # terminal for an encrypted key, and a daemon would hang there.
            context.load_cert_chain(self.certfile, self.keyfile, password=_no_password)
        except (OSError, ssl.SSLError, _EncryptedKey) as exc:
            raise MonitoringError(
                f"cannot serve metrics over TLS with certificate {self.certfile} and key "
                f"{self.keyfile}: {exc}"
            ) from None
        return context


class _EncryptedKey(Exception):
    pass


def _no_password() -> str:
    raise _EncryptedKey("the private key is encrypted; give an unencrypted one")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A failed handshake or a client gone mid-answer: theirs to fix, not a traceback.
        log.debug("metrics connection from %s failed", client_address, exc_info=True)


class _QuietHandler(WSGIRequestHandler):
    timeout = CONNECTION_TIMEOUT_S

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()  # here, in this connection's thread
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the daemon's log."""


def build_app(registry: CollectorRegistry, health: HealthCheck) -> Callable[..., Iterable[bytes]]:
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            ready, detail = health()
            body = json.dumps({"ready": ready, "detail": detail}).encode()
            status = "200 OK" if ready else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        if path in ("/", "/metrics"):
            return metrics_app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]

    return app


class MetricsServer:
    """The exporter's HTTP(S) server on a background thread; port 0 picks a free port."""

    def __init__(
        self,
        registry: CollectorRegistry,
        health: HealthCheck,
        host: str = "0.0.0.0",
        port: int = 9464,
        tls: TlsFiles | None = None,
    ) -> None:
        self.registry = registry
        self.health = health
        self.host = host
        self.port = port
        self.tls = tls
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def start(self) -> MetricsServer:
        context = self.tls.context() if self.tls is not None else None  # fails before binding
        self._server = make_server(
            self.host,
            self.port,
            build_app(self.registry, self.health),
            server_class=_ThreadingServer,
            handler_class=_QuietHandler,
        )
        if context is not None:
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
