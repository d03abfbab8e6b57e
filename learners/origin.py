"""Where a checkpoint belongs: one cluster, one incarnation of a topic, one partition.

A checkpoint records the :class:`Origin` of the partition it was taken from; before it
is applied, :func:`foreign_reason` compares that with the partition being restored. A
topic deleted and created again keeps its name but gets a new topic id (Kafka 2.8+,
KIP-516) and starts its offsets at 0 again, so state from the earlier incarnation would
seek past events that were never learned. Identities the broker did not give (``None``)
are not compared; :func:`unverified` names them so the caller can say so.

>>> here = Origin("orders", 0, cluster_id="c1", topic_id="t2", partitions=3)
>>> foreign_reason(here, here) is None
True
>>> foreign_reason(Origin("orders", 0, cluster_id="c1", topic_id="t1", partitions=3), here)[0]
'foreign_topic'
>>> foreign_reason(Origin("orders", 0, cluster_id="c0"), here)[0]
'foreign_cluster'
>>> unverified(Origin("orders", 0, cluster_id="c1", topic_id="t1"), Origin("orders", 0))
['cluster id', 'topic id']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FOREIGN_REASONS", "Origin", "foreign_reason", "unverified"]

#: Refusal reasons for state from elsewhere.
FOREIGN_REASONS = ("foreign_cluster", "foreign_topic", "foreign_partition")


@dataclass(frozen=True)
class Origin:
    """The identity of a topic-partition as the broker describes it."""

    topic: str
    partition: int
    cluster_id: str | None = None
    #: The topic's UUID as text; ``None`` when the broker gives none (Metadata < v10).
    topic_id: str | None = None
    #: The topic's partition count when the checkpoint was taken.
    partitions: int | None = None

    def describe(self) -> str:
        return (
            f"{self.topic}[{self.partition}] (cluster {self.cluster_id or '?'}, "
            f"topic id {self.topic_id or '?'}, {self.partitions or '?'} partitions)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "cluster_id": self.cluster_id,
            "topic_id": self.topic_id,
            "partitions": self.partitions,
        }

    @classmethod
    def from_json(cls, value: object) -> Origin:
        """Rebuild an origin from a checkpoint header; ``ValueError`` when malformed."""
        if not isinstance(value, dict) or set(value) != set(_FIELD_TYPES):
            raise ValueError("origin must be an object with exactly the fields of Origin")
        for name, kinds in _FIELD_TYPES.items():
            field = value[name]
            if isinstance(field, bool) or not isinstance(field, kinds):
                raise ValueError(f"origin field {name!r} is invalid")
        return cls(**value)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "topic": (str,),
    "partition": (int,),
    "cluster_id": (str, type(None)),
    "topic_id": (str, type(None)),
    "partitions": (int, type(None)),
}


def foreign_reason(recorded: Origin, current: Origin) -> tuple[str, str] | None:
    """``(reason, message)`` when state recorded at ``recorded`` must not go to ``current``."""
    both = f"checkpoint from {recorded.describe()}, this is {current.describe()}"
    if _differ(recorded.cluster_id, current.cluster_id):
        return "foreign_cluster", f"checkpoint of another cluster: {both}"
    if recorded.topic != current.topic or _differ(recorded.topic_id, current.topic_id):
        return "foreign_topic", f"checkpoint of another topic or topic incarnation: {both}"
    # Kafka can add partitions but never remove them: fewer now means a new topic.
    if _known(recorded.partitions, current.partitions) and (
        recorded.partitions > current.partitions  # type: ignore[operator]
    ):
        return "foreign_topic", f"the topic has fewer partitions than it had: {both}"
    if recorded.partition != current.partition:
        return "foreign_partition", f"checkpoint of another partition: {both}"
    return None


def unverified(recorded: Origin, current: Origin) -> list[str]:
    """The identities the checkpoint records but the broker did not give now."""
    pairs = {
        "cluster id": (recorded.cluster_id, current.cluster_id),
        "topic id": (recorded.topic_id, current.topic_id),
        "partition count": (recorded.partitions, current.partitions),
    }
    return [name for name, (then, now) in pairs.items() if then is not None and now is None]


def _known(a: object, b: object) -> bool:
    return a is not None and b is not None


def _differ(a: object, b: object) -> bool:
    return _known(a, b) and a != b
