"""The benchmark's code paths on a tiny stream against the real broker: every row is there.

No timing is asserted (tests never do); the figures of a run this small mean nothing.
On one broker only: it shows the benchmark's sections yield their rows, not Kafka
behaviour (`make bench` runs the benchmark itself on both brokers).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bench.__main__ import parse, plan_from
from bench.report import TARGETS, Row, render
from bench.runner import Bench, Plan
from bench.workload import MODELS, Context
from tests.conftest import one_broker

pytestmark = pytest.mark.integration

EXPECTED = [
    *(f"throughput.{m}.{c}" for m in MODELS for c in ("limit", "naive", "peer", "streamlearn")),
    *(f"ratio.{m}.{c}" for m in MODELS for c in ("limit", "naive", "peer")),
    "latency.p50",
    "latency.p99",
    "memory.early",
    "memory.late",
    "memory.growth",
    "scaling.one",
    "scaling.two",
    "scaling.ratio",
    "retrain.pause",
    "profile.LR",
    "challengers.0",
    "challengers.1",
    "challengers.3",
    *(f"split.{m}.{k}" for m in MODELS for k in ("one", "child", "gain")),
]


@one_broker()
def test_every_section_yields_its_rows(kafka_bootstrap: str, tmp_path: Path) -> None:
    # A short session timeout: Tansu waits one before each new group's first assignment.
    ctx = Context(kafka_bootstrap, tmp_path, session_timeout_ms=2000)
    plan = replace(
        Plan.quick(events=600), retrain_stationary=2000, retrain_after=800, retrain_replay=500
    )
    rows = Bench(ctx, plan, tmp_path / "latest.md").run()

    errors = [row.value for row in rows if row.error]
    assert not errors
    keys = [row.key for row in rows]
    assert [key for key in EXPECTED if key not in keys] == []
    assert any(key.startswith("anatomy.LR.") for key in keys)
    assert (tmp_path / "profile-LR.txt").read_text().strip()
    # Every target of issue 5 is printed next to a measured figure with a verdict.
    by_key = {row.key: row for row in rows}
    for key in TARGETS:
        assert by_key[key].measured is not None
        assert by_key[key].status in ("PASS", "MISS")
    table = render(rows, "test machine")
    assert table.count("\n| ") == len(rows) + 1  # the header, then one line per row


def test_options_select_plans() -> None:
    assert plan_from(parse(["--quick"])).runs == 1
    assert plan_from(parse(["--events", "5000"])).events == 5000
    assert plan_from(parse(["--only", "peer"])).contenders == ("peer",)
    assert plan_from(parse(["--only", "retrain"])).sections == ("retrain",)
    full = plan_from(parse([]))
    assert full.runs >= 3 and full.memory_early == 200_000 and full.memory_late == 1_000_000


def test_a_row_without_target_has_no_verdict() -> None:
    assert Row("throughput.LR.limit", "x", "1").status == ""
    assert Row("ratio.LR.peer", "x", "1.2", 1.2).status == "PASS"
    assert Row("ratio.LR.peer", "x", "0.9", 0.9).status == "MISS"
