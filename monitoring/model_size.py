"""How big each partition's model has grown, against the operator's bound.

The size is that of the partition's checkpoint (its serialised learner: model, drift
detector, accuracy windows, a running retrain), measured each time one is written; it
is what a restart loads back into memory and tracks how the model grows. Past the
bound (``--max-model-bytes``) a WARNING is logged once, and again only after the model
fell back under it (a reset) and grew past it anew; the alert rule watches the gauge.
"""

from __future__ import annotations

import logging

from prometheus_client import Gauge

log = logging.getLogger(__name__)

MIB = 1024 * 1024


class ModelSizeWatch:
    """One partition's model size: exported on first measure, warned about past ``limit``.

    >>> from prometheus_client import CollectorRegistry
    >>> gauge = Gauge("size_bytes", "size", ("topic", "partition"), registry=CollectorRegistry())
    >>> watch = ModelSizeWatch(gauge, ("events", "0"), limit=1000)
    >>> [watch.observe(size) for size in (400, 1200, 1500, 300, 1100)]
    [False, True, False, False, True]
    >>> gauge.labels("events", "0")._value.get()
    1100.0
    """

    def __init__(self, gauge: Gauge, labels: tuple[str, str], limit: int | None) -> None:
        self.gauge = gauge
        self.labels = labels
        self.limit = limit
        self._child: Gauge | None = None
        self._over = False

    def observe(self, size: int) -> bool:
        """Export ``size``; True when it has just passed the limit (and was warned about)."""
        # Bound on first use: before its first checkpoint a partition has no measured size,
        # and a 0 would read as an empty model.
        if self._child is None:
            self._child = self.gauge.labels(*self.labels)
        self._child.set(size)
        over = self.limit is not None and size > self.limit
        crossed = over and not self._over
        self._over = over
        if crossed:
            assert self.limit is not None
            topic, partition = self.labels
            log.warning(
                "the model of %s[%s] is %d bytes (%.1f MiB) at its checkpoint, past "
                "--max-model-bytes %d: its memory keeps growing; bound the feature space "
                "(preprocessing.FeatureHasher in --model, or --max-features) or raise the bound",
                topic,
                partition,
                size,
                size / MIB,
                self.limit,
            )
        return crossed
