"""The composition root: build the settings once, then every collaborator, and run."""

from __future__ import annotations

import gc
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from importlib.metadata import PackageNotFoundError, version
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, disable_created_metrics

from learners.challengers import attach, model_name, parse_challengers
from learners.prequential import PartitionLearner
from learners.regression import learner_for
from learners.screening import screening
from learners.spec import describe_model, parse_model_spec, task_of
from monitoring.exporter import MetricsServer, TlsFiles
from monitoring.metrics import StreamlearnMetrics
from stream.checkpoints.checkpointer import CHECKPOINT_REFUSALS, Checkpointer
from stream.checkpoints.stores import CheckpointStore, LocalDirectoryStore
from stream.daemon.labels_topic import LabelsTopic
from stream.daemon.loop import Daemon, LoopTiming
from stream.daemon.model_errors import ModelErrors
from stream.daemon.partitions import PartitionTable
from stream.daemon.publisher import Publisher
from stream.daemon.rebuild import Rebuilder
from stream.daemon.replay import Replayer
from stream.daemon.run_log import RunLog
from stream.events import DEAD_LETTER_REASONS, Decoder, decoder_for
from stream.exceptions import BrokerUnavailable, StreamError
from stream.kafka.admin import check_co_partitioned, ensure_topics
from stream.kafka.batch_producer import BatchProducer
from stream.kafka.checkpoint_topic import KafkaTopicStore
from stream.kafka.clients import make_range_reader, make_source, producer_config
from stream.kafka.process_producer import ProcessSink
from stream.ports import LogReader, Sink, Source, TopicPartition
from stream.settings import RunSettings

log = logging.getLogger("streamlearn")


def package_version() -> str:
    try:
        return version("streamlearn")
    except PackageNotFoundError:
        return "unknown"


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", force=True
    )
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))


class _NewLearner:
    """Makes each partition's learner from the model parsed once (a bad spec fails at
    start-up); ``task`` tells the rest of the daemon how to read labels."""

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        # A bad spec fails here, at start-up.
        blueprint = parse_model_spec(settings.model)
        self.task = task_of(blueprint)
        self.blueprint = screening(blueprint) if settings.screen_pool else blueprint
        self.name = model_name(settings.model)
        self.challengers = [
            (name, screening(model) if settings.screen_pool else model)
            for name, model in parse_challengers(settings.challengers, settings.model, self.task)
        ]

    def __call__(self, tp: TopicPartition) -> PartitionLearner:
        learner = self._new()
        self._attach(learner)
        return learner

    def adopt(self, tp: TopicPartition, learner: PartitionLearner) -> None:
        """A restored learner: this run's challengers, its own state kept (``attach``)."""
        added, dropped = self._attach(learner)
        if added or dropped:
            log.warning(
                "%s[%d]: restored learner (serving %r): challengers added %s, dropped %s",
                tp.topic, tp.partition, learner.model_name, added or "none", dropped or "none",
            )  # fmt: skip

    def _attach(self, learner: PartitionLearner) -> tuple[list[str], list[str]]:
        settings = self.settings
        return attach(
            learner,
            (self.name, self.blueprint.clone()),
            [(name, model.clone()) for name, model in self.challengers],
            settings.challenger_window,
            settings.challenger_margin,
        )

    def _new(self) -> PartitionLearner:
        settings = self.settings
        # A classifier's learner or a regressor's: the task is chosen here, once.
        return learner_for(
            self.blueprint.clone(),
            drift_action=settings.drift_action,
            adwin_delta=settings.adwin_delta,
            rolling_window=settings.rolling_window,
            max_retrain_events=settings.max_retrain_events,
            min_retrain_events=settings.min_retrain_events,
            holdout_events=settings.retrain_holdout_events,
            max_holdout_events=settings.retrain_max_holdout_events,
            retrain_pool=settings.retrain_pool,
            warning_delta=settings.warning_delta or None,
            warning_events=settings.warning_events,
            max_pending=settings.max_pending,
            label_ttl_s=settings.label_ttl,
        )


def learner_factory(settings: RunSettings) -> _NewLearner:
    new_learner = _NewLearner(settings)
    log.info(
        "model: %s (%s); drift action: %s",
        describe_model(new_learner.blueprint),
        new_learner.task,
        settings.drift_action,
    )
    for name, model in new_learner.challengers:
        log.info(
            "challenger %r: %s; takes over when better by %g over %d labelled events",
            name, describe_model(model), settings.challenger_margin, settings.challenger_window,
        )  # fmt: skip
    return new_learner


def run_daemon(
    settings: RunSettings,
    *,
    registry: CollectorRegistry | None = None,
    handle_signals: bool = True,
    status_interval_s: float = 10.0,
) -> int:
    """Run ``streamlearn run`` until SIGTERM/SIGINT or idle; returns the exit code.

    Tests pass their own ``registry`` to read the final metrics, and run it off the
    main thread with ``handle_signals=False`` (signals reach the main thread only).
    """
    switch = _StopSwitch()
    # Caught from the very start: a SIGTERM while waiting for the broker or joining the
    # group must end the process cleanly (exit 0), not by the signal's default action.
    restore = _stop_on_signals(switch.request) if handle_signals else (lambda: None)
    try:
        return _build_and_run(settings, switch, registry, status_interval_s)
    finally:
        restore()  # last, so that a SIGTERM during the shutdown is still handled


def _build_and_run(
    settings: RunSettings,
    switch: _StopSwitch,
    registry: CollectorRegistry | None,
    status_interval_s: float,
) -> int:
    new_learner = learner_factory(settings)
    keys = _checkpoint_keys(settings)  # its warnings come first, before any connection
    decode = decoder_for(new_learner.task)  # a regression's labels are numbers
    disable_created_metrics()  # *_created series only double what Prometheus scrapes
    registry = CollectorRegistry() if registry is None else registry
    metrics = StreamlearnMetrics(registry, package_version(), settings.max_model_bytes)
    metrics.precreate_reasons(DEAD_LETTER_REASONS, CHECKPOINT_REFUSALS)
    with ExitStack() as resources:
        # Everything made here is released on every way out, a failed set-up included.
        # Callbacks run last-in first-out, so the consumer (registered last) goes first:
        # leaving the group revokes the partitions, and revocation checkpoints through
        # the publisher and the store, which must still be open then.
        resources.callback(log.info, "stopped")
        readiness = _Readiness()
        server = MetricsServer(
            registry,
            readiness,
            settings.metrics_host,
            settings.metrics_port,
            tls=_metrics_tls(settings),
        )
        server.start()
        resources.callback(server.stop)
        log.info(
            "metrics on %s://%s:%d/metrics, health on /healthz",
            server.scheme,
            _display_host(settings.metrics_host),
            server.port,
        )
        consumer = _connect(settings, switch.requested)
        if consumer is None:
            log.info("stopped while waiting for the broker")
            return 0
        try:
            labels = _labels_topic(settings, consumer, metrics)
            publisher, checkpointer, replayer = _outputs_and_state(
                settings, keys, metrics, resources, decode
            )
        except BaseException:
            consumer.close()
            raise
        resources.callback(consumer.close)
        if settings.drift_action == "retrain":
            replayer.warm_up()
        daemon = assemble_daemon(
            settings,
            consumer,
            new_learner,
            publisher,
            checkpointer,
            replayer,
            metrics,
            RunLog(settings.event_log),
            _timing(settings, status_interval_s),
            decode,
            labels=labels,
        )
        readiness.bind(daemon.ready)
        switch.bind(daemon.stop)
        _freeze_startup_objects()
        return daemon.run()


def _labels_topic(
    settings: RunSettings, consumer: Source, metrics: StreamlearnMetrics
) -> LabelsTopic | None:
    """The labels topic, refused at start when it is not co-partitioned with the events."""
    if settings.labels_topic is None:
        return None
    count = check_co_partitioned(settings.kafka_config(), settings.topic, settings.labels_topic)
    log.info(
        "late labels also from topic %s (%d partitions, co-partitioned with %s); a refused "
        "checkpoint is not rebuilt from the log: its partition starts afresh at the group's "
        "committed offsets of both topics",
        settings.labels_topic,
        count,
        settings.topic,
    )
    return LabelsTopic(settings.labels_topic, settings.topic, consumer, metrics)


def make_replayer(
    settings: RunSettings,
    reader: Callable[[], LogReader],
    metrics: StreamlearnMetrics,
    decode: Decoder,
    clock: Callable[[], float] = time.monotonic,
) -> Replayer:
    """The retrain and rebuild replayer, reading through the ``LogReader`` ``reader`` makes
    (``streamlearn evaluate`` passes one over its records in memory)."""
    return Replayer(
        reader,
        clock=clock,
        decode=decode,
        screen_pool=settings.screen_pool,
        on_screened=lambda tp, counts: metrics.partition(tp.topic, tp.partition).screened(counts),
        on_expired=lambda tp, n: metrics.replay_expired.labels(tp.topic, str(tp.partition)).inc(n),
        labels_topic=settings.labels_topic,
    )


def assemble_daemon(
    settings: RunSettings,
    consumer: Source,
    new_learner: _NewLearner,
    publisher: Publisher,
    checkpointer: Checkpointer,
    replayer: Replayer,
    metrics: StreamlearnMetrics,
    run_log: RunLog,
    timing: LoopTiming,
    decode: Decoder,
    *,
    labels: LabelsTopic | None = None,
    clock: Callable[[], float] = time.monotonic,
    cycle_clock: Callable[[], float] = time.perf_counter,
) -> Daemon:
    """The loop and its partition table, wired from the settings: ``run`` on Kafka's
    ports, ``streamlearn evaluate`` on in-memory ones and a logical clock, so both run
    the same learning, drift and retrain code with the same options."""
    rebuilder = Rebuilder(
        replayer,
        metrics,
        max_events=settings.rebuild_events,
        max_features=settings.max_features,
        snapshot_every=settings.checkpoint_every_events,  # as ModelErrors' journal
        decode=decode,
        run_log=run_log,
    )
    partitions = PartitionTable(
        consumer,
        new_learner,
        checkpointer,
        publisher,
        metrics,
        replayer,
        clock=clock,
        rebuilder=rebuilder,
        labels_topic=settings.labels_topic,
        adopt=new_learner.adopt,
        run_log=run_log,
    )
    return Daemon(
        consumer,
        settings.topic,
        partitions,
        publisher,
        metrics,
        run_log,
        timing,
        clock=clock,
        cycle_clock=cycle_clock,
        decode=decode,
        labels=labels,
        model_errors=ModelErrors(
            publisher,
            metrics,
            replayer,
            max_consecutive=settings.max_model_errors,
            # A rebuild re-steps at most this many events; a snapshot costs one pickle.
            snapshot_every=settings.checkpoint_every_events,
            max_features=settings.max_features,
            max_pending=settings.max_pending,
            label_ttl_s=settings.label_ttl,
        ),
    )


class _Readiness:
    """What ``/healthz`` answers: "starting" until the daemon exists, then the daemon's."""

    def __init__(self) -> None:
        self._ready: Callable[[], tuple[bool, str]] | None = None

    def bind(self, ready: Callable[[], tuple[bool, str]]) -> None:
        self._ready = ready

    def __call__(self) -> tuple[bool, str]:
        return (False, "starting") if self._ready is None else self._ready()


def _outputs_and_state(
    settings: RunSettings,
    keys: tuple[bytes, ...],
    metrics: StreamlearnMetrics,
    resources: ExitStack,
    decode: Decoder,
) -> tuple[Publisher, Checkpointer, Replayer]:
    """The publisher, the checkpointer and the replayer, each closed by ``resources``."""
    publisher = _make_publisher(settings)
    resources.callback(publisher.close)
    checkpointer = Checkpointer(
        make_checkpoint_store(settings),
        keys,
        metrics,
        settings.checkpoint_every_events,
        settings.checkpoint_interval,
    )
    resources.callback(checkpointer.close)
    replayer = make_replayer(settings, lambda: make_range_reader(settings), metrics, decode)
    resources.callback(replayer.close)
    return publisher, checkpointer, replayer


def _make_publisher(settings: RunSettings) -> Publisher:
    outputs = [t for t in (settings.predictions_topic, settings.dead_letter_topic) if t]
    kafka_config = settings.kafka_config()
    if outputs:
        ensure_topics(kafka_config, outputs)
    return Publisher(
        make_sink(settings, kafka_config) if outputs else None,
        settings.predictions_topic,
        settings.dead_letter_topic,
    )


def _timing(settings: RunSettings, status_interval_s: float) -> LoopTiming:
    return LoopTiming(
        commit_interval_s=settings.commit_interval,
        status_interval_s=status_interval_s,
        stop_after_idle_s=settings.stop_after_idle,
        outage_timeout_s=settings.outage_timeout,
        cycle_budget_s=min(1.0, settings.max_poll_interval_ms / 4000),
    )


def make_sink(settings: RunSettings, kafka_config: dict[str, Any]) -> Sink:
    config = producer_config(kafka_config, settings.outage_timeout)
    if settings.publisher == "process":
        return ProcessSink(config)
    return BatchProducer(**config)


def make_checkpoint_store(settings: RunSettings) -> CheckpointStore | None:
    if settings.checkpoint_store == "local":
        return LocalDirectoryStore(settings.state_dir)
    if settings.checkpoint_store == "kafka":
        config = settings.kafka_config()
        bootstrap = config.pop("bootstrap_servers")
        store = KafkaTopicStore(bootstrap, settings.checkpoint_topic, **config)
        store.open()  # a checkpoint topic that is not fit is refused at start, not later
        return store
    log.warning("checkpoints are off: a restart loses what the models learned")
    return None


def _checkpoint_keys(settings: RunSettings) -> tuple[bytes, ...]:
    """The checkpoint key ring (signing key first); says so when there is none."""
    keys = settings.checkpoint_keys()
    if keys:
        log.info(
            "checkpoints signed with the first of %d key(s), accepted when signed by any",
            len(keys),
        )
    elif settings.checkpoint_store == "kafka":
        # Only with --allow-unsigned-checkpoints (settings refuse it otherwise): said at
        # every start, so the risk taken never goes unnoticed.
        log.warning(
            "--allow-unsigned-checkpoints: checkpoints in topic %r are NOT signed; whoever "
            "can produce to that topic can run code in every daemon of the group. Set "
            "STREAMLEARN_CHECKPOINT_KEY",
            settings.checkpoint_topic,
        )
    elif settings.checkpoint_store != "none":
        log.warning(
            "no STREAMLEARN_CHECKPOINT_KEY: checkpoints are not signed, so whoever "
            "can write the checkpoint store can run code in this daemon"
        )
    return keys


def _metrics_tls(settings: RunSettings) -> TlsFiles | None:
    certfile, keyfile = settings.metrics_tls_certfile, settings.metrics_tls_keyfile
    if certfile is None or keyfile is None:
        return None
    return TlsFiles(certfile, keyfile)


def _connect(settings: RunSettings, stop: threading.Event) -> Source | None:
    """Wait for the broker with backoff: a daemon started before its broker is normal.

    Returns None when ``stop`` is set meanwhile. A listening port is awaited first: the
    consumer's constructor alone blocks for its whole bootstrap timeout (30 s), deaf
    to SIGTERM and silent in the log.
    """
    deadline = time.monotonic() + settings.outage_timeout
    delay = 0.5
    while not stop.is_set():
        problem = _unreachable(settings.bootstrap_servers)
        if problem is None:
            try:
                return make_source(settings)
            except BrokerUnavailable as exc:
                problem = str(exc)
        if time.monotonic() + delay > deadline:
            raise StreamError(
                f"no broker answered at {settings.bootstrap_servers} for "
                f"{settings.outage_timeout:.0f} s: {problem}"
            )
        log.warning(
            "broker %s not reachable (%s); retrying in %.1f s",
            settings.bootstrap_servers,
            problem,
            delay,
        )
        stop.wait(delay)
        delay = min(delay * 2, 10.0)
    return None


def _unreachable(bootstrap_servers: str) -> str | None:
    """None when some bootstrap server accepts a TCP connection, else why none did."""
    problem = "no bootstrap server"
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2.0):
                return None
        except (OSError, ValueError) as exc:
            problem = f"{server.strip()}: {exc}"
    return problem


def _freeze_startup_objects() -> None:
    """Keep the garbage collector's full passes short while events flow.

    Imports (River, scipy, pydantic, kafka-python) leave a few hundred thousand
    long-lived objects; every full collection walked them all, 50-70 ms each, and each
    such pause put ~1,000 events behind (the p99 latency). Frozen, they are never
    scanned again; the collection first so that no garbage is frozen with them.
    """
    gc.collect()
    gc.freeze()
    # The hot path frees nearly everything by reference counting; young collections
    # mostly re-scanned what a poll keeps alive (its records, the queued outputs):
    # ~500 of them, ~110 µs each, per 200,000 events at the default threshold of 700.
    gc.set_threshold(50_000, 20, 20)


class _StopSwitch:
    """A stop request (SIGTERM/SIGINT) that may arrive before the daemon it stops exists."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._target: Callable[[], None] | None = None

    def request(self) -> None:
        self.requested.set()
        if self._target is not None:
            self._target()

    def bind(self, target: Callable[[], None]) -> None:
        self._target = target
        if self.requested.is_set():
            target()


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def _stop_on_signals(stop: Callable[[], None]) -> Callable[[], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        log.info(
            "received %s: finishing the batch, flushing and committing", signal.Signals(signum).name
        )
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
