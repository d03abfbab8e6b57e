"""What the predictions topic says about the daemon's timing.

The daemon builds each prediction right after the event was learned, and
kafka-python stamps a record with the wall clock when ``send`` is called (CreateTime,
kept by the broker). With the in-process publisher that is the learned time to the
millisecond; with ``--publisher process`` the child calls ``send`` when a shipment
(a batch, at most 2,000 records) arrives, so the stamp is the time the prediction left
for Kafka: a little later than learned, never earlier. No probe inside the daemon.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from kafka.consumer.fetcher import ConsumerRecord

from bench.contenders import Throughput


@dataclass(frozen=True, slots=True)
class Learned:
    """One prediction record: which input event, and when it was learned (unix seconds)."""

    partition: int
    offset: int
    at: float


def learned_times(records: Sequence[ConsumerRecord]) -> list[Learned]:
    """Prediction records as (input partition, input offset, learned at), in time order."""
    out = []
    for record in records:
        value = json.loads(record.value)
        out.append(Learned(value["partition"], value["offset"], record.timestamp / 1000.0))
    return sorted(out, key=lambda item: (item.at, item.partition, item.offset))


def throughput(times: Sequence[Learned]) -> Throughput:
    """First to last learned event; the first one starts the clock.

    >>> throughput([Learned(0, 0, 10.0), Learned(0, 1, 10.5), Learned(0, 2, 11.0)]).rate
    2.0
    """
    if len(times) < 2:
        raise RuntimeError("fewer than two predictions: nothing to time")
    return Throughput(len(times) - 1, times[-1].at - times[0].at)


def longest_gap(times: Sequence[Learned], start: float, end: float) -> float:
    """The longest time between consecutive learned events that overlaps ``[start, end]``.

    >>> ts = [Learned(0, i, t) for i, t in enumerate((1.0, 1.1, 1.6, 1.7, 3.0))]
    >>> longest_gap(ts, 1.0, 1.6)
    0.5
    """
    gaps = [b.at - a.at for a, b in pairwise(times) if b.at >= start and a.at <= end]
    return max(gaps, default=0.0)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest rank, of a non-empty sequence.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.0
    """
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n q / 100), at least the first
    return ordered[int(rank) - 1]
