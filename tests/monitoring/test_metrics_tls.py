"""``/metrics`` and ``/healthz`` over HTTPS (issue 16): a certificate made here with openssl,
the exporter on its own, then the real daemon scraped over https by the real Prometheus."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitoring.exceptions import MonitoringError
from monitoring.exporter import MetricsServer, TlsFiles
from monitoring.metrics import StreamlearnMetrics
from tests.integration.daemon_process import DaemonProcess, Feeder
from tests.integration.kafka_helpers import create_topic
from tests.monitoring.prometheus_server import PrometheusServer, free_port
from tests.waiting import wait_until


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    )  # fmt: skip
    return TlsFiles(cert, key)


def _client(certificate: TlsFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate.certfile))


def _get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_metrics_and_health_are_served_over_https_only(certificate: TlsFiles) -> None:
    registry = CollectorRegistry()
    StreamlearnMetrics(registry, "9.9.9")
    server = MetricsServer(registry, lambda: (False, "starting"), "127.0.0.1", 0, certificate)
    server.start()
    try:
        assert server.scheme == "https"
        base = f"https://127.0.0.1:{server.port}"
        # A client that connects and says nothing holds up no one: handshakes run in
        # each connection's own thread.
        with socket.create_connection(("127.0.0.1", server.port)):
            status, body = _get(f"{base}/metrics", _client(certificate))
        assert status == 200 and 'streamlearn_build_info{version="9.9.9"} 1.0' in body
        assert _get(f"{base}/healthz", _client(certificate))[0] == 503
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            _get(f"http://127.0.0.1:{server.port}/metrics")  # plain HTTP is not answered
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            _get(f"{base}/metrics", ssl.create_default_context())  # an unknown issuer
    finally:
        server.stop()


def test_an_encrypted_key_fails_at_start_instead_of_prompting(
    certificate: TlsFiles, tmp_path: Path
) -> None:
    encrypted = tmp_path / "encrypted.pem"
    _openssl(
        "pkey",
        "-in",
        str(certificate.keyfile),
        "-out",
        str(encrypted),
        "-aes256",
        "-passout",
        "pass:secret",
    )
    server = MetricsServer(
        CollectorRegistry(), lambda: (True, ""), "127.0.0.1", 0,
        TlsFiles(certificate.certfile, encrypted),
    )  # fmt: skip
    with pytest.raises(MonitoringError, match="encrypted"):
        server.start()
    with pytest.raises(MonitoringError, match="cannot serve metrics over TLS"):
        MetricsServer(
            CollectorRegistry(), lambda: (True, ""), "127.0.0.1", 0,
            TlsFiles(certificate.keyfile, certificate.keyfile),
        ).start()  # fmt: skip


@pytest.mark.integration
@pytest.mark.prometheus
def test_prometheus_scrapes_the_daemon_over_https(
    certificate: TlsFiles, kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic_name)
    feeder = Feeder(kafka_bootstrap, topic_name)
    feeder.send(200)
    feeder.close()
    daemon = DaemonProcess(
        kafka_bootstrap,
        topic_name,
        tmp_path / "daemon.log",
        {
            "state-dir": tmp_path / "state",
            "metrics-tls-certfile": certificate.certfile,
            "metrics-tls-keyfile": certificate.keyfile,
        },
        port=free_port(),
    )
    scrape = {
        "scheme": "https",
        "tls_config": {"ca_file": str(certificate.certfile), "server_name": "localhost"},
    }
    with daemon, PrometheusServer(tmp_path / "prometheus", [daemon.target], scrape=scrape) as prom:
        query = f'streamlearn_learned_events{{topic="{topic_name}"}}'
        wait_until(
            lambda: [float(s["value"][1]) for s in prom.series(query)] == [200.0],
            60,
            "Prometheus to scrape the 200 learned events over https",
            details=lambda: f"{prom.targets_up()}\n{daemon.log_tail()}",
        )
        (target,) = prom.targets_up()
        assert target["health"] == "up" and target["scrapeUrl"].startswith("https://")
        assert f"metrics on https://127.0.0.1:{daemon.port}/metrics" in daemon.log()
