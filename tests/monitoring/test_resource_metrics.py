"""Memory, CPU and model size on the daemon's registry: the standard runtime collectors,
the per-partition model size with its bound, and the warning when a model passes it."""

from __future__ import annotations

import logging
import platform
import sys

import pytest
from prometheus_client import CollectorRegistry

from monitoring.metrics import StreamlearnMetrics

LIMIT = 10_000
LOGGER = "monitoring.model_size"


def _size(registry: CollectorRegistry, partition: str = "0") -> float | None:
    return registry.get_sample_value(
        "streamlearn_model_bytes", {"topic": "events", "partition": partition}
    )


def test_process_platform_and_gc_collectors_are_on_a_fresh_registry() -> None:
    registry = CollectorRegistry()
    StreamlearnMetrics(registry)
    rss = registry.get_sample_value("process_resident_memory_bytes")
    assert rss is not None and rss > 1_000_000  # an interpreter with River is megabytes
    cpu = registry.get_sample_value("process_cpu_seconds_total")
    assert cpu is not None and cpu > 0
    labels = {
        "implementation": platform.python_implementation(),
        "major": str(sys.version_info.major),
        "minor": str(sys.version_info.minor),
        "patchlevel": str(sys.version_info.micro),
        "version": platform.python_version(),
    }
    assert registry.get_sample_value("python_info", labels) == 1
    for generation in ("0", "1", "2"):
        collections = registry.get_sample_value(
            "python_gc_collections_total", {"generation": generation}
        )
        assert collections is not None


def test_model_size_is_exported_from_the_first_measure_and_forgotten_with_the_partition() -> None:
    registry = CollectorRegistry()
    metrics = StreamlearnMetrics(registry, max_model_bytes=LIMIT)
    watch = metrics.partition("events", 0).model_size
    assert _size(registry) is None  # no checkpoint yet: no size, rather than a 0
    watch.observe(1234)
    assert _size(registry) == 1234
    watch.observe(2345)
    assert _size(registry) == 2345
    assert registry.get_sample_value("streamlearn_model_bytes_limit") == LIMIT
    metrics.forget_partition("events", 0)
    assert _size(registry) is None


def test_a_model_past_the_bound_is_warned_about_once_per_crossing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = StreamlearnMetrics(CollectorRegistry(), max_model_bytes=LIMIT)
    watch = metrics.partition("events", 3).model_size
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for size in (LIMIT - 1, LIMIT, LIMIT + 1, 2 * LIMIT, 3 * LIMIT):
        watch.observe(size)
    (first,) = caplog.records
    assert first.levelno == logging.WARNING
    assert "events[3]" in first.getMessage() and f"{LIMIT + 1} bytes" in first.getMessage()
    watch.observe(LIMIT // 2)  # a reset: back under the bound
    watch.observe(LIMIT + 5)
    assert len(caplog.records) == 2
    assert f"{LIMIT + 5} bytes" in caplog.records[1].getMessage()


def test_without_a_bound_there_is_no_limit_series_and_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    metrics = StreamlearnMetrics(registry)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    metrics.partition("events", 0).model_size.observe(10**12)
    assert registry.get_sample_value("streamlearn_model_bytes_limit") is None
    assert _size(registry) == 10**12
    assert caplog.records == []
