"""Refuse at start what no retry can fix: credentials or certificates that are rejected.

kafka-python treats every failed connection alike: with a wrong password or an untrusted
certificate a client's constructor retries its bootstrap for 30 s and then says only
"Unable to bootstrap", and the daemon would go on retrying until ``--outage-timeout``.
Before the first client is built, :func:`check_credentials` opens one connection to a
bootstrap server, through kafka-python's own network client (so with exactly the TLS and
SASL code every client uses), and turns what stopped it into
:class:`~stream.exceptions.CredentialsRefused` with the cause in one line. Anything else
(nothing listening, a timeout) is left to the callers' usual retries.

With a wrong SCRAM password Kafka answers the last SaslAuthenticate with an error and
closes the connection at once (after ``connection.failed.authentication.delay.ms``);
kafka-python 3.0.12 drops data that arrives together with the end of the stream, so the
answer is lost and the connection just ends. A connection that passed ApiVersions and then
ended while SASL was the only step left is therefore read as a refused authentication.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import kafka.errors as kafka_errors
from kafka.net.compat import KafkaNetClient
from kafka.net.manager import KafkaConnectionManager

from stream.exceptions import CredentialsRefused

log = logging.getLogger(__name__)

__all__ = ["check_credentials", "refusal"]

#: TLS alerts a broker sends when it does not accept the client's certificate (or none).
_CERTIFICATE_ALERTS = (
    "BAD_CERTIFICATE",
    "CERTIFICATE_UNKNOWN",
    "UNKNOWN_CA",
    "CERTIFICATE_REQUIRED",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
    "UNSUPPORTED_CERTIFICATE",
    "ACCESS_DENIED",
)


def check_credentials(kafka_config: Mapping[str, Any], timeout_s: float = 10.0) -> None:
    """Raise :class:`CredentialsRefused` when a bootstrap server refuses who we are or we
    refuse its certificate; return otherwise (also when no server could be reached).

    A no-op for ``PLAINTEXT``: there is nothing to refuse.
    """
    if kafka_config.get("security_protocol", "PLAINTEXT") == "PLAINTEXT":
        return
    known = KafkaConnectionManager.DEFAULT_CONFIG
    config = {k: v for k, v in kafka_config.items() if k in known}
    with _kafka_logs_quiet():  # their ERROR lines would only repeat, less clearly, our reason
        _check(
            KafkaNetClient(**config, client_id="streamlearn-credentials-check"),
            kafka_config,
            timeout_s,
        )


@contextmanager
def _kafka_logs_quiet() -> Iterator[None]:
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        kafka_log.setLevel(level)


def _check(client: KafkaNetClient, kafka_config: Mapping[str, Any], timeout_s: float) -> None:
    try:
        for node in client.cluster.bootstrap_brokers():
            outcome = _connect_once(client, node.node_id, timeout_s)
            if outcome is None:
                return  # connected and authenticated
            server = f"{node.host}:{node.port}"
            problem = refusal(outcome, kafka_config, server)
            if problem is not None:
                raise CredentialsRefused(problem)
            log.debug("credentials check: %s did not answer (%r)", server, outcome)
    finally:
        client.close()


def _connect_once(client: KafkaNetClient, node_id: str, timeout_s: float) -> BaseException | None:
    """Open one connection; None when it is ready, else why not (``_Lost`` for a
    connection that ended during the SASL exchange)."""
    client.maybe_connect(node_id)
    # Private, pinned (listed next to the pin in pyproject.toml): the connection's outcome.
    manager: Any = client._manager
    connection: Any = manager._conns.get(node_id)
    if connection is None:
        missing: BaseException = kafka_errors.NodeNotReadyError(node_id)
        return missing
    deadline = time.monotonic() + timeout_s
    while not connection.init_future.is_done and time.monotonic() < deadline:
        client.poll(timeout_ms=100, future=connection.init_future)
    client.poll(timeout_ms=0)  # lets the manager record an authentication failure
    if not connection.init_future.is_done:
        silent: BaseException = kafka_errors.KafkaTimeoutError(f"no answer in {timeout_s:.0f} s")
        return silent
    if connection.init_future.succeeded():
        return None
    error: BaseException = manager.auth_failure(node_id) or connection.init_future.exception
    versions_known = connection.broker_version_data is not None
    if versions_known and connection.sasl_enabled and _is_connection_loss(error):
        return _Lost(error)
    return error


class _Lost(Exception):
    """The broker ended the connection during the SASL exchange."""


def refusal(error: BaseException, kafka_config: Mapping[str, Any], server: str) -> str | None:
    """The one-line reason ``error`` means we are refused (or refuse the broker), or None
    when it is something a retry may cure. Never quotes a secret.

    >>> refusal(_Lost(), {"sasl_plain_username": "alice", "sasl_mechanism": "PLAIN"}, "h:1")
    'authentication failed for user alice (PLAIN) at h:1: the broker closed the connection \
during SASL authentication (wrong password or unknown user)'
    >>> refusal(kafka_errors.KafkaConnectionError("socket disconnected"), {}, "h:1") is None
    True
    """
    user = kafka_config.get("sasl_plain_username")
    mechanism = kafka_config.get("sasl_mechanism")
    for cause in _causes(error):
        if isinstance(cause, kafka_errors.SaslAuthenticationFailedError | _Lost):
            detail = (
                str(cause)
                if isinstance(cause, kafka_errors.SaslAuthenticationFailedError)
                else "the broker closed the connection during SASL authentication "
                "(wrong password or unknown user)"
            )
            return f"authentication failed for user {user} ({mechanism}) at {server}: {detail}"
        if isinstance(cause, kafka_errors.AuthorizationError):
            return f"the broker at {server} refused access: {cause}"
        if isinstance(cause, ssl.SSLCertVerificationError):
            cafile = kafka_config.get("ssl_cafile") or "the system's CAs"
            return (
                f"certificate not trusted: the broker's certificate at {server} does not "
                f"verify against {cafile}: {cause.verify_message or cause.reason}"
            )
        if isinstance(cause, ssl.SSLError) and str(cause.reason) in _CERTIFICATE_ALERTS_SEEN:
            certfile = kafka_config.get("ssl_certfile") or "none given"
            return (
                f"certificate not trusted: the broker at {server} refused the client "
                f"certificate ({certfile}): {cause.reason}"
            )
        if isinstance(cause, ssl.SSLError) and "PEM lib" in str(cause):
            # load_cert_chain's only complaint, whether the key is wrong or its password.
            return (
                f"the client certificate {kafka_config.get('ssl_certfile')} or key "
                f"{kafka_config.get('ssl_keyfile')} could not be loaded (a key that does not "
                "match the certificate, or a wrong ssl_password?)"
            )
    return None


# What OpenSSL calls the alerts of _CERTIFICATE_ALERTS when it receives them.
_CERTIFICATE_ALERTS_SEEN = frozenset(
    f"{prefix}_ALERT_{alert}"
    for alert in _CERTIFICATE_ALERTS
    for prefix in ("SSLV3", "TLSV1", "TLSV13")
)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, what it wraps (kafka-python passes an SSLError as its argument) and
    what it was raised from, without looping."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [a for a in current.args if isinstance(a, BaseException)]
        pending += [c for c in (current.__cause__, current.__context__) if c is not None]


def _is_connection_loss(error: BaseException) -> bool:
    return isinstance(error, kafka_errors.KafkaConnectionError) and not any(
        isinstance(cause, ssl.SSLError) for cause in _causes(error)
    )
