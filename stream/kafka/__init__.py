"""Everything that speaks Kafka: the only package that imports kafka-python.

Client configs and topic admin, the fast reader of fetched record batches, the v2
record-batch codec, the batch producer, the consumer the daemon sees through
:mod:`stream.ports`, the Kafka checkpoint topic and the embedded broker launcher.
"""
