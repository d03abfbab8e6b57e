import socket

import pytest

from stream.exceptions import BrokerError
from stream.kafka.tansu import EmbeddedBroker, free_port


def test_embedded_broker_listens_then_stops() -> None:
    with EmbeddedBroker() as broker:
        assert broker.running
        with socket.create_connection((broker.host, broker.port), timeout=2):
            pass
    assert not broker.running


def test_taken_port_is_a_clear_error() -> None:
    port = free_port()
    with EmbeddedBroker(port=port), pytest.raises(BrokerError, match="already in use"):
        EmbeddedBroker(port=port, ready_timeout_s=5).start()
