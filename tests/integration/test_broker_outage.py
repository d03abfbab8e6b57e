"""The broker goes away: frozen mid-stream, absent at start, or gone for good (issue 3, test 4).

On Tansu and on Apache Kafka, each time on the spare broker of the kind (conftest.py),
since the tests freeze or stop it. Tansu keeps its log in memory, so a real stop would
lose every record: the mid-stream outage freezes the broker process (SIGSTOP; on Apache
Kafka the JVM, broker and controller at once) and thaws it (SIGCONT) instead. To the
daemon that is a broker that stops answering and comes back with its data. (Apache Kafka
killed and restarted on its log directory: test_broker_restart.py.)
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from kafka.errors import TopicAlreadyExistsError

from stream.kafka.broker_process import BrokerProcess, free_port
from tests.integration.daemon_process import (
    DaemonProcess,
    Feeder,
    checkpointed_offset,
    daemons,
    local_checkpoint,
    state_of,
)
from tests.integration.kafka_helpers import create_topic, frozen

pytestmark = pytest.mark.integration

# Longer than the 20 s on purpose: past kafka-python's 30 s request timeout, a
# commit in flight when the broker froze times out, which must not end the daemon.
FREEZE_S = 35.0
LEARNING = {"checkpoint-every-events": 300, "checkpoint-interval": 0.5, "max-poll-records": 200}


def assert_learned_exactly(state_dir: Path, topic: str, produced: int) -> None:
    final = state_of(local_checkpoint(state_dir, topic, 0))
    counts = (final.learner.learned, final.sequence.gaps, final.sequence.duplicates)
    assert counts == (produced, 0, 0)


def test_broker_frozen_mid_stream_loses_and_repeats_nothing(
    spare_broker: BrokerProcess, topic_name: str, tmp_path: Path
) -> None:
    bootstrap = spare_broker.bootstrap_servers
    create_topic(bootstrap, topic_name, 1)
    feeder = Feeder(bootstrap, topic_name, seed=11)
    feeder.send(1_000)
    state_dir = tmp_path / "state"
    daemon = DaemonProcess(
        bootstrap, topic_name, tmp_path / "daemon.log", {"state-dir": state_dir, **LEARNING}
    )
    with daemons(daemon):
        daemon.start()
        daemon.wait_assigned()
        # The stream flows before and during the freeze (into the producer's buffer).
        feeder.send_in_background(9_000, rate=300.0)
        daemon.wait_until(
            lambda: daemon.metric_sum("streamlearn_events_total", outcome="learned") > 2_000,
            60,
            "learning from the live stream",
        )
        with frozen(spare_broker):
            time.sleep(FREEZE_S)
        feeder.join(120)
        feeder.close()
        daemon.wait_until(
            lambda: checkpointed_offset(state_dir, topic_name) == feeder.total,
            90,
            "the daemon to catch up after the outage",
        )
        assert daemon.running(), "the daemon gave up during a short outage"
        assert daemon.metric("streamlearn_sequence_gaps_total") == 0
        assert daemon.metric("streamlearn_sequence_duplicates_total") == 0
        assert daemon.terminate() == 0
    assert_learned_exactly(state_dir, topic_name, feeder.total)


def test_broker_down_at_start_daemon_waits_then_learns_everything(
    spare_broker: BrokerProcess, topic_name: str, tmp_path: Path
) -> None:
    spare_broker.stop()  # started again below, on the same port
    bootstrap = spare_broker.bootstrap_servers
    state_dir = tmp_path / "state"
    options = {"state-dir": state_dir, "stop-after-idle": 3, **LEARNING}
    daemon = DaemonProcess(bootstrap, topic_name, tmp_path / "daemon.log", options)
    with daemons(daemon):
        daemon.start()
        # Serving /healthz, not ready, with no broker anywhere: it waits for one.
        daemon.wait_until(lambda: daemon.healthz() == 503, 60, "the daemon to wait")
        assert daemon.health() == {"ready": False, "detail": "starting"}
        spare_broker.start()
        # The daemon may have created the topic already by subscribing to it.
        with contextlib.suppress(TopicAlreadyExistsError):
            create_topic(bootstrap, topic_name, 1)
        feeder = Feeder(bootstrap, topic_name, seed=12)
        feeder.send(5_000)
        feeder.close()
        assert daemon.wait(120) == 0
    assert_learned_exactly(state_dir, topic_name, 5_000)


def test_sigterm_while_waiting_for_the_broker_exits_0(tmp_path: Path) -> None:
    daemon = DaemonProcess(
        f"127.0.0.1:{free_port()}",
        "outage",
        tmp_path / "daemon.log",
        {"state-dir": tmp_path / "state"},
    )
    with daemons(daemon):
        daemon.start()
        daemon.wait_until(lambda: daemon.healthz() == 503, 60, "the daemon to wait")
        assert daemon.terminate() == 0


def test_broker_gone_for_good_daemon_reports_not_ready_then_exits_non_zero(
    spare_broker: BrokerProcess, topic_name: str, tmp_path: Path
) -> None:
    bootstrap = spare_broker.bootstrap_servers
    create_topic(bootstrap, topic_name, 1)
    feeder = Feeder(bootstrap, topic_name, seed=13)
    feeder.send(2_000)
    feeder.close()
    options = {"state-dir": tmp_path / "state", "outage-timeout": 4, **LEARNING}
    daemon = DaemonProcess(bootstrap, topic_name, tmp_path / "daemon.log", options)
    with daemons(daemon):
        daemon.start()
        daemon.wait_until(
            lambda: daemon.metric_sum("streamlearn_events_total", outcome="learned") == 2_000,
            60,
            "the daemon to learn the topic",
        )
        assert daemon.healthz() == 200
        spare_broker.stop()  # the next test to take it starts it again
        # Not ready is observable here: the connections are refused, not merely slow.
        daemon.wait_until(lambda: daemon.healthz() == 503, 30, "/healthz to report not ready")
        code = daemon.wait(60)
    assert code == 2  # gave up with an error it reports (a crash would exit 1)
