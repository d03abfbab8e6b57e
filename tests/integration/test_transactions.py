"""Transactions upstream, on Apache Kafka: committed events learned once, aborted never.

A transactional producer commits some transactions and aborts others, interleaved with
plain records of a second producer. The daemon reads ``read_committed`` (the default of
``--isolation-level``): the broker serves records up to the last stable offset and lists
the aborted transactions of each fetch, whose records the consumer drops; the
transaction markers (control records) never reach the model or the dead-letter topic.
An aborted event carries the ``seq`` of the committed event after it, so learning it
would show as a duplicate. The same topic read ``read_uncommitted`` does learn them,
which shows the test can tell the two apart.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kafka import KafkaProducer

from stream.kafka.apache import ApacheKafkaBroker
from stream.tools.generators import concept_stream
from stream.tools.produce import encode_event
from tests.integration.kafka_helpers import create_topic, read_all, run_until_idle, sample

pytestmark = pytest.mark.integration

# Per round: a committed transaction, plain records, an aborted transaction.
ROUNDS = 12
COMMITTED_PER_TXN = 40
PLAIN_PER_ROUND = 25
ABORTED_PER_TXN = 30


def write_with_transactions(bootstrap: str, topic: str) -> tuple[set[str], set[str]]:
    """Interleave committed and aborted transactions with plain records; (kept, aborted) ids."""
    events = concept_stream("sea", seed=41)
    transactional = KafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"txn-{uuid.uuid4().hex[:8]}"
    )
    plain = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    transactional.init_transactions()
    kept: set[str] = set()
    aborted: set[str] = set()
    seq = 0

    def send(producer: KafkaProducer, event_id: str, seq: int) -> None:
        features, label = next(events)
        producer.send(topic, value=encode_event(event_id, features, label, seq), partition=0)

    for round_ in range(ROUNDS):
        transactional.begin_transaction()
        for i in range(COMMITTED_PER_TXN):
            send(transactional, f"committed-{round_}-{i}", seq)
            kept.add(f"committed-{round_}-{i}")
            seq += 1
        transactional.commit_transaction()
        for i in range(PLAIN_PER_ROUND):
            send(plain, f"plain-{round_}-{i}", seq)
            kept.add(f"plain-{round_}-{i}")
            seq += 1
        plain.flush()
        transactional.begin_transaction()
        for i in range(ABORTED_PER_TXN):
            # The seq of the events that follow: learned, it would count as a duplicate.
            send(transactional, f"aborted-{round_}-{i}", seq + i)
            aborted.add(f"aborted-{round_}-{i}")
        transactional.flush()  # written to the log, then aborted: the consumer must drop them
        transactional.abort_transaction()
    transactional.close()
    plain.close()
    return kept, aborted


def run(bootstrap: str, topic: str, isolation: str) -> dict[str, Any]:
    predictions, dead = f"{topic}.{isolation}.predictions", f"{topic}.{isolation}.dead"
    registry = run_until_idle(
        bootstrap, topic, group_id=f"g-{topic}-{isolation}", isolation_level=isolation,
        predictions_topic=predictions, dead_letter_topic=dead, drift_action="none",
    )  # fmt: skip
    labels = {"topic": topic, "partition": 0}
    return {
        "learned": sample(registry, "streamlearn_events_total", **labels, outcome="learned"),
        "dead": sample(registry, "streamlearn_events_total", **labels, outcome="dead_lettered"),
        "duplicates": sample(registry, "streamlearn_sequence_duplicates_total", **labels),
        "gaps": sample(registry, "streamlearn_sequence_gaps_total", **labels),
        "predicted_ids": [json.loads(r.value)["id"] for r in read_all(bootstrap, predictions)],
        "dead_letters": len(read_all(bootstrap, dead)),
    }


def test_read_committed_learns_committed_events_once_and_aborted_ones_never(
    apache_kafka: ApacheKafkaBroker, topic_name: str
) -> None:
    bootstrap = apache_kafka.bootstrap_servers
    create_topic(bootstrap, topic_name, 1)
    kept, aborted = write_with_transactions(bootstrap, topic_name)

    committed = run(bootstrap, topic_name, "read_committed")
    assert committed["learned"] == len(kept) == ROUNDS * (COMMITTED_PER_TXN + PLAIN_PER_ROUND)
    assert (committed["gaps"], committed["duplicates"]) == (0, 0)
    assert (committed["dead"], committed["dead_letters"]) == (0, 0)  # no control record
    assert sorted(committed["predicted_ids"]) == sorted(kept)  # each once, none aborted

    uncommitted = run(bootstrap, topic_name, "read_uncommitted")
    assert uncommitted["learned"] == len(kept) + len(aborted)
    # The last round's aborted events come after every kept one: new seqs, not repeats.
    assert uncommitted["duplicates"] == len(aborted) - ABORTED_PER_TXN
    assert (uncommitted["dead"], uncommitted["dead_letters"]) == (0, 0)
