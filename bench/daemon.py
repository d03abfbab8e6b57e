"""The real daemon, ``python -m stream run``, as a child process the benchmark can watch.

Progress is read from its own ``/metrics`` endpoint and its memory from
``/proc/<pid>/status``; timings come from the predictions it publishes (see
:func:`bench.timeline.throughput`), so the scrapes cost it almost nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.workload import Context
from stream.kafka.tansu import free_port
from stream.settings import ENV_PREFIX, RunSettings

# How often the benchmark reads a daemon's /metrics to see whether it is done. Rates come
# from prediction timestamps, so this only sets how soon the end is noticed; scraping
# every 50 ms cost the daemon 0.5-0.8 µs an event.
POLL_S = 0.5


def checkpoint_options(workdir: Path) -> dict[str, Any]:
    """Checkpoints as shipped: on, in a fresh directory, when this build has them."""
    if "state_dir" in RunSettings.model_fields:
        return {"state_dir": workdir / "state"}
    return {}


class DaemonProcess:
    """``streamlearn run`` in a child process; a context manager that always stops it."""

    def __init__(
        self,
        ctx: Context,
        topic: str,
        model: str,
        *,
        group: str,
        predictions_topic: str | None = None,
        options: dict[str, Any] | None = None,
        profile_to: Path | None = None,
    ) -> None:
        self.ctx = ctx
        self.topic = topic
        self.model = model
        self.group = group
        self.predictions_topic = predictions_topic
        self.options = {**checkpoint_options(ctx.workdir / group), **(options or {})}
        self.profile_to = profile_to
        self.port = free_port()
        self.log_path = ctx.workdir / f"daemon-{group}-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        values: dict[str, Any] = {
            "bootstrap_servers": self.ctx.bootstrap,
            "topic": self.topic,
            "group_id": self.group,
            "model": self.model,
            "metrics_host": "127.0.0.1",
            "metrics_port": self.port,
            "session_timeout_ms": self.ctx.session_timeout_ms,
            # A safety net: a daemon the benchmark lost track of still exits.
            "stop_after_idle": 60,
            "predictions_topic": self.predictions_topic,
            **self.options,
        }
        args = []
        for key, value in values.items():
            # A list setting (--challenger) is its option repeated.
            for item in value if isinstance(value, list | tuple) else (value,):
                if item is not None:
                    args.append(f"--{key.replace('_', '-')}={item}")
        if self.profile_to is None:
            return [sys.executable, "-m", "stream", "run", *args]
        return [
            sys.executable,
            "-m",
            "pyinstrument",
            "--renderer",
            "text",
            "--outfile",
            str(self.profile_to),
            "-m",
            "stream",
            "run",
            *args,
        ]

    def start(self) -> DaemonProcess:
        self.ctx.workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        with open(self.log_path, "ab") as sink:
            self._process = subprocess.Popen(
                self.command(), stdout=sink, stderr=subprocess.STDOUT, env=env
            )
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def learned(self) -> float:
        """``streamlearn_events_total{outcome="learned"}`` over all partitions (0 if no answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "streamlearn_events"
            for sample in family.samples
            if sample.name == "streamlearn_events_total" and sample.labels["outcome"] == "learned"
        )

    def wait_learned(self, count: int, timeout_s: float) -> None:
        """Block until ``count`` events were learned; fail if it exits or takes too long."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(
                    f"the daemon exited with {self._process.returncode}; see {self.log_path}"
                )
            if self.learned() >= count:
                return
            time.sleep(POLL_S)
        raise RuntimeError(
            f"the daemon learned {self.learned():.0f} of {count} events in "
            f"{timeout_s:.0f} s; see {self.log_path}"
        )

    def rss_bytes(self) -> int:
        """Resident set size from ``/proc/<pid>/status`` (VmRSS, reported in kB)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (the daemon flushes and commits), then SIGKILL if it does not exit."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
