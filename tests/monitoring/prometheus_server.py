"""A real Prometheus server for tests: the project's config and rules, on loopback.

:class:`PrometheusServer` writes a config derived from the shipped
``monitoring/prometheus/prometheus.yml`` (same job, same rule files unless told
otherwise, the scrape target rewritten to the daemons under test, every interval
shortened to one second), starts ``/usr/bin/prometheus`` (Debian package
``prometheus``, ``make prometheus``) on a free loopback port with its TSDB in a
temporary directory, waits for ``/-/ready`` and stops the server on exit. Query
helpers talk to its HTTP API with urllib; every call and wait is bounded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import yaml

from monitoring.dashboard import PROMETHEUS_CONFIG, RULE_FILES
from stream.kafka.tansu import free_port
from tests.waiting import wait_until

PROMETHEUS = "/usr/bin/prometheus"
# One second: rates over the dashboard's 1m windows have many samples within seconds.
INTERVAL = "1s"


def prometheus_binary() -> str:
    """The Prometheus server binary, or skip the test saying how to install it."""
    path = PROMETHEUS if Path(PROMETHEUS).is_file() else shutil.which("prometheus")
    if path is None:
        pytest.skip("prometheus not installed: run `make prometheus` (Debian package prometheus)")
    return path


def derived_config(
    targets: Sequence[str], rule_files: Iterable[Path], scrape: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The shipped config with ``targets`` scraped, ``rule_files`` loaded, 1 s intervals;
    ``scrape`` adds keys to the job (``scheme: https`` and its ``tls_config``).

    >>> config = derived_config(["127.0.0.1:9999"], RULE_FILES)
    >>> config["scrape_configs"][0]["static_configs"]
    [{'targets': ['127.0.0.1:9999']}]
    >>> config["global"]["scrape_interval"], config["global"]["evaluation_interval"]
    ('1s', '1s')
    """
    with open(PROMETHEUS_CONFIG, encoding="utf-8") as f:
        config: dict[str, Any] = yaml.safe_load(f)
    config["global"].update(
        scrape_interval=INTERVAL, scrape_timeout=INTERVAL, evaluation_interval=INTERVAL
    )
    # Absolute paths: the derived config lives in a temporary directory.
    config["rule_files"] = [str(Path(path).resolve()) for path in rule_files]
    (job,) = config["scrape_configs"]  # the shipped config scrapes one job: streamlearn
    job["static_configs"] = [{"targets": list(targets)}]
    job.update(scrape or {})
    return config


class PrometheusError(AssertionError):
    """Prometheus did not start, or answered an API call with an error."""


class PrometheusServer:
    """A Prometheus process scraping ``targets``, used as a context manager.

    ``rule_files`` defaults to the shipped recording and alerting rules; tests that
    need a shortened rule pass a rewritten copy. ``scrape`` adds keys to the scrape job.
    """

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        rule_files: Iterable[Path] = RULE_FILES,
        start_timeout_s: float = 30.0,
        scrape: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir
        self.targets = list(targets)
        self.scrape = scrape
        self.rule_files = [Path(path) for path in rule_files]
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.log_path = workdir / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> PrometheusServer:
        binary = prometheus_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "prometheus.yml"
        config = derived_config(self.targets, self.rule_files, self.scrape)
        config_path.write_text(yaml.safe_dump(config))
        self.port = free_port()
        command = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        def ready() -> bool:
            if self._process is not None and self._process.poll() is not None:
                raise PrometheusError(f"prometheus exited at start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, OSError):
                return False  # not listening yet, or 503 while the TSDB opens

        wait_until(
            ready,
            self.start_timeout_s,
            "prometheus to be ready",
            every_s=0.2,
            details=self.log_tail,
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # -- the HTTP API -----------------------------------------------------------------

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """The JSON answer of ``/api/v1/<path>``; a 4xx with an error body is returned too,
        so a query that does not parse reads as ``{"status": "error", "error": ...}``."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            body = error.read()  # Prometheus explains a bad query in the body of a 400
        answer: dict[str, Any] = json.loads(body)
        return answer

    def query(self, expr: str) -> dict[str, Any]:
        """The raw answer of an instant query (status, data or error)."""
        return self.api("query", query=expr)

    def series(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query that must succeed."""
        answer = self.query(expr)
        if answer.get("status") != "success":
            raise PrometheusError(f"query failed: {expr}\n{answer.get('error')}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending or firing), each with labels, state and value."""
        alerts: list[dict[str, Any]] = self.api("alerts")["data"]["alerts"]
        return alerts

    def rule_groups(self) -> list[dict[str, Any]]:
        """Loaded rule groups, each with its rules' health and last error."""
        groups: list[dict[str, Any]] = self.api("rules")["data"]["groups"]
        return groups

    def targets_up(self) -> list[dict[str, Any]]:
        """Active scrape targets with their health."""
        targets: list[dict[str, Any]] = self.api("targets")["data"]["activeTargets"]
        return targets
