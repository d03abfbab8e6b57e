"""Secured listeners for the Apache Kafka launcher: SASL/SCRAM-SHA-512 and mutual TLS.

:class:`BrokerSecurity` is what :class:`stream.kafka.apache.ApacheKafkaBroker` takes as
``security=``: the broker then opens, next to its PLAINTEXT listener (kept on loopback for
the controller, inter-broker traffic and the launcher's readiness check), one listener per
kind asked for:

- ``SASL``: SCRAM-SHA-512, over TLS (``SASL_SSL``) when ``tls`` is given, else
  ``SASL_PLAINTEXT``. The users are written into the metadata when the storage is formatted
  (``kafka-storage format --add-scram``, KIP-900), so they exist before the first client.
- ``MTLS``: TLS with ``ssl.client.auth=required``: a client without a certificate signed
  by a CA of the truststore is refused in the handshake.

Certificates are the caller's (the tests make a throwaway CA with openssl and keytool).
This is for tests and local trials: a production cluster has no open PLAINTEXT listener.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SCRAM_MECHANISM", "BrokerSecurity", "ServerTls"]

SCRAM_MECHANISM = "SCRAM-SHA-512"
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


@dataclass(frozen=True)
class ServerTls:
    """The broker's TLS material, as PKCS12 stores Java reads.

    ``keystore`` holds the broker's key and certificate chain; ``truststore`` the CAs that
    client certificates must chain to (only the ``MTLS`` listener asks for one).
    """

    keystore: Path
    keystore_password: str
    truststore: Path | None = None
    truststore_password: str | None = None


@dataclass(frozen=True)
class BrokerSecurity:
    """Which secured listeners to open.

    >>> BrokerSecurity({"alice": "pw"}).listeners()
    {'SASL': 'SASL_PLAINTEXT'}
    >>> tls = ServerTls(Path("k.p12"), "kp", Path("t.p12"), "tp")
    >>> BrokerSecurity({"alice": "pw"}, tls).listeners()
    {'SASL': 'SASL_SSL', 'MTLS': 'SSL'}
    """

    #: SCRAM-SHA-512 users, name to password; a ``SASL`` listener when not empty.
    scram_users: Mapping[str, str] = field(default_factory=dict)
    #: TLS for the ``SASL`` listener, and an ``MTLS`` listener when it has a truststore.
    tls: ServerTls | None = None

    def __post_init__(self) -> None:
        if not self.listeners():
            raise ValueError("BrokerSecurity asks for no listener: give scram_users or tls")
        for name, password in self.scram_users.items():
            # The storage tool parses name=...,password=... between brackets.
            if not name or any(c in name + password for c in ',[]="') or not password:
                raise ValueError(
                    f"SCRAM user {name!r}: name and password must be non-empty "
                    "and free of , [ ] = and quotes"
                )

    def listeners(self) -> dict[str, str]:
        """Listener name to security protocol."""
        listeners = {}
        if self.scram_users:
            listeners["SASL"] = "SASL_SSL" if self.tls else "SASL_PLAINTEXT"
        if self.tls is not None and self.tls.truststore is not None:
            listeners["MTLS"] = "SSL"
        return listeners

    def properties(self) -> dict[str, str]:
        """Broker settings of the secured listeners (listener-prefixed)."""
        config: dict[str, str] = {}
        for name, protocol in self.listeners().items():
            prefix = f"listener.name.{name.lower()}."
            if protocol.startswith("SASL"):
                config[prefix + "sasl.enabled.mechanisms"] = SCRAM_MECHANISM
                config[prefix + f"{SCRAM_MECHANISM.lower()}.sasl.jaas.config"] = _SCRAM_LOGIN
            if protocol.endswith("SSL") and self.tls is not None:
                config.update(_tls_properties(prefix, self.tls, client_auth=name == "MTLS"))
        return config

    def format_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create the SCRAM users."""
        arguments = []
        for name, password in self.scram_users.items():
            arguments += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
        return arguments


def _tls_properties(prefix: str, tls: ServerTls, client_auth: bool) -> dict[str, str]:
    config = {
        prefix + "ssl.keystore.type": "PKCS12",
        prefix + "ssl.keystore.location": str(tls.keystore),
        prefix + "ssl.keystore.password": tls.keystore_password,
    }
    if client_auth and tls.truststore is not None:
        config |= {
            prefix + "ssl.client.auth": "required",
            prefix + "ssl.truststore.type": "PKCS12",
            prefix + "ssl.truststore.location": str(tls.truststore),
            prefix + "ssl.truststore.password": tls.truststore_password or "",
        }
    return config
