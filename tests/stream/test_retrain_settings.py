"""The retrain's settings: the pool, the warning zone and the paired test's bounds, and
the contradictions refused with a clear message."""

from __future__ import annotations

import pytest

from stream.cli import build_parser
from stream.settings import SettingsError, load_settings

BASE = {"bootstrap_servers": "127.0.0.1:9", "topic": "t"}


def test_the_defaults() -> None:
    settings = load_settings(BASE, environ={})
    assert settings.retrain_pool == "since-change"
    assert settings.warning_delta > settings.adwin_delta
    assert settings.retrain_holdout_events <= settings.retrain_max_holdout_events
    assert settings.min_retrain_events == 1


@pytest.mark.parametrize("pool", ["since-change", "combined", "both"])
def test_the_pool_is_a_choice(pool: str) -> None:
    assert load_settings({**BASE, "retrain_pool": pool}, environ={}).retrain_pool == pool
    with pytest.raises(SettingsError, match="retrain_pool"):
        load_settings({**BASE, "retrain_pool": "everything"}, environ={})


def test_the_pool_is_a_command_line_option() -> None:
    args = build_parser().parse_args(
        ["run", "--bootstrap-servers", "b:9092", "--topic", "t", "--retrain-pool", "both"]
    )
    assert args.retrain_pool == "both"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"warning_delta": 0.001}, "warning_delta .* must be larger than adwin_delta"),
        ({"retrain_holdout_events": 500, "retrain_max_holdout_events": 400},
         "retrain_holdout_events is larger than retrain_max_holdout_events"),
    ],
)  # fmt: skip
def test_contradictions_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({**BASE, **values}, environ={})


def test_a_warning_delta_of_zero_turns_the_warning_zone_off() -> None:
    assert load_settings({**BASE, "warning_delta": 0}, environ={}).warning_delta == 0


def test_the_composition_root_gives_the_learner_these_settings() -> None:
    from stream.daemon.app import learner_factory
    from stream.ports import TopicPartition

    settings = load_settings(
        {**BASE, "drift_action": "retrain", "retrain_pool": "both", "warning_events": 77,
         "retrain_max_holdout_events": 900},
        environ={},
    )  # fmt: skip
    learner = learner_factory(settings)(TopicPartition("t", 0))
    assert learner.retrain_pool == "both" and learner.warning_events == 77
    assert learner.max_holdout_events == 900
    assert learner.warning is not None and learner.warning.delta == settings.warning_delta
    off = load_settings({**BASE, "drift_action": "retrain", "warning_delta": 0}, environ={})
    assert learner_factory(off)(TopicPartition("t", 0)).warning is None
