"""Every exported metric has help text and a row in docs/metrics.md."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from learners.outcomes import Scores
from monitoring.metrics import StreamlearnMetrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


# Families of prometheus_client's standard process, platform and GC collectors.
STANDARD_PREFIXES = ("process_", "python_")


def _families() -> list[tuple[str, str, str]]:
    registry = CollectorRegistry()
    metrics = StreamlearnMetrics(registry, "test", max_model_bytes=1 << 20)
    partition = metrics.partition("t", 0)
    partition.show_scores(Scores("accuracy", 1.0, 1.0, 0.5, 0.5))
    metrics.partition("t", 1).show_scores(Scores("mae", 1.0, 1.0, 2.0, 2.0, 1.5, 1.5))
    partition.model_size.observe(1000)
    return [(f.name, f.type, f.documentation) for f in registry.collect()]


def test_every_metric_is_documented_with_help_text() -> None:
    doc = DOC.read_text()
    for name, kind, help_text in _families():
        exported = f"{name}_total" if kind == "counter" else name
        assert help_text.strip(), name
        assert f"`{exported}`" in doc, f"{exported} is missing from docs/metrics.md"


def test_counters_and_units_follow_prometheus_naming() -> None:
    for name, _, _ in _families():
        if name.startswith(STANDARD_PREFIXES):
            continue  # named by prometheus_client
        assert name.startswith("streamlearn_")
        assert not name.endswith("_total"), "prometheus_client appends _total itself"
        if "seconds" in name:
            assert name.endswith("_seconds"), name


def test_the_standard_runtime_collectors_are_exported() -> None:
    names = {name for name, _, _ in _families()}
    # Families carry counters without their _total suffix.
    wanted = {"process_resident_memory_bytes", "process_cpu_seconds", "python_info"}
    wanted |= {"python_gc_objects_collected", "python_gc_collections"}
    assert wanted <= names
