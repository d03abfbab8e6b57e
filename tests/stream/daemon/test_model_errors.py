"""The daemon's path for events a model raises on, with stand-in consumers (no Kafka behaviour is
claimed here; tests/integration/test_poison_events.py runs the real broker): dead letters with
the exception, the learner undone, a hopeless partition halted and reported, the feature budget,
and retrain replays that skip poison or survive a candidate that raises."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

from prometheus_client import CollectorRegistry
from river import base, linear_model, preprocessing

from learners.origin import Origin
from learners.prequential import PartitionLearner
from learners.retraining import REPLAYING, RetrainJob
from monitoring.metrics import StreamlearnMetrics
from stream.checkpoints.checkpointer import Checkpointer
from stream.daemon.loop import Daemon, LoopTiming
from stream.daemon.memory import MemorySink
from stream.daemon.model_errors import ModelErrors
from stream.daemon.partitions import PartitionSlot, PartitionTable
from stream.daemon.publisher import Publisher
from stream.daemon.replay import Replayer
from stream.daemon.run_log import RunLog
from stream.events import DEAD_LETTER_REASONS
from stream.ports import SourceRecord, TopicPartition
from stream.tools.generators import concept_stream

TP = TopicPartition("events", 0)


class StandInConsumer:
    """Records pauses and resumes; answers what the loop asks of a consumer."""

    def __init__(self) -> None:
        self.paused: set[TopicPartition] = set()

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        pass

    def origin(self, tp: TopicPartition) -> Origin:
        return Origin(tp.topic, tp.partition)


class RecordingSink(MemorySink):
    def dead_letters(self) -> list[dict[str, str]]:
        return [
            {name: value.decode() for name, value in headers}
            for topic, _, _, headers in self.sent
            if topic == "dead"
        ]


def _lr() -> base.Classifier:
    return cast(base.Classifier, preprocessing.StandardScaler() | linear_model.LogisticRegression())


def _record(offset: int, features: dict[str, Any], label: Any = True) -> SourceRecord:
    value = json.dumps({"features": features, "label": label}).encode()
    return SourceRecord(TP.topic, TP.partition, offset, value)


class Rig:
    def __init__(
        self, drift_action: str = "none", event_log: Path | None = None, **errors: Any
    ) -> None:
        self.consumer = StandInConsumer()
        self.sink = RecordingSink()
        self.registry = CollectorRegistry()
        self.metrics = StreamlearnMetrics(self.registry)
        self.metrics.precreate_reasons(DEAD_LETTER_REASONS)
        self.publisher = Publisher(self.sink, "predictions", "dead")
        self.replayer = Replayer(lambda: None)
        table = PartitionTable(
            self.consumer,
            lambda tp: PartitionLearner(_lr(), drift_action=drift_action),
            Checkpointer(None, None, self.metrics),
            self.publisher,
            self.metrics,
            self.replayer,
        )
        self.errors = ModelErrors(self.publisher, self.metrics, self.replayer, **errors)
        self.daemon = Daemon(
            self.consumer,
            TP.topic,
            table,
            self.publisher,
            self.metrics,
            RunLog(event_log),
            LoopTiming(),
            model_errors=self.errors,
        )
        self.daemon.assigned([TP])

    @property
    def slot(self) -> PartitionSlot:
        return self.daemon.slots[TP]

    def feed(self, records: list[SourceRecord]) -> None:
        self.daemon._feed(self.slot, records, time.perf_counter() + 60)

    def sample(self, name: str, **labels: Any) -> float:
        value = self.registry.get_sample_value(name, {k: str(v) for k, v in labels.items()})
        return 0.0 if value is None else value


def _good(offset: int) -> SourceRecord:
    x, y = _SEA[offset]
    return _record(offset, x, y)


_SEA = [
    ({f"f{k}": v for k, v in x.items()}, y) for x, y in concept_stream("sea", seed=3, count=400)
]
POISON = {7, 8, 120, 121, 122, 300}


def _stream() -> list[SourceRecord]:
    return [
        _record(offset, {"f0": 1.0, "colour": "red"}) if offset in POISON else _good(offset)
        for offset in range(len(_SEA))
    ]


def test_poison_events_are_dead_lettered_with_the_exception_and_the_learner_undone() -> None:
    rig = Rig(snapshot_every=50)
    records = _stream()
    rig.feed(records[:200])  # batch boundaries anywhere: two feeds
    rig.feed(records[200:])

    letters = rig.sink.dead_letters()
    assert sorted(int(h["streamlearn.offset"]) for h in letters) == sorted(POISON)
    for headers in letters:
        assert headers["streamlearn.reason"] == "model_error"
        assert headers["streamlearn.detail"].startswith("TypeError: unsupported operand")
    assert rig.sample("streamlearn_dead_letters_total", reason="model_error") == len(POISON)
    labels = {"topic": TP.topic, "partition": 0}
    assert rig.sample("streamlearn_events_total", **labels, outcome="dead_lettered") == len(POISON)
    assert rig.sample("streamlearn_events_total", **labels, outcome="learned") == 400 - len(POISON)
    assert rig.slot.next_offset == 400
    assert rig.slot.halted is None and rig.daemon.ready()[0]

    clean = PartitionLearner(_lr(), drift_action="none")
    for offset, (x, y) in enumerate(_SEA):
        if offset not in POISON:
            clean.step(x, y, offset)
    learner = rig.slot.learner
    assert learner.cumulative.get() == clean.cumulative.get()
    assert learner.learned == clean.learned
    for x, _ in _SEA[:50]:
        assert learner.model.predict_proba_one(x) == clean.model.predict_proba_one(x)


def test_a_partition_is_halted_after_max_consecutive_errors_and_reported() -> None:
    rig = Rig(max_consecutive=3)
    rig.feed([_good(0), _good(1)])
    rig.feed([_record(offset, {"f0": "red"}) for offset in range(2, 12)])

    assert len(rig.sink.dead_letters()) == 3  # three errors, then nothing more is handled
    assert rig.slot.next_offset == 5  # offsets past the last dead letter are never committed
    assert TP in rig.consumer.paused
    assert rig.sample("streamlearn_partition_halted", topic=TP.topic, partition=0) == 1
    ready, reason = rig.daemon.ready()
    assert not ready
    assert "events[0] halted: 3 consecutive model errors, the last at offset 4" in reason
    rig.daemon._watch_broker(got_records=True)
    assert rig.sample("streamlearn_ready") == 0

    rig.feed([_good(12), _good(13)])  # records fetched before the pause stay unhandled
    assert rig.slot.next_offset == 5 and TP in rig.consumer.paused
    assert rig.slot.learner.learned == 2


def test_an_event_learned_in_between_resets_the_count_of_consecutive_errors() -> None:
    rig = Rig(max_consecutive=3)
    records = []
    for offset in range(30):
        poison = offset % 3 != 2  # two errors, one good event, two errors, ...
        records.append(_record(offset, {"f0": "red"}) if poison else _good(offset))
    rig.feed(records)
    assert rig.slot.halted is None
    assert rig.slot.next_offset == 30
    assert len(rig.sink.dead_letters()) == 20
    assert rig.sample("streamlearn_partition_halted", topic=TP.topic, partition=0) == 0


def test_events_past_the_feature_budget_are_dead_lettered_and_known_names_keep_working() -> None:
    rig = Rig(max_features=3)
    records = [
        _record(0, {"a": 1.0, "b": 2.0}),
        _record(1, {"a": 1.5, "c": 2.0}),
        _record(2, {"d": 1.0}),  # a fourth name
        _record(3, {"a": 0.5, "b": 1.0, "c": 2.0}),
        _record(4, {"e": 1.0, "a": 1.0}),  # a fourth name with a known one
        _record(5, {"c": 4.0}),
    ]
    rig.feed(records)
    letters = rig.sink.dead_letters()
    assert [int(h["streamlearn.offset"]) for h in letters] == [2, 4]
    assert {h["streamlearn.reason"] for h in letters} == {"too_many_features"}
    assert "limit of 3" in letters[0]["streamlearn.detail"]
    assert rig.sample("streamlearn_dead_letters_total", reason="too_many_features") == 2
    assert rig.slot.learner.learned == 4
    budget = rig.slot.learner.feature_budget
    assert budget is not None and budget.known == {"a", "b", "c"}
    assert rig.slot.journal is not None and rig.slot.journal.skipped == {2, 4}


def test_without_max_features_any_number_of_names_is_learned() -> None:
    rig = Rig()
    rig.feed([_record(offset, {f"name-{offset}": 1.0}) for offset in range(50)])
    assert rig.sink.dead_letters() == []
    assert rig.slot.learner.feature_budget is None


def test_a_retrain_replaying_during_a_rebuild_carries_on_with_its_replay() -> None:
    rig = Rig()
    learner = rig.slot.learner
    job = RetrainJob(learner.fresh_model(), pool=(0, 40))
    learner.retrain = job  # as if a drift had asked for offsets 0..39 to be replayed
    rig.replayer.submit(TP, 0, 40, job)
    rig.feed([_good(40), _record(41, {"f0": "red"}), _good(42)])  # held back: it replays
    rig.daemon._drain_backlog(rig.slot, time.perf_counter() + 60)  # a slice of live events
    assert rig.slot.next_offset == 43 and len(rig.sink.dead_letters()) == 1

    # The job never saw the poison (the serving model raised first): the rebuilt learner
    # keeps it, and the replay feeding it goes on where it was.
    assert rig.slot.learner is not learner
    assert rig.slot.learner.retrain is job and job.state == REPLAYING
    (task,) = rig.replayer._tasks
    assert task.job is job
    assert [x for x, _, _ in job._live] == [_SEA[40][0], _SEA[42][0]]
    # Replays submitted later for a range that covers the poison skip it.
    assert rig.errors.skipped_within(rig.slot, 0, 100) == frozenset({41})
    assert rig.errors.skipped_within(rig.slot, 42, 100) == frozenset()


class ReplayConsumer:
    """Serves a fixed list of records to the replayer."""

    def __init__(self, records: list[SourceRecord]) -> None:
        self.records = records
        self.position_at = 0

    def start(self, tp: TopicPartition, offset: int) -> None:
        self.position_at = offset

    def read(self, tp: TopicPartition, timeout_ms: int, max_records: int) -> list[SourceRecord]:
        batch = self.records[self.position_at : self.position_at + max_records]
        self.position_at += len(batch)
        return batch

    def close(self) -> None:
        pass

    def position(self, tp: TopicPartition) -> int:
        return self.position_at

    def log_start(self, tp: TopicPartition) -> int:
        return 0  # nothing deleted by retention


def _replay(records: list[SourceRecord], skip: frozenset[int]) -> RetrainJob:
    replayer = Replayer(lambda: ReplayConsumer(records), give_up_after_s=0.0)
    job = RetrainJob(_lr(), pool=(0, len(records)))
    replayer.submit(TP, 0, len(records), job, skip)
    for _ in range(20):
        if not replayer.busy:
            break
        replayer.advance(0.5)
    assert not replayer.busy
    return job


def test_a_replay_skips_the_offsets_the_learner_never_saw() -> None:
    records = _stream()[:150]
    poison = frozenset(o for o in POISON if o < 150)
    job = _replay(records, poison)
    assert job.abandoned is None
    assert job.trained_on == 150 - len(poison)


def test_a_candidate_that_raises_on_a_replayed_event_abandons_the_retrain_not_the_daemon(
    tmp_path: Path,
) -> None:
    rig = Rig(event_log=tmp_path / "events.jsonl")
    records = _stream()[:150]
    rig.feed([_good(0)])
    learner = rig.slot.learner
    job = _replay(records, frozenset())  # nobody told it about the poison: it raises
    assert job.abandoned is not None and job.abandoned.startswith("TypeError")
    assert job.trained_on == 7  # offsets 0..6, then 7 is poison

    learner.retrain = job
    rig.daemon._advance_retrains()  # the daemon settles it: counted, and the model serves on
    assert learner.retrain is None
    assert (
        rig.sample("streamlearn_retrains_total", topic=TP.topic, partition=0, result="abandoned")
        == 1
    )
    assert learner.model_version == 1
    assert rig.slot.journal is not None and rig.slot.journal.kept == []  # snapshot after it
    rig.daemon.run_log.close()
    lines = [json.loads(text) for text in (tmp_path / "events.jsonl").read_text().splitlines()]
    (line,) = [line for line in lines if line["kind"] != "assigned"]
    assert line["kind"] == "retrain_abandoned"
    assert line["reason"].startswith("TypeError") and line["model_version"] == 1
