"""The daemon loop on fake ports and a fake clock: hold-back, pause/resume, retrain slices,
rebalances during a retrain, the outage watch, commits, idle stop and checkpoint order.

The loop, the partition table, the replayer, the learners, the checkpoint codec and the
publisher are the real ones; only the ports (``stream/ports.py``) and time are fakes
(``fakes.py``). The same behaviours against the real broker: tests/integration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.daemon.loop import LoopTiming
from stream.exceptions import BrokerUnavailable, CommitRefused, PublishTimeout, StreamError
from stream.ports import TopicPartition
from tests.stream.daemon.fakes import (
    TOPIC,
    TP0,
    TP1,
    FakeClock,
    Harness,
    Journal,
    MemoryStore,
    encoded_records,
    flip_stream,
)

# A cycle of 10 ms and 1 ms per record: the deadline is looked at every 64 records, so
# a cycle handles 64 records and holds the rest back.
SLOW = {"send_cost_s": 0.001, "timing": LoopTiming(cycle_budget_s=0.01)}


def handled(h: Harness, tp: TopicPartition) -> int:
    slot = h.table.slots.get(tp)
    return 0 if slot is None or slot.next_offset is None else slot.next_offset


# -- backlog, hold-back, pause and resume -------------------------------------------------


def test_past_the_cycle_deadline_the_rest_is_held_back_and_the_partition_paused(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, **SLOW)  # type: ignore[arg-type]
    h.source.append(encoded_records(TP0, flip_stream(300)))
    h.start(TP0)

    h.cycle()
    slot = h.slot(TP0)
    assert slot.next_offset == 64
    assert [r.offset for r in slot.backlog] == list(range(64, 300))
    assert h.journal.of("pause") == [("pause", TP0)]
    assert TP0 in h.source.paused

    per_cycle = []
    for _ in range(10):
        before = handled(h, TP0)
        h.cycle()
        per_cycle.append(handled(h, TP0) - before)
        if not slot.backlog:
            break
    assert per_cycle == [64, 64, 64, 44]  # the backlog drains a cycle's worth at a time
    assert h.sink.predicted_offsets(TP0) == list(range(300))  # each once, in order
    assert h.journal.of("resume") == [("resume", TP0)]  # once, when the backlog emptied
    assert TP0 not in h.source.paused


def test_records_polled_behind_a_backlog_join_it_and_keep_their_order(tmp_path: Path) -> None:
    h = Harness(tmp_path, **SLOW)  # type: ignore[arg-type]
    records = encoded_records(TP0, flip_stream(300))
    h.start(TP0)
    # The second answer arrives although the partition is paused (a fetch that completed
    # before the pause): it must wait behind the records held back from the first.
    h.source.scripted.extend([{TP0: records[:200]}, {TP0: records[200:]}])

    h.cycle(2)
    assert [r.offset for r in h.slot(TP0).backlog] == list(range(128, 300))
    h.cycle(5)
    assert h.sink.predicted_offsets(TP0) == list(range(300))
    assert h.slot(TP0).sequence.gaps == h.slot(TP0).sequence.duplicates == 0


def test_a_busy_loop_polls_without_waiting_and_an_idle_one_waits(tmp_path: Path) -> None:
    h = Harness(tmp_path, **SLOW)  # type: ignore[arg-type]
    h.source.append(encoded_records(TP0, flip_stream(200)))
    h.start(TP0)
    h.cycle(6)
    # Records held back are work: the polls between do not wait for new data (a paused
    # partition cannot bring any); once drained, the loop waits for records again.
    assert h.source.poll_timeouts == [500, 0, 0, 0, 500, 500]


# -- retrains -------------------------------------------------------------------------------

# 600 events of one concept then its opposite on partition 0; a steady stream on partition 1.
FLIP_AT = 600
POOL = 200  # min_retrain_events: the replayed range ends at the drift
LIVE_SLICE = 25


def retraining(
    tmp_path: Path, partitions: tuple[TopicPartition, ...] = (TP0, TP1), **overrides: object
) -> Harness:
    options: dict[str, object] = {
        "drift_action": "retrain",
        "timing": LoopTiming(live_slice_during_replay=LIVE_SLICE, retrain_budget_s=0.1),
        "max_records": 200,
        "per_read": 20,
        "read_cost_s": 0.03,  # four reads per 100 ms slice: 80 records
        "learner_options": {"min_retrain_events": POOL, "holdout_events": 60},
        **overrides,
    }
    h = Harness(tmp_path, **options)  # type: ignore[arg-type]
    h.source.append(encoded_records(TP0, flip_stream(1_500, flip_at=FLIP_AT)))
    h.source.append(encoded_records(TP1, flip_stream(1_500, seed=2)))
    h.start(*partitions)
    return h


def cycle_until_drift(h: Harness) -> int:
    """Cycles until partition 0 drifted and its replay started; the drift's offset."""
    for _ in range(20):
        h.cycle()
        if h.journal.of("replay_start"):
            (drift,) = h.run_log("drift")
            assert drift["action"] == "retrain"
            return int(drift["offset"])
    raise AssertionError("no retrain was requested")


def test_a_retrain_replays_in_slices_while_its_partition_is_held_back(tmp_path: Path) -> None:
    h = retraining(tmp_path)
    drift_at = cycle_until_drift(h)
    assert FLIP_AT <= drift_at < FLIP_AT + 100
    # The replay reads the range that ADWIN's window estimated, up to the drift.
    assert h.journal.of("replay_start") == [("replay_start", TP0, drift_at + 1 - POOL)]
    slot = h.slot(TP0)
    assert slot.replaying and TP0 in h.source.paused
    assert handled(h, TP0) == drift_at + 1 + LIVE_SLICE  # the drift's batch, then one slice

    slices, live, other = [len(h.reader.reads)], [], []
    while h.replayer.busy:
        reads, before, before_other = len(h.reader.reads), handled(h, TP0), handled(h, TP1)
        h.cycle()
        slices.append(len(h.reader.reads) - reads)
        live.append(handled(h, TP0) - before)
        other.append(handled(h, TP1) - before_other)
        assert len(slices) < 20, "the replay does not advance"

    replayed = [(offset, count) for tp, offset, count in h.reader.reads if tp == TP0]
    assert replayed[0][0] == drift_at + 1 - POOL
    assert sum(count for _, count in replayed) >= POOL
    # Slices: each cycle reads at most what its 100 ms budget allows (one read may start
    # just before the budget ends), and the replay took more than one cycle.
    assert len(slices) >= 3 and max(slices) <= 4
    # Meanwhile partition 0 is served a slice per cycle; partition 1 is not slowed.
    assert live[:-1] == [LIVE_SLICE] * (len(live) - 1)
    assert all(count == 200 for count in other[: len(other) - 1])

    h.cycle(10)
    (decision,) = h.run_log("retrain")
    # Decided by the paired test (learners/decision.py), with its figures in the run log:
    # rejected no earlier than the 60 holdout events, promoted as soon as clearly better.
    assert decision["trained_on"] == POOL
    assert decision["reason"] in ("clearly better", "clearly better on the pool", "clearly worse")
    assert decision["wins"] + decision["losses"] >= 10
    assert decision["result"] == "promoted" or decision["evaluated_on"] >= 60
    labels = {"topic": "events", "partition": 0, "result": decision["result"]}
    assert h.sample("streamlearn_retrains_total", **labels) == 1
    assert h.journal.of("resume") == [("resume", TP0)]
    assert h.sink.predicted_offsets(TP0) == list(range(1_500))


def test_a_revoked_partition_cancels_its_replay_and_resumes_it_from_the_start_on_return(
    tmp_path: Path,
) -> None:
    h = retraining(tmp_path)
    drift_at = cycle_until_drift(h)
    start = drift_at + 1 - POOL
    held = handled(h, TP0)
    assert h.replayer.busy

    h.source.revoke_on_next_poll(TP0)
    h.cycle()
    assert TP0 not in h.table.slots and not h.replayer.busy
    # Checkpointed on the way out at what it had handled, the held-back records dropped.
    assert ("save", TP0, held) in h.journal
    reads = len(h.reader.reads)
    h.cycle(3)
    assert len(h.reader.reads) == reads, "a revoked partition's replay went on"

    h.source.assign_on_next_poll(TP0)
    h.cycle()
    assert ("seek", TP0, held) in h.journal  # the checkpoint's offset, not the group's
    assert h.journal.of("replay_start") == [("replay_start", TP0, start)] * 2
    h.cycle(30)
    # The whole range again, into a fresh candidate, then one decision.
    again = [(offset, count) for _, offset, count in h.reader.reads[reads:]]
    assert again[0][0] == start and sum(count for _, count in again) >= POOL
    (decision,) = h.run_log("retrain")
    assert decision["trained_on"] >= POOL
    learner, sequence = h.slot(TP0).learner, h.slot(TP0).sequence
    assert learner.retrain is None and learner.learned == 1_500
    assert sequence.gaps == sequence.duplicates == 0


def test_the_run_log_records_partitions_arriving_and_leaving(tmp_path: Path) -> None:
    h = Harness(tmp_path, checkpoint_every_events=100)
    h.source.append(encoded_records(TP0, flip_stream(100)))
    h.start(TP0)
    h.cycle()
    h.source.revoke_on_next_poll(TP0)
    h.source.assign_on_next_poll(TP0)
    h.cycle()
    lines = [
        (line["kind"], line["offset"], line["learned"], line.get("restored"))
        for line in h.run_log("assigned") + h.run_log("revoked")
    ]
    assert sorted(lines) == [
        ("assigned", -1, 0, False),
        ("assigned", 99, 100, True),
        ("revoked", 99, 100, None),
    ]


# -- the outage watch -------------------------------------------------------------------------


def test_an_unreachable_broker_makes_the_daemon_not_ready_until_it_answers(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, timing=LoopTiming(outage_timeout_s=10.0))
    h.start(TP0)
    h.cycle()
    assert h.daemon.ready()[0] and h.sample("streamlearn_ready") == 1

    h.source.up = False
    h.cycle(19)  # 9.5 s of polls that wait in vain: within the outage timeout
    ready, detail = h.daemon.ready()
    assert not ready and "unreachable" in detail
    assert h.sample("streamlearn_ready") == 0

    h.source.up = True
    h.cycle()
    assert h.daemon.ready()[0] and h.sample("streamlearn_ready") == 1


def test_past_the_outage_timeout_the_loop_gives_up(tmp_path: Path) -> None:
    h = Harness(tmp_path, timing=LoopTiming(outage_timeout_s=3.0))
    h.source.up = False
    started = h.clock()
    with pytest.raises(StreamError, match="unreachable"):
        h.run()
    assert 3.0 < h.clock() - started <= 4.0
    assert h.sample("streamlearn_ready") == 0


# -- commits ------------------------------------------------------------------------------------


def test_only_checkpointed_offsets_are_committed(tmp_path: Path) -> None:
    h = Harness(tmp_path, checkpoint_every_events=150, max_records=100)
    h.source.append(encoded_records(TP0, flip_stream(500)))
    h.start(TP0)
    for _ in range(5):
        h.cycle()
        h.clock.advance(2.0)  # past the commit interval every cycle
    saved = [offset for _, _, offset in h.journal.of("save")]
    committed = [offsets[TP0] for _, offsets, _ in h.journal.of("commit")]
    assert handled(h, TP0) == 500
    assert saved == [200, 400] and committed == [200, 400]


def test_without_checkpoints_handled_offsets_are_committed_at_the_commit_interval(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, checkpoints=False, timing=LoopTiming(commit_interval_s=1.0))
    records = encoded_records(TP0, flip_stream(400))
    h.start(TP0)
    for n in range(20):  # 20 records every 0.25 s
        h.source.scripted.append({TP0: records[20 * n : 20 * (n + 1)]})
        h.cycle()
        h.clock.advance(0.25)
    # A commit each second, of what was handled by then: 4 cycles' worth each.
    first = h.journal.of("commit")[0][2]
    commits = [(at - first, offsets) for _, offsets, at in h.journal.of("commit")]
    assert commits == [(0.0, {TP0: 100}), (1.0, {TP0: 180}), (2.0, {TP0: 260}), (3.0, {TP0: 340})]


def test_a_commit_waits_for_the_publisher_to_confirm_the_outputs(tmp_path: Path) -> None:
    h = Harness(tmp_path, checkpoints=False, timing=LoopTiming(commit_interval_s=1.0))
    h.source.append(encoded_records(TP0, flip_stream(100)))
    h.start(TP0)
    h.sink.flush_errors.append(PublishTimeout("not confirmed"))
    h.cycle()
    h.clock.advance(1.0)
    h.cycle()
    assert h.journal.of("commit") == []  # the outputs were not confirmed: no commit
    h.clock.advance(1.0)
    h.cycle()
    kinds = [kind for kind in h.journal.kinds() if kind in ("flush", "commit")]
    assert kinds == ["flush", "flush", "commit"]
    assert h.source.committed_offsets == {TP0: 100}


@pytest.mark.parametrize("error", [CommitRefused("rebalanced"), BrokerUnavailable("no answer")])
def test_a_refused_or_failed_commit_is_survived_and_retried(
    tmp_path: Path, error: Exception
) -> None:
    h = Harness(tmp_path, checkpoint_every_events=100, timing=LoopTiming(commit_interval_s=1.0))
    h.source.append(encoded_records(TP0, flip_stream(100)))
    h.start(TP0)
    h.source.commit_errors.append(error)
    h.cycle()  # checkpoint at 100; its commit fails
    assert h.journal.of("save") == [("save", TP0, 100)]
    assert h.source.committed_offsets == {} and h.slot(TP0).committed_offset is None
    h.clock.advance(1.0)
    h.cycle()
    assert h.source.committed_offsets == {TP0: 100} and h.slot(TP0).committed_offset == 100
    assert len(h.journal.of("commit")) == 2


# -- idle stop ----------------------------------------------------------------------------------


def test_the_loop_stops_after_being_idle_and_checkpoints_what_it_handled(tmp_path: Path) -> None:
    h = Harness(tmp_path, timing=LoopTiming(stop_after_idle_s=2.0))
    h.source.append(encoded_records(TP0, flip_stream(100)))
    h.start(TP0)
    assert h.run() == 0
    assert h.sink.predicted_offsets(TP0) == list(range(100))
    assert h.journal.of("save")[-1] == ("save", TP0, 100)
    assert h.source.committed_offsets == {TP0: 100}
    assert h.source.poll_timeouts.count(500) == 5  # 2 s of empty polls after the last records


class SlowStore(MemoryStore):
    """Each load takes ``load_s`` of the fake clock, as a checkpoint topic read does."""

    def __init__(self, journal: Journal, clock: FakeClock, load_s: float) -> None:
        super().__init__(journal)
        self.clock, self.load_s = clock, load_s

    def load(self, topic: str, partition: int) -> bytes | None:
        self.clock.advance(self.load_s)
        return super().load(topic, partition)


def test_idleness_counts_from_the_end_of_the_restores_not_the_start_of_the_join(
    tmp_path: Path,
) -> None:
    # Four restores of 1.5 s each take longer than the idle limit: the records waiting
    # for the partitions are work the loop has not had a chance to poll yet.
    h = Harness(tmp_path, timing=LoopTiming(stop_after_idle_s=2.0))
    h.store = SlowStore(h.journal, h.clock, load_s=1.5)
    h.daemon = h._build()
    h.source.nothing_after_rebalance = True
    tps = [TopicPartition(TOPIC, p) for p in range(4)]
    for tp in tps:
        h.source.append(encoded_records(tp, flip_stream(50)))
    h.start(*tps)
    assert h.run() == 0
    for tp in tps:
        assert h.sink.predicted_offsets(tp) == list(range(50))


def test_held_back_records_are_work_not_idleness(tmp_path: Path) -> None:
    # 50 ms a record: a cycle's 64 records take 3.2 s, longer than the idle limit; the
    # partition stays paused meanwhile, with more records behind the 100 held back.
    timing = LoopTiming(stop_after_idle_s=2.0, cycle_budget_s=0.01)
    h = Harness(tmp_path, timing=timing, send_cost_s=0.05, max_records=100)
    h.source.append(encoded_records(TP0, flip_stream(300)))
    h.start(TP0)
    assert h.run() == 0
    assert h.sink.predicted_offsets(TP0) == list(range(300))


def test_a_replay_is_work_not_idleness(tmp_path: Path) -> None:
    # One partition, held back while it replays: no record arrives for longer than the
    # idle limit, but the replay (and the records held back behind it) are work.
    timing = LoopTiming(stop_after_idle_s=0.2, live_slice_during_replay=LIVE_SLICE)
    h = retraining(tmp_path, partitions=(TP0,), timing=timing)
    assert h.run() == 0
    assert len(h.run_log("retrain")) == 1
    assert h.sink.predicted_offsets(TP0) == list(range(1_500))


# -- checkpoint order -----------------------------------------------------------------------------


def assert_outputs_flushed_before_each_save(h: Harness, tp: TopicPartition) -> None:
    """Every save at offset N follows a flush that covered the outputs of offsets < N."""
    sends = 0
    flushed_at = -1
    predicted = h.sink.predicted_offsets(tp)
    for call in h.journal:
        if call[0] == "flush":
            flushed_at = call[1]
        elif call[0] == "save" and call[1] == tp:
            sends = predicted.index(call[2] - 1) + 1
            assert flushed_at >= sends, f"checkpoint at {call[2]} before its outputs were flushed"


def test_a_checkpoint_flushes_then_saves_then_commits(tmp_path: Path) -> None:
    h = Harness(
        tmp_path,
        checkpoint_every_events=100,
        max_records=100,
        timing=LoopTiming(stop_after_idle_s=1.0),
    )
    h.source.append(encoded_records(TP0, flip_stream(250)))
    h.start(TP0)
    assert h.run() == 0  # checkpoints when due, then one at the stop

    order = [call for call in h.journal if call[0] in ("flush", "save", "commit")]
    saves = [call for call in order if call[0] == "save"]
    assert [offset for _, _, offset in saves] == [100, 200, 250]
    for save in saves:
        at = order.index(save)
        assert order[at - 1][0] == "flush"
        commit = next(call for call in order[at:] if call[0] == "commit")
        assert commit[1] == {TP0: save[2]}
        assert order[order.index(commit) - 1][0] == "flush"
    assert_outputs_flushed_before_each_save(h, TP0)


def test_an_unconfirmed_flush_postpones_the_checkpoint(tmp_path: Path) -> None:
    h = Harness(tmp_path, checkpoint_every_events=100, max_records=100)
    h.source.append(encoded_records(TP0, flip_stream(200)))
    h.start(TP0)
    h.sink.flush_errors.append(PublishTimeout("not confirmed"))
    h.cycle()
    assert h.journal.of("save") == [] and h.journal.of("commit") == []
    h.cycle()
    assert h.journal.of("save") == [("save", TP0, 200)]
    assert h.source.committed_offsets == {TP0: 200}
