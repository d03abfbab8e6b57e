"""Security settings: unsigned Kafka checkpoints refused at start, the key ring, /metrics TLS
files. Each refusal goes through the real ``streamlearn run`` entry point and must come
before anything connects (the broker address here answers nobody)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from stream.cli import main
from stream.daemon.app import run_daemon
from stream.exceptions import SettingsError, StreamError
from stream.settings import ENV_PREFIX, load_settings

DEAD_BROKER = "127.0.0.1:9"  # discard port: nothing listens
# Port 0: tests on other xdist workers start daemons too.
BASE = {"bootstrap_servers": DEAD_BROKER, "topic": "t", "metrics_port": 0}


@pytest.fixture(autouse=True)
def _no_streamlearn_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["run", "--bootstrap-servers", DEAD_BROKER, "--topic", "t", *args])
    return code, capsys.readouterr().err


def test_the_kafka_store_without_a_key_is_refused_naming_the_key_and_the_opt_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = _run(capsys, "--checkpoint-store", "kafka")
    assert code == 2
    assert err.startswith("streamlearn run: error:")
    assert "STREAMLEARN_CHECKPOINT_KEY" in err and "--allow-unsigned-checkpoints" in err
    assert "no broker answered" not in err and "Traceback" not in err


def test_the_opt_out_is_a_flag_and_warns_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings(
        {
            **BASE,
            "checkpoint_store": "kafka",
            "allow_unsigned_checkpoints": "true",
            "outage_timeout": 0.1,
        },
        environ={},
    )
    assert settings.allow_unsigned_checkpoints is True
    with caplog.at_level(logging.WARNING), pytest.raises(StreamError, match="no broker"):
        run_daemon(settings, handle_signals=False)
    (warning,) = [r for r in caplog.records if "--allow-unsigned-checkpoints" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "NOT signed" in warning.getMessage()


def test_the_flag_alone_on_the_command_line_means_true(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = {}

    def fake_run(settings: object) -> int:
        seen["settings"] = settings
        return 0

    monkeypatch.setattr("stream.daemon.app.run_daemon", fake_run)
    code, _ = _run(capsys, "--checkpoint-store", "kafka", "--allow-unsigned-checkpoints")
    assert code == 0
    assert seen["settings"].allow_unsigned_checkpoints is True  # type: ignore[attr-defined]


def test_the_local_store_without_a_key_still_starts_with_its_warning(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    settings = load_settings({**BASE, "state_dir": tmp_path, "outage_timeout": 0.1}, environ={})
    with caplog.at_level(logging.WARNING), pytest.raises(StreamError, match="no broker"):
        run_daemon(settings, handle_signals=False)
    assert any("no STREAMLEARN_CHECKPOINT_KEY" in r.getMessage() for r in caplog.records)


def test_a_key_and_the_opt_out_together_are_a_contradiction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}CHECKPOINT_KEY", "k1")
    with pytest.raises(SettingsError, match="contradicts"):
        load_settings({**BASE, "checkpoint_store": "kafka", "allow_unsigned_checkpoints": True})


def test_the_key_list_signs_with_the_first_and_names_every_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}CHECKPOINT_KEY", "new-key,old-key")
    settings = load_settings({**BASE, "checkpoint_store": "kafka"})
    assert settings.checkpoint_keys() == (b"new-key", b"old-key")


@pytest.mark.parametrize(
    ("keys", "says"),
    [
        ("new-key,,old-key", "key 2 of 3 is empty"),
        ("new-key,", "key 2 of 2 is empty"),
        ("new-key, old-key", "key 2 of 2 has leading or trailing whitespace"),
        ("same-key,same-key", "names a key twice"),
    ],
)
def test_a_malformed_key_list_is_refused_without_echoing_a_key(
    keys: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}CHECKPOINT_KEY", keys)
    with pytest.raises(SettingsError) as refused:
        load_settings(BASE)
    message = str(refused.value)
    assert says in message
    assert "new-key" not in message and "old-key" not in message and "same-key" not in message


def test_metrics_tls_needs_both_files_and_real_ones(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="go together"):
        load_settings({**BASE, "metrics_tls_certfile": cert}, environ={})
    with pytest.raises(SettingsError, match="is not a file"):
        load_settings(
            {**BASE, "metrics_tls_certfile": cert, "metrics_tls_keyfile": tmp_path / "none"},
            environ={},
        )


def test_rebuild_events_zero_is_allowed_and_negative_is_not() -> None:
    assert load_settings({**BASE, "rebuild_events": 0}, environ={}).rebuild_events == 0
    assert load_settings(BASE, environ={}).rebuild_events == 100_000
    with pytest.raises(SettingsError, match="rebuild_events"):
        load_settings({**BASE, "rebuild_events": -1}, environ={})
