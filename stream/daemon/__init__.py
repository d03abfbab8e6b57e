"""The daemon: the composition root, the loop, partitions, retrain replay, outputs, status.

It sees Kafka only through the record type and protocols of :mod:`stream.ports`.
"""
