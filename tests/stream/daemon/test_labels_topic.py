"""Late labels on their own topic (``--labels-topic``), on the fakes: the join across the
two topics in record-time order, both offsets checkpointed and restored, the refusal of an
assignment that is not co-partitioned, and what is not a label dead-lettered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream.daemon.labels_topic import MAX_QUEUED, MAX_WAIT_S, LabelsTopic
from stream.daemon.loop import LoopTiming
from stream.exceptions import SettingsError, StreamError
from stream.kafka.admin import co_partition_count
from stream.ports import SourceRecord, TopicPartition
from stream.settings import RunSettings
from stream.tools.produce import encode_event, encode_label
from tests.stream.daemon.fakes import (
    DEAD_LETTERS,
    PREDICTIONS,
    TOPIC,
    TP0,
    TP1,
    FakeClock,
    FakeSource,
    Harness,
    Journal,
    flip_stream,
)

LABELS = "labels"
L0, L1 = TopicPartition(LABELS, 0), TopicPartition(LABELS, 1)
IDLE = LoopTiming(stop_after_idle_s=2.0)


def delayed_stream(
    tp: TopicPartition,
    count: int,
    delay: int,
    labels_topic: str | None,
    flip_at: int | None = None,
) -> list[SourceRecord]:
    """Events without their label, and before event i the label of event i - delay (the
    last ``delay`` close the stream), record times 1 ms apart in that order. With
    ``labels_topic`` the labels go there (same partition number), else in-band. From
    event ``flip_at`` on the concept flips (a drift)."""
    ops: list[tuple[bool, bytes]] = []
    pairs = list(flip_stream(count, flip_at, seed=tp.partition + 3))
    ids = [f"{tp.partition}-{i}" for i in range(count)]
    for i, (features, _) in enumerate(pairs):
        if i >= delay:
            ops.append((True, encode_label(ids[i - delay], pairs[i - delay][1])))
        ops.append((False, encode_event(ids[i], features, None, i)))
    for i in range(max(count - delay, 0), count):
        ops.append((True, encode_label(ids[i], pairs[i][1])))
    offsets: dict[str, int] = {}
    records = []
    for ms, (is_label, value) in enumerate(ops):
        topic = labels_topic if is_label and labels_topic else tp.topic
        offset = offsets.get(topic, 0)
        offsets[topic] = offset + 1
        records.append(SourceRecord(topic, tp.partition, offset, value, None, 1_000_000 + ms))
    return records


def labelled_harness(tmp_path: Path, **options: object) -> Harness:
    return Harness(tmp_path, timing=IDLE, labels_topic=LABELS, **options)  # type: ignore[arg-type]


def in_band_accuracy(tmp_path: Path, count: int, delay: int) -> float:
    h = Harness(tmp_path / "in-band", timing=IDLE)
    h.source.append(delayed_stream(TP0, count, delay, None))
    h.start(TP0)
    assert h.run() == 0
    return h.slot(TP0).learner.cumulative.get()


def test_labels_fetched_ahead_of_their_events_join_as_in_band_ones(tmp_path: Path) -> None:
    # Both logs are full before the daemon starts, and every poll brings 500 labels with
    # 500 events: without the record-time merge most labels would find no prediction.
    (tmp_path / "in-band").mkdir()
    count, delay = 1_500, 100
    h = labelled_harness(tmp_path)
    h.source.append(delayed_stream(TP0, count, delay, LABELS))
    h.start(TP0, L0)
    assert h.run() == 0
    learner = h.slot(TP0).learner
    pending = learner.pending
    assert pending is not None
    assert (pending.joined, pending.unknown, pending.duplicate, pending.expired) == (count, 0, 0, 0)
    assert learner.learned == count and len(pending) == 0
    assert learner.cumulative.get() == in_band_accuracy(tmp_path, count, delay)
    # Both offsets are checkpointed and committed.
    assert h.source.committed_offsets == {TP0: count, L0: count}
    assert h.slot(TP0).state.labels_offset == count


def test_a_labels_partition_fetched_late_still_gives_the_in_band_accuracy(
    tmp_path: Path,
) -> None:
    # The first polls bring events only: they wait for the labels that precede them in
    # time instead of being predicted before those labels are learned.
    (tmp_path / "in-band").mkdir()
    count, delay = 1_500, 100
    h = labelled_harness(tmp_path)
    h.source.append(delayed_stream(TP0, count, delay, LABELS))
    h.source.fetch_delays[L0] = 5
    h.start(TP0, L0)
    assert h.run() == 0
    learner = h.slot(TP0).learner
    pending = learner.pending
    assert pending is not None
    assert (pending.joined, pending.unknown, pending.expired) == (count, 0, 0)
    assert learner.cumulative.get() == in_band_accuracy(tmp_path, count, delay)
    assert ("pause", TP0) in h.journal  # the events partition waited
    assert not h.sample("streamlearn_label_waits_expired_total", topic=TOPIC, partition="0")


def labels_then_silence(count: int, silent: int) -> list[SourceRecord]:
    """``delayed_stream`` (labels 10 late) followed by ``silent`` unlabelled events whose
    labels never come."""
    records = delayed_stream(TP0, count, 10, LABELS)
    after = 1 + max(r.timestamp for r in records)
    base = sum(1 for r in records if r.topic == TOPIC)
    for i in range(silent):
        value = encode_event(f"silent-{i}", {"x": float(i)}, None, base + i)
        records.append(SourceRecord(TOPIC, 0, base + i, value, None, after + i))
    return records


def test_an_idle_labels_topic_does_not_hold_events_back(tmp_path: Path) -> None:
    # The labels partition, read to its high watermark, has nothing more to say: the
    # events after its last label go at once (the fake clock never reaches the max wait).
    h = labelled_harness(tmp_path)
    h.source.append(labels_then_silence(200, 300))
    h.start(TP0, L0)
    started = h.clock()
    assert h.run() == 0
    slot = h.slot(TP0)
    assert slot.next_offset == 500
    assert h.sample("streamlearn_events_total", topic=TOPIC, partition="0", outcome="predicted")
    assert not h.sample("streamlearn_label_waits_expired_total", topic=TOPIC, partition="0")
    assert h.clock() - started < MAX_WAIT_S


def test_a_labels_partition_never_fetched_holds_events_back_at_most_the_max_wait(
    tmp_path: Path,
) -> None:
    h = labelled_harness(tmp_path)
    h.source.append(delayed_stream(TP0, 300, 20, LABELS))
    h.source.fetch_delays[L0] = 10**6  # its broker never answers
    h.start(TP0, L0)
    started = h.clock()
    h.cycle(3)
    assert h.slot(TP0).next_offset is None  # waiting, not stopped for idleness
    assert h.daemon.labels is not None and h.daemon.labels.waiting(TP0)
    assert h.run() == 0
    assert h.clock() - started >= MAX_WAIT_S
    assert h.slot(TP0).next_offset == 300
    assert h.sample("streamlearn_label_waits_expired_total", topic=TOPIC, partition="0") == 1


def test_after_a_crash_each_label_is_joined_once(tmp_path: Path) -> None:
    count, delay = 1_200, 50
    h = labelled_harness(tmp_path, checkpoint_every_events=300, max_records=100)
    h.source.append(delayed_stream(TP0, count, delay, LABELS))
    h.start(TP0, L0)
    for _ in range(40):  # part of the stream, and some checkpoints in between
        h.cycle()
        if len(h.journal.of("save")) >= 2:
            break
    h.cycle()  # handled past the last checkpoint: lost in the crash, read again
    saved = h.journal.of("save")
    assert len(saved) >= 2
    events_at, labels_at = saved[-1][2], h.slot(TP0).labels_checkpointed
    assert labels_at is not None and h.slot(TP0).state.labels_offset != labels_at
    # kill -9: no final checkpoint; a new process restores the last one and seeks both.
    h.daemon = h._build()
    h.start(TP0, L0)
    assert h.run() == 0
    seeks = [call[1:] for call in h.journal.of("seek")[-2:]]
    learner = h.slot(TP0).learner
    pending = learner.pending
    assert pending is not None
    assert seeks == [(TP0, events_at), (L0, labels_at)]
    assert (pending.joined, pending.unknown, pending.duplicate) == (count, 0, 0)
    assert learner.learned == pending.joined == count
    assert h.source.committed_offsets == {TP0: count, L0: count}


def test_two_partitions_join_within_each(tmp_path: Path) -> None:
    h = labelled_harness(tmp_path)
    for tp in (TP0, TP1):
        h.source.append(delayed_stream(tp, 300, 20, LABELS))
    h.start(TP0, TP1, L0, L1)
    assert h.run() == 0
    for tp in (TP0, TP1):
        pending = h.slot(tp).learner.pending
        assert pending is not None and (pending.joined, pending.unknown) == (300, 0)


def test_an_assignment_that_is_not_co_partitioned_is_refused(tmp_path: Path) -> None:
    h = labelled_harness(tmp_path)
    h.source.append(delayed_stream(TP0, 10, 2, LABELS))
    h.start(TP0, L1)  # labels of partition 1 with the events of partition 0
    with pytest.raises(StreamError, match=r"not co-partitioned .*events partitions \[0\]"):
        h.cycle()


def test_what_is_not_a_label_on_the_labels_topic_is_dead_lettered(tmp_path: Path) -> None:
    h = labelled_harness(tmp_path)
    h.source.append([SourceRecord(TOPIC, 0, 0, encode_event("a", {"x": 1.0}, None, 0), None, 1)])
    bad = [encode_event("b", {"x": 1.0}, True, 0), b"{nope", encode_label("a", True)]
    h.source.append([SourceRecord(LABELS, 0, n, v, None, 10 + n) for n, v in enumerate(bad)])
    h.start(TP0, L0)
    assert h.run() == 0
    letters = [(v, dict(hd or [])) for t, v, _, hd in h.sink.sent if t == DEAD_LETTERS]
    reasons = [headers["streamlearn.reason"].decode() for _, headers in letters]
    assert reasons == ["not_a_label", "not_json"]
    assert h.slot(TP0).learner.learned == 1
    assert h.source.committed_offsets[L0] == 3
    assert h.sample("streamlearn_dead_letters_total", reason="not_a_label") == 1


def test_the_settings_refuse_a_labels_topic_that_cannot_work() -> None:
    base = {"bootstrap_servers": "localhost:9092", "topic": "events"}
    with pytest.raises(ValueError, match="labels_topic must differ"):
        RunSettings(**base, labels_topic="events")  # type: ignore[arg-type]
    assert RunSettings(**base, labels_topic="labels").labels_topic == "labels"  # type: ignore[arg-type]


def test_the_settings_take_a_labels_topic_with_retrain() -> None:
    # A retrain's replay reads the labels topic too (daemon/labels_replay.py).
    settings = RunSettings(
        bootstrap_servers="localhost:9092", topic="events", labels_topic="labels",
        drift_action="retrain",
    )  # fmt: skip
    assert (settings.labels_topic, settings.drift_action) == ("labels", "retrain")


def test_the_partition_counts_must_match_and_both_topics_exist() -> None:
    assert co_partition_count("e", "l", {"e": 4, "l": 4}) == 4
    with pytest.raises(SettingsError, match="has 2 partitions and the events topic 'e' 4"):
        co_partition_count("e", "l", {"e": 4, "l": 2})
    with pytest.raises(SettingsError, match="labels topic 'l' does not exist"):
        co_partition_count("e", "l", {"e": 4, "l": None})


def test_a_checkpoint_from_before_the_labels_topic_restores(tmp_path: Path) -> None:
    # A state pickled before the field existed reads None: the labels partition then
    # starts where the group committed (no seek).
    from learners.state import PartitionState

    state = PartitionState.__new__(PartitionState)
    state.__dict__.update({"learner": None, "sequence": None})
    assert state.labels_offset is None


# -- a retrain's replay and a rebuild read the labels topic too ----------------------------

DECISION = ("result", "candidate_score", "serving_score", "trained_on", "evaluated_on")


def retrained(tmp_path: Path, labels_topic: str | None) -> Harness:
    """A drifting stream, labels 30 events late, through a daemon that retrains."""
    h = Harness(tmp_path, timing=IDLE, drift_action="retrain", labels_topic=labels_topic)
    h.source.append(delayed_stream(TP0, 2_000, 30, labels_topic, flip_at=800))
    h.start(TP0, *([L0] if labels_topic else []))
    assert h.run() == 0
    return h


def test_a_retrain_with_a_labels_topic_decides_as_with_in_band_labels(tmp_path: Path) -> None:
    (tmp_path / "in-band").mkdir()
    (tmp_path / "topic").mkdir()
    in_band = retrained(tmp_path / "in-band", None)
    topic = retrained(tmp_path / "topic", LABELS)
    decided = topic.run_log("retrain")
    assert decided and any(d["result"] == "promoted" for d in decided)
    figures = [{k: d.get(k) for k in DECISION} for d in decided]
    assert figures == [{k: d.get(k) for k in DECISION} for d in in_band.run_log("retrain")]
    # The pool's events were trained with the labels the live learner joined to them.
    assert all(d["trained_on"] > 0 for d in decided)
    # The replay read the labels partition from the first pool event's time on, not
    # from its start.
    starts = [call[2] for call in topic.journal.of("replay_start") if call[1] == L0]
    assert starts and min(starts) > 0
    learner = topic.slot(TP0).learner
    assert learner.cumulative.get() == in_band.slot(TP0).learner.cumulative.get()
    pending = learner.pending
    assert pending is not None and learner.learned == pending.joined == 2_000


def predictions_by_offset(h: Harness, since: int = 0) -> dict[int, bytes]:
    """The predictions published (from the ``since``-th output on), by event offset."""
    values = [value for topic, value, _, _ in h.sink.sent[since:] if topic == PREDICTIONS]
    return {json.loads(value)["offset"]: value for value in values}


@pytest.mark.parametrize("drift_action", ["reset", "retrain"])
def test_a_rebuild_with_a_labels_topic_predicts_as_the_uninterrupted_run(
    tmp_path: Path, drift_action: str
) -> None:
    """The checkpoint is refused after a crash: the learner is rebuilt from both logs (the
    whole stream), and every prediction after it is the uninterrupted run's, byte for byte."""
    (tmp_path / "whole").mkdir()
    (tmp_path / "rebuilt").mkdir()
    records = delayed_stream(TP0, 1_500, 40, LABELS, flip_at=600)
    options = {"drift_action": drift_action, "checkpoint_every_events": 300, "max_records": 100}
    whole = labelled_harness(tmp_path / "whole", **options)
    whole.source.append(records)
    whole.start(TP0, L0)
    assert whole.run() == 0

    h = labelled_harness(tmp_path / "rebuilt", rebuild_events=10**6, **options)
    h.source.append(records)
    h.start(TP0, L0)
    for _ in range(100):  # past the drift, with checkpoints on the way
        h.cycle()
        if (h.slot(TP0).next_offset or 0) > 900 and len(h.journal.of("save")) >= 3:
            break
    h.cycle()  # handled past the last checkpoint: read again after the crash
    resume, labels_at = h.source.committed_offsets[TP0], h.source.committed_offsets[L0]
    assert 0 < labels_at < h.slot(TP0).state.labels_offset  # type: ignore[operator]
    # kill -9, and the checkpoint left behind cannot be read (corrupt).
    assert h.store is not None
    for key in h.store.blobs:
        h.store.blobs[key] = b"not a checkpoint"
    after = len(h.sink.sent)
    h.daemon = h._build()
    h.start(TP0, L0)
    assert h.run() == 0
    assert h.sample("streamlearn_rebuilds_total", reason="bad_magic") == 1
    assert ("seek", L0, labels_at) in h.journal  # live labels resume where the rebuild ends
    rebuilt = predictions_by_offset(h, after)
    expected = {o: v for o, v in predictions_by_offset(whole).items() if o >= resume}
    assert min(rebuilt) == resume and rebuilt == expected
    learner, uninterrupted = h.slot(TP0).learner, whole.slot(TP0).learner
    assert learner.model_version == uninterrupted.model_version > 1
    assert learner.cumulative.get() == uninterrupted.cumulative.get()
    pending = learner.pending
    assert pending is not None and learner.learned == uninterrupted.learned == 1_500
    assert pending.duplicate == 0


class _Listener:
    def assigned(self, partitions: list[TopicPartition]) -> None:
        pass

    def revoked(self, partitions: list[TopicPartition]) -> None:
        pass


def test_dropping_a_full_labels_partition_resumes_its_fetching() -> None:
    # A labels partition paused with its queue full, dropped while still assigned (read
    # again from a refused place, or revoked and given back by an eager rebalance).
    clock, journal = FakeClock(), Journal()
    source = FakeSource(clock, journal)
    source.append([SourceRecord(LABELS, 0, n, encode_label(f"e{n}", True), None, n)
                   for n in range(MAX_QUEUED + 1_000)])  # fmt: skip
    source.subscribe([TOPIC, LABELS], _Listener())
    source.assign_on_next_poll(L0)
    labels = LabelsTopic(LABELS, TOPIC, source)
    for _ in range(MAX_QUEUED // source.max_records + 1):
        labels.take(source.poll(timeout_ms=0))
    assert labels.queued(TP0) == MAX_QUEUED and L0 in source.paused
    assert labels.take(source.poll(timeout_ms=0)) == {} and labels.queued(TP0) == MAX_QUEUED

    labels.drop(0)
    assert labels.queued(TP0) == 0
    labels.take(source.poll(timeout_ms=0))
    assert labels.queued(TP0) == source.max_records  # fetched again
