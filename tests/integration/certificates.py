"""A throwaway certificate authority for the TLS tests, made with openssl and Java's keytool.

:func:`make_pki` writes, into a folder: a CA, a broker certificate for ``localhost`` and
``127.0.0.1`` signed by it (in a PKCS12 keystore, with a PKCS12 truststore of the CA for
client certificates, as the broker reads them), a client certificate signed by the same CA
whose key is encrypted with a password, and a second, unrelated CA that signed nothing the
broker knows (an "untrusted" CA for the refusal tests).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.kafka.broker_security import ServerTls

VALID_DAYS = "2"


@dataclass(frozen=True)
class Pki:
    ca: Path  # PEM: the CA clients verify the broker with
    other_ca: Path  # PEM: a CA that signed nothing the broker knows
    client_cert: Path
    client_key: Path  # PEM, encrypted with ``client_key_password``
    client_key_password: str
    server: ServerTls

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every password made here, for the no-secret scans."""
        server = self.server
        return (
            self.client_key_password,
            server.keystore_password,
            server.truststore_password or "",
        )


def require_tools() -> None:
    for tool in ("openssl", "keytool"):
        if shutil.which(tool) is None:
            pytest.fail(f"the TLS tests need {tool} (openssl; keytool comes with Java 17)")


def _run(*command: str | Path) -> None:
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed: {done.stderr[-1500:]}")


def _key(path: Path) -> None:
    # EC keys: made in milliseconds, as good as RSA for a test's handshake.
    _run(
        "openssl",
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        path,
    )


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _key(key)
    _run(
        "openssl",
        "req",
        "-x509",
        "-new",
        "-key",
        key,
        "-out",
        cert,
        "-days",
        VALID_DAYS,
        "-subj",
        f"/CN={name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    return key, cert


def _signed(
    folder: Path, name: str, ca: tuple[Path, Path], extensions: str, key_password: str | None = None
) -> tuple[Path, Path]:
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    _key(key)
    _run("openssl", "req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={name}")
    ext = folder / f"{name}.ext"
    ext.write_text(extensions)
    _run(
        "openssl",
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca[1],
        "-CAkey",
        ca[0],
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        VALID_DAYS,
        "-extfile",
        ext,
    )
    if key_password is not None:  # encrypted after signing: openssl req read it plain
        encrypted = folder / f"{name}.encrypted.key"
        _run(
            "openssl",
            "pkcs8",
            "-topk8",
            "-in",
            key,
            "-out",
            encrypted,
            "-v2",
            "aes-256-cbc",
            "-passout",
            f"pass:{key_password}",
        )
        key.unlink()
        key = encrypted
    return key, cert


def make_pki(folder: Path) -> Pki:
    require_tools()
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(folder, "test-ca")
    _, other_ca = _ca(folder, "other-ca")
    server_key, server_cert = _signed(
        folder,
        "broker",
        ca,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    client_password = "client-key-" + secrets.token_hex(8)
    client_key, client_cert = _signed(
        folder, "streamlearn-client", ca, "extendedKeyUsage=clientAuth\n", client_password
    )
    keystore_password = "keystore-" + secrets.token_hex(8)
    keystore = folder / "broker.p12"
    _run(
        "openssl",
        "pkcs12",
        "-export",
        "-name",
        "broker",
        "-inkey",
        server_key,
        "-in",
        server_cert,
        "-certfile",
        ca[1],
        "-out",
        keystore,
        "-passout",
        f"pass:{keystore_password}",
    )
    truststore_password = "truststore-" + secrets.token_hex(8)
    truststore = folder / "clients-ca.p12"
    _run(
        "keytool",
        "-importcert",
        "-noprompt",
        "-alias",
        "test-ca",
        "-file",
        ca[1],
        "-keystore",
        truststore,
        "-storetype",
        "PKCS12",
        "-storepass",
        truststore_password,
    )
    return Pki(
        ca=ca[1],
        other_ca=other_ca,
        client_cert=client_cert,
        client_key=client_key,
        client_key_password=client_password,
        server=ServerTls(keystore, keystore_password, truststore, truststore_password),
    )
