"""``--max-model-bytes``: its default, its refusals, and that the CLI offers it."""

from __future__ import annotations

import pytest

from stream.cli import build_parser
from stream.exceptions import SettingsError
from stream.settings import load_settings

REQUIRED = {"bootstrap_servers": "127.0.0.1:9092", "topic": "events"}


def test_the_default_bound_is_256_mib() -> None:
    assert load_settings(REQUIRED, environ={}).max_model_bytes == 256 * 1024 * 1024


def test_the_cli_and_the_environment_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["run", "--topic", "t", "--max-model-bytes", "1048576"])
    assert args.max_model_bytes == "1048576"
    monkeypatch.setenv("STREAMLEARN_MAX_MODEL_BYTES", "4096")
    from_env = load_settings(REQUIRED)
    assert from_env.max_model_bytes == 4096


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "lots"])
def test_a_bound_that_is_not_a_positive_whole_number_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="max_model_bytes"):
        load_settings({**REQUIRED, "max_model_bytes": value}, environ={})
