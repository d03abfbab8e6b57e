"""The Prometheus metrics of streamlearn, built on a registry that is passed in.

Names and labels are a contract with the dashboard and the alert rules
(``docs/metrics.md``). Labels come from topic and partition numbers and a fixed set of
reasons and outcomes, never from event content, so cardinality stays bounded.
The hot path updates plain counters per *batch* through pre-bound children.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import assert_never

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from learners.outcomes import (
    DriftDetected,
    ModelReset,
    ModelScores,
    ModelSwitched,
    Outcome,
    RetrainAbandoned,
    RetrainDecided,
    RetrainDropped,
    RetrainRequested,
    RetrainRestarted,
    Scores,
)
from learners.pending import LABEL_OUTCOMES
from monitoring.model_size import ModelSizeWatch

OUTCOMES = ("learned", "predicted", "dead_lettered")
WINDOWS = ("cumulative", "rolling")
PER_EVENT_BUCKETS = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.1)
#: Event to label: from a click (seconds) to a chargeback (weeks).
LABEL_DELAY_BUCKETS = (0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 6 * 3600.0, 86_400.0, 7 * 86_400.0)
#: A rebuild replays up to 100,000 events by default: seconds to minutes.
REBUILD_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def register_runtime_collectors(registry: CollectorRegistry) -> None:
    """prometheus_client's standard process, platform and GC collectors, on ``registry``.

    They give ``process_resident_memory_bytes``, ``process_cpu_seconds_total``,
    ``python_gc_*`` and ``python_info``: the memory and CPU an alert or a dashboard needs.
    """
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


class StreamlearnMetrics:
    """Every metric the daemon exports, the standard runtime ones too; one per registry.

    ``max_model_bytes`` is the operator's bound on a partition's model size, exported
    as ``streamlearn_model_bytes_limit`` for the alert rule (none when not given).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        version: str = "unknown",
        max_model_bytes: int | None = None,
    ) -> None:
        self.registry = registry
        register_runtime_collectors(registry)
        pl = ("topic", "partition")
        self.events = Counter(
            "streamlearn_events",
            "Records handled, by outcome.",
            (*pl, "outcome"),
            registry=registry,
        )
        self.accuracy = Gauge(
            "streamlearn_accuracy",
            "Prequential accuracy of a classifier: cumulative since the learner started, "
            "or rolling over the last labelled events.",
            (*pl, "window"),
            registry=registry,
        )
        self.mae = Gauge(
            "streamlearn_mae",
            "Prequential mean absolute error of a regressor, cumulative or rolling.",
            (*pl, "window"),
            registry=registry,
        )
        self.rmse = Gauge(
            "streamlearn_rmse",
            "Prequential root mean squared error of a regressor, cumulative or rolling.",
            (*pl, "window"),
            registry=registry,
        )
        self.baseline_accuracy = Gauge(
            "streamlearn_baseline_accuracy",
            "Accuracy the no-change baseline (predict the last label seen) would have "
            "scored, cumulative or rolling; classification.",
            (*pl, "window"),
            registry=registry,
        )
        self.baseline_mae = Gauge(
            "streamlearn_baseline_mae",
            "Mean absolute error the no-change baseline (predict the last label seen) "
            "would have scored, cumulative or rolling; regression.",
            (*pl, "window"),
            registry=registry,
        )
        self.drifts = Counter(
            "streamlearn_drifts",
            "ADWIN detections on which the error rate went up.",
            pl,
            registry=registry,
        )
        self.resets = Counter(
            "streamlearn_model_resets",
            "Serving models replaced by a fresh clone.",
            pl,
            registry=registry,
        )
        self.retrains = Counter(
            "streamlearn_retrains",
            "Retrain decisions, by result.",
            (*pl, "result"),
            registry=registry,
        )
        self.retrain_restarts = Counter(
            "streamlearn_retrain_restarts",
            "Retrain candidates started again from a later change point.",
            pl,
            registry=registry,
        )
        self.model_switches = Counter(
            "streamlearn_model_switches",
            "Challengers that took over from the serving model (--challenger).",
            pl,
            registry=registry,
        )
        self.model_accuracy = Gauge(
            "streamlearn_model_accuracy",
            "Prequential accuracy of each model of the partition, serving or challenger, "
            "by model name, cumulative or rolling; classification with --challenger.",
            (*pl, "model", "window"),
            registry=registry,
        )
        self.model_mae = Gauge(
            "streamlearn_model_mae",
            "Prequential mean absolute error of each model of the partition, by model name, "
            "cumulative or rolling; regression with --challenger.",
            (*pl, "model", "window"),
            registry=registry,
        )
        self.model_serving = Gauge(
            "streamlearn_model_serving",
            "1 for the model that serves the partition's predictions, 0 for a challenger; "
            "with --challenger.",
            (*pl, "model"),
            registry=registry,
        )
        # The model names each partition exported, to remove their series on revoke.
        self._model_names: dict[tuple[str, str], set[str]] = {}
        self.adwin_width = Gauge(
            "streamlearn_adwin_width", "ADWIN window width in events.", pl, registry=registry
        )
        self.dead_letters = Counter(
            "streamlearn_dead_letters",
            "Records dead-lettered, by machine-readable reason.",
            ("reason",),
            registry=registry,
        )
        self.processing = Histogram(
            "streamlearn_processing_seconds",
            "Mean per-event processing time of each batch.",
            pl,
            buckets=PER_EVENT_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            "streamlearn_end_to_end_latency_seconds",
            "Event timestamp to learned, for the newest event of each batch.",
            pl,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "streamlearn_consumer_lag",
            "High watermark minus the next offset to process, in records.",
            pl,
            registry=registry,
        )
        self.learned_events = Gauge(
            "streamlearn_learned_events",
            "Labelled events the partition's learner has learned in its whole life, "
            "restored from its checkpoint across restarts.",
            pl,
            registry=registry,
        )
        self.model_version = Gauge(
            "streamlearn_model_version",
            "Serving model version; increments on each reset or promotion.",
            pl,
            registry=registry,
        )
        self.last_checkpoint = Gauge(
            "streamlearn_last_checkpoint_timestamp_seconds",
            "Unix time of the last checkpoint written.",
            pl,
            registry=registry,
        )
        self.checkpoints = Counter(
            "streamlearn_checkpoints", "Checkpoints written.", pl, registry=registry
        )
        self.model_bytes = Gauge(
            "streamlearn_model_bytes",
            "Size of the partition's serialised learner at its last checkpoint.",
            pl,
            registry=registry,
        )
        self.max_model_bytes = max_model_bytes
        if max_model_bytes is not None:
            Gauge(
                "streamlearn_model_bytes_limit",
                "Configured bound on a partition's model size (--max-model-bytes).",
                registry=registry,
            ).set(max_model_bytes)
        self.checkpoint_load_failures = Counter(
            "streamlearn_checkpoint_load_failures",
            "Checkpoints refused on load, by reason.",
            ("reason",),
            registry=registry,
        )
        self.rebuilds = Counter(
            "streamlearn_rebuilds",
            "Partition learners rebuilt from the log because their checkpoint was refused, "
            "by refusal reason.",
            ("reason",),
            registry=registry,
        )
        self.rebuild_seconds = Histogram(
            "streamlearn_rebuild_seconds",
            "Time a partition's rebuild took, from its start to live processing.",
            buckets=REBUILD_BUCKETS,
            registry=registry,
        )
        self.rebuild_events = Counter(
            "streamlearn_rebuild_events",
            "Events of the log replayed into rebuilt learners.",
            registry=registry,
        )
        self.sequence_gaps = Counter(
            "streamlearn_sequence_gaps",
            "Events skipped, by per-partition sequence number.",
            pl,
            registry=registry,
        )
        self.sequence_duplicates = Counter(
            "streamlearn_sequence_duplicates",
            "Events seen again, by per-partition sequence number.",
            pl,
            registry=registry,
        )
        self.screened_events = Counter(
            "streamlearn_screened_events",
            "Pool events left out of a refit or a retrain replay (--screen-pool), by reason.",
            (*pl, "reason"),
            registry=registry,
        )
        self.offsets_expired = Counter(
            "streamlearn_offsets_expired",
            "Events that expired from the log before they were learned.",
            pl,
            registry=registry,
        )
        self.labels = Counter(
            "streamlearn_labels",
            "Labels that came after their event, by outcome: joined to the waiting "
            "prediction, expired (it waited too long), unknown id, duplicate.",
            (*pl, "outcome"),
            registry=registry,
        )
        self.pending_labels = Gauge(
            "streamlearn_pending_labels",
            "Predictions of unlabelled events waiting for their label.",
            pl,
            registry=registry,
        )
        self.label_waits_expired = Counter(
            "streamlearn_label_waits_expired",
            "Times the events of a partition stopped waiting for labels not fetched yet "
            "(--labels-topic), after the maximum wait.",
            pl,
            registry=registry,
        )
        self.label_delay = Histogram(
            "streamlearn_label_delay_seconds",
            "From an unlabelled event to its label (Kafka record times), per joined label.",
            pl,
            buckets=LABEL_DELAY_BUCKETS,
            registry=registry,
        )
        self.partition_halted = Gauge(
            "streamlearn_partition_halted",
            "1 when the partition is no longer handled: its model raised on too many "
            "events in a row.",
            pl,
            registry=registry,
        )
        self.replay_expired = Counter(
            "streamlearn_replay_expired",
            "Offsets a retrain wanted to replay that retention had already deleted.",
            pl,
            registry=registry,
        )
        self.ready = Gauge(
            "streamlearn_ready", "1 when connected to the broker and consuming.", registry=registry
        )
        self.build_info = Gauge(
            "streamlearn_build_info",
            "Constant 1, labelled by version.",
            ("version",),
            registry=registry,
        )
        self.build_info.labels(version).set(1)

    def precreate_reasons(
        self, dead_letter_reasons: Iterable[str], checkpoint_reasons: Iterable[str] = ()
    ) -> None:
        """Export zero-valued series for every reason, so rates exist before the first one."""
        for reason in dead_letter_reasons:
            self.dead_letters.labels(reason)
        for reason in checkpoint_reasons:
            self.checkpoint_load_failures.labels(reason)
            self.rebuilds.labels(reason)

    def partition(self, topic: str, partition: int) -> PartitionMetrics:
        return PartitionMetrics(self, topic, str(partition))

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop a revoked partition's gauges so another instance's values are not shadowed."""
        labels = (topic, str(partition))
        gauges = (
            self.adwin_width, self.lag, self.model_version, self.last_checkpoint,
            self.model_bytes, self.partition_halted, self.learned_events, self.pending_labels,
        )  # fmt: skip
        for gauge in gauges:
            _remove(gauge, labels)
        for windowed in (
            self.accuracy, self.mae, self.rmse, self.baseline_accuracy, self.baseline_mae,
        ):  # fmt: skip
            for window in WINDOWS:
                _remove(windowed, (*labels, window))
        for name in self._model_names.pop(labels, ()):
            _remove(self.model_serving, (*labels, name))
            for window in WINDOWS:
                _remove(self.model_accuracy, (*labels, name, window))
                _remove(self.model_mae, (*labels, name, window))


def _remove(metric: Gauge, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


class PartitionMetrics:
    """The children of one topic-partition, bound once so a batch update is a few adds."""

    def __init__(self, metrics: StreamlearnMetrics, topic: str, partition: str) -> None:
        m, labels = metrics, (topic, partition)
        self.learned = m.events.labels(*labels, "learned")
        self.predicted = m.events.labels(*labels, "predicted")
        self.dead_lettered = m.events.labels(*labels, "dead_lettered")
        self._metrics = m
        self._labels = labels
        self._scores: dict[Gauge, tuple[Gauge, Gauge]] = {}
        self.drifts = m.drifts.labels(*labels)
        self.resets = m.resets.labels(*labels)
        self.switches = m.model_switches.labels(*labels)
        self.promoted = m.retrains.labels(*labels, "promoted")
        self.rejected = m.retrains.labels(*labels, "rejected")
        self.abandoned = m.retrains.labels(*labels, "abandoned")
        self.dropped = m.retrains.labels(*labels, "dropped")
        self.restarts = m.retrain_restarts.labels(*labels)
        self.halted = m.partition_halted.labels(*labels)
        self.adwin_width = m.adwin_width.labels(*labels)
        self.processing = m.processing.labels(*labels)
        self.latency = m.latency.labels(*labels)
        self.lag = m.lag.labels(*labels)
        self.model_version = m.model_version.labels(*labels)
        self.learned_events = m.learned_events.labels(*labels)
        self.last_checkpoint = m.last_checkpoint.labels(*labels)
        self.checkpoints = m.checkpoints.labels(*labels)
        self.model_size = ModelSizeWatch(m.model_bytes, labels, m.max_model_bytes)
        self.sequence_gaps = m.sequence_gaps.labels(*labels)
        self.sequence_duplicates = m.sequence_duplicates.labels(*labels)
        self.offsets_expired = m.offsets_expired.labels(*labels)
        self._screened_events = m.screened_events
        self.labels = {outcome: m.labels.labels(*labels, outcome) for outcome in LABEL_OUTCOMES}
        self._pending = m.pending_labels.labels(*labels)
        self._label_delay = m.label_delay.labels(*labels)

    def show_pending(self, waiting: int, delays: Iterable[float]) -> None:
        """The predictions waiting for labels, and the delays of the labels joined since."""
        self._pending.set(waiting)
        observe = self._label_delay.observe
        for delay in delays:
            observe(delay)

    def screened(self, counts: Mapping[str, int]) -> None:
        """Pool events left out by ``--screen-pool``, by reason (``duplicate``,
        ``contradiction``)."""
        for reason, count in counts.items():
            if count:
                self._screened_events.labels(*self._labels, reason).inc(count)

    def show_scores(self, scores: Scores) -> None:
        """The model's scores and its baseline's: accuracy for a classifier, MAE and RMSE
        for a regressor, each series only once it has a value. Bound on first use: a
        partition that has scored nothing exports none (a 0 would read as a collapse and
        fire the accuracy alert)."""
        m = self._metrics
        if scores.metric == "mae":
            self._set(m.mae, scores.cumulative, scores.rolling)
            self._set(m.rmse, scores.rmse_cumulative, scores.rmse_rolling)
            self._set(m.baseline_mae, scores.baseline_cumulative, scores.baseline_rolling)
        else:
            self._set(m.accuracy, scores.cumulative, scores.rolling)
            self._set(m.baseline_accuracy, scores.baseline_cumulative, scores.baseline_rolling)

    def show_models(self, metric: str, scores: Sequence[ModelScores]) -> None:
        """Each model's own scores by name, and which one serves (with ``--challenger``)."""
        m = self._metrics
        gauge = m.model_mae if metric == "mae" else m.model_accuracy
        names = m._model_names.setdefault(self._labels, set())
        for model in scores:
            names.add(model.name)
            gauge.labels(*self._labels, model.name, "cumulative").set(model.cumulative)
            gauge.labels(*self._labels, model.name, "rolling").set(model.rolling)
            m.model_serving.labels(*self._labels, model.name).set(1 if model.serving else 0)

    def _set(self, gauge: Gauge, cumulative: float | None, rolling: float | None) -> None:
        if cumulative is None or rolling is None:
            return
        children = self._scores.get(gauge)
        if children is None:
            labels = self._labels
            children = (gauge.labels(*labels, "cumulative"), gauge.labels(*labels, "rolling"))
            self._scores[gauge] = children
        children[0].set(cumulative)
        children[1].set(rolling)

    def record_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            match outcome:
                case DriftDetected():
                    self.drifts.inc()
                case ModelReset():
                    self.resets.inc()
                case RetrainRequested():
                    pass  # counted when decided
                case RetrainDecided():
                    (self.promoted if outcome.promoted else self.rejected).inc()
                case RetrainAbandoned():
                    self.abandoned.inc()
                case ModelSwitched():
                    self.switches.inc()
                case RetrainDropped():
                    self.dropped.inc()
                case RetrainRestarted():
                    self.restarts.inc()
                case _:
                    assert_never(outcome)
