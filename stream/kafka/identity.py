"""Who a topic-partition is: the cluster, the topic's incarnation and its partition count.

Read from the consumer's cached metadata, with no broker round trip, so it can run in
a rebalance listener (kafka-python's IO thread). The cluster id comes with Metadata v2+,
the topic id (a new one each time a topic is created, KIP-516) with Metadata v10+
(Kafka 2.8+; the embedded Tansu broker gives both). kafka-python 3.0 keeps them on its
client's ``cluster``, which has no public accessor: re-check on a kafka-python upgrade.
"""

from __future__ import annotations

import logging
import uuid

from kafka import KafkaConsumer

from learners.origin import Origin
from stream.ports import TopicPartition

log = logging.getLogger(__name__)


def current_origin(consumer: KafkaConsumer, tp: TopicPartition) -> Origin:
    """The partition's identity as the broker last described it (unknown parts ``None``)."""
    try:
        cluster = consumer._client.cluster
        cluster_id = cluster.cluster_id
        topic_id = cluster.topic_id(tp.topic)
        partitions = cluster.partitions_for_topic(tp.topic)
    except AttributeError:
        log.warning(
            "cannot read the cluster and topic identity from kafka-python; checkpoints are "
            "not checked against them",
            exc_info=True,
        )
        return Origin(tp.topic, tp.partition)
    return Origin(
        tp.topic,
        tp.partition,
        cluster_id=cluster_id or None,
        # The all-zero id is the protocol's "no id".
        topic_id=str(topic_id) if topic_id and topic_id != uuid.UUID(int=0) else None,
        partitions=len(partitions) if partitions else None,
    )
