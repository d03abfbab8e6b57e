"""The daemon's settings: one frozen model, from CLI > environment > TOML file > defaults.

Every field is a ``--kebab-case`` option and a ``STREAMLEARN_UPPER_SNAKE`` environment
variable; ``--config FILE`` names a TOML file whose keys are the field names. Unknown
keys, unknown ``STREAMLEARN_*`` variables and contradictory settings are refused at
start-up with a message naming them (as kafka-python does with its own configs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from stream.exceptions import SettingsError

ENV_PREFIX = "STREAMLEARN_"
DEFAULT_MODEL = "preprocessing.StandardScaler | linear_model.LogisticRegression"


class RunSettings(BaseSettings):
    """Settings of ``streamlearn run``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    # -- where from, where to -------------------------------------------------------
    bootstrap_servers: str = Field(description="Kafka bootstrap servers, host:port[,host:port]")
    topic: str = Field(description="topic of labelled events to learn from")
    group_id: str = Field("streamlearn", description="consumer group; instances share partitions")
    labels_topic: str | None = Field(
        None,
        description="also read late labels {id, label} from this topic, co-partitioned with "
        "--topic (same partition count, keyed by id); docs/labels.md",
    )
    predictions_topic: str | None = Field(None, description="publish every prediction here")
    dead_letter_topic: str | None = Field(
        None, description="publish undecodable records here, with the reason in headers"
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a group with no committed offset starts"
    )
    isolation_level: Literal["read_committed", "read_uncommitted"] = Field(
        "read_committed",
        description="read_committed: events of aborted (or still open) transactions are "
        "never learned, read only up to the last stable offset; read_uncommitted: all",
    )

    # -- learning ---------------------------------------------------------------------
    model: str = Field(
        DEFAULT_MODEL, description="River model, e.g. 'tree.HoeffdingTreeClassifier'"
    )
    challengers: tuple[str, ...] = Field(
        (),
        description="(--challenger, repeatable) a model that learns every labelled event in "
        "shadow and takes over when it beats the serving one: a spec as --model, "
        "optionally named NAME=SPEC",
    )
    challenger_window: int = Field(
        1000,
        ge=1,
        description="a challenger takes over when it beat the serving model over the last "
        "this many labelled events; after a switch a full fresh window is needed again",
    )
    challenger_margin: float = Field(
        0.02,
        ge=0,
        description="by how much a challenger must beat the serving model: accuracy points "
        "(classification), or a fraction of the serving MAE (regression)",
    )
    drift_action: Literal["none", "reset", "retrain"] = Field(
        "reset", description="what to do when ADWIN sees the error rate go up"
    )
    adwin_delta: float = Field(0.002, gt=0, lt=1, description="ADWIN confidence parameter")
    rolling_window: int = Field(
        1000, ge=1, description="labelled events in the rolling accuracy or MAE (and baseline)"
    )
    max_retrain_events: int = Field(
        20_000, ge=1, description="at most this many events replayed into a retrain candidate"
    )
    min_retrain_events: int = Field(
        1,
        ge=1,
        description="at least this many events replayed into a retrain candidate (more pads "
        "the since-change pool with events from before the change)",
    )
    retrain_holdout_events: int = Field(
        300,
        ge=1,
        description="live events a retrain's candidate is scored on before it may be rejected "
        "(it is promoted as soon as it is clearly better: a paired sequential test)",
    )
    retrain_max_holdout_events: int = Field(
        3000,
        ge=1,
        description="at most this many live events decide a retrain: then the candidate is "
        "promoted if it won more of the events where the models differed",
    )
    retrain_pool: Literal["since-change", "combined", "both"] = Field(
        "since-change",
        description="what a retrain's candidate learns from the log: the events since the "
        "estimated change point, the whole replay window (max_retrain_events), or both "
        "(two candidates race)",
    )
    warning_delta: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="confidence of a looser ADWIN whose warning starts a retrain's candidate "
        "before the drift alarm (0: no warning zone); larger than adwin_delta",
    )
    warning_events: int = Field(
        1000,
        ge=1,
        description="a candidate started by a warning is dropped when no drift alarm follows "
        "within this many labelled events",
    )
    screen_pool: bool = Field(
        False,
        description="leave exact duplicates and contradictory labels (same features, another "
        "label) out of what a retrain replay and an sklearn: model's refit learn from",
    )
    max_model_errors: int = Field(
        100,
        ge=1,
        description="halt a partition after this many events in a row on which the model "
        "raised (each is dead-lettered as model_error)",
    )
    max_features: int | None = Field(
        None,
        ge=1,
        description="dead-letter (too_many_features) an event that would take a partition's "
        "model past this many distinct features (a string value counts as name=value); "
        "unset: no bound",
    )

    label_ttl: float = Field(
        86_400.0,
        gt=0,
        description="seconds an unlabelled event's prediction waits for its label "
        "(by Kafka record times); a label that comes later counts as expired",
    )
    max_pending: int = Field(
        100_000,
        ge=1,
        description="predictions waiting for labels per partition at most; the oldest "
        "beyond it are dropped (their labels count as expired)",
    )

    max_model_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1,
        description="a partition's checkpointed model past this many bytes is logged and "
        "alerted on (streamlearn_model_bytes_limit); nothing is cut",
    )

    publisher: Literal["process", "inline"] = Field(
        "inline",
        description="encode and send predictions and dead letters in the daemon "
        "(~3 µs/event, one process per daemon) or from a child process (takes that off "
        "the learning loop: about a tenth faster when a core is spare for it)",
    )

    # -- checkpoints ------------------------------------------------------------------
    checkpoint_store: Literal["local", "kafka", "none"] = Field(
        "local",
        description="where learner state is kept: a local directory, a Kafka "
        "topic every instance of the group can read (needed to scale out), or nowhere",
    )
    state_dir: Path = Field(Path("state"), description="directory of the local checkpoint store")
    checkpoint_topic: str = Field(
        "streamlearn-checkpoints", description="topic of the Kafka checkpoint store"
    )
    checkpoint_every_events: int = Field(
        10_000, ge=1, description="checkpoint a partition after this many events"
    )
    checkpoint_interval: float = Field(
        30.0, gt=0, description="checkpoint a partition at least every this many seconds"
    )
    checkpoint_key: SecretStr | None = Field(
        None,
        description="HMAC key(s) signing and verifying checkpoints, comma-separated: the "
        "first signs, any of them verifies (key rotation); environment or config file only",
    )
    allow_unsigned_checkpoints: bool = Field(
        False,
        description="run the Kafka checkpoint store without a checkpoint key (refused "
        "otherwise: whoever can produce to the checkpoint topic could run code here)",
    )
    rebuild_events: int = Field(
        100_000,
        ge=0,
        description="when a partition's checkpoint is refused, rebuild its model from at "
        "most this many events of the log before its resume offset; 0: start afresh",
    )

    # -- running ----------------------------------------------------------------------
    metrics_host: str = Field("0.0.0.0", description="address the metrics endpoint binds")
    metrics_port: int = Field(9464, ge=0, le=65535, description="/metrics and /healthz; 0 = any")
    metrics_tls_certfile: Path | None = Field(
        None, description="serve /metrics and /healthz over HTTPS with this certificate (PEM)"
    )
    metrics_tls_keyfile: Path | None = Field(
        None, description="private key (PEM, unencrypted) of --metrics-tls-certfile"
    )
    stop_after_idle: float | None = Field(
        None, gt=0, description="exit 0 after this many seconds without new records"
    )
    event_log: Path | None = Field(None, description="append drifts and accuracy as JSON lines")
    max_poll_records: int = Field(1000, ge=1, description="records fetched per poll at most")
    commit_interval: float = Field(1.0, gt=0, description="seconds between offset commits")
    session_timeout_ms: int = Field(10_000, ge=1000, description="consumer group session timeout")
    max_poll_interval_ms: int = Field(300_000, ge=1000, description="longest gap between polls")
    outage_timeout: float = Field(
        300.0, gt=0, description="exit non-zero when no broker answers for this many seconds"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")

    # -- connection security ------------------------------------------------------------
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (with a SASL_* protocol)"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged)")
    ssl_cafile: Path | None = Field(None, description="CA bundle to verify the brokers")
    ssl_certfile: Path | None = Field(None, description="client certificate (PEM)")
    ssl_keyfile: Path | None = Field(None, description="client private key (PEM)")
    ssl_password: SecretStr | None = Field(None, description="password of the client key")

    @model_validator(mode="after")
    def _no_contradictions(self) -> RunSettings:
        outputs = {
            "predictions_topic": self.predictions_topic,
            "dead_letter_topic": self.dead_letter_topic,
        }
        for name, value in outputs.items():
            if value is not None and value == self.topic:
                raise ValueError(f"{name} must differ from the input topic {self.topic!r}")
        if self.predictions_topic and self.predictions_topic == self.dead_letter_topic:
            raise ValueError("predictions_topic and dead_letter_topic must differ")
        if self.checkpoint_store == "kafka" and self.checkpoint_topic in (
            self.topic,
            self.predictions_topic,
            self.dead_letter_topic,
        ):
            raise ValueError("checkpoint_topic must differ from the input and output topics")
        self._check_labels_topic()
        if self.min_retrain_events > self.max_retrain_events:
            raise ValueError("min_retrain_events is larger than max_retrain_events")
        if self.retrain_holdout_events > self.retrain_max_holdout_events:
            raise ValueError("retrain_holdout_events is larger than retrain_max_holdout_events")
        if self.warning_delta and self.warning_delta <= self.adwin_delta:
            raise ValueError(
                f"warning_delta ({self.warning_delta}) must be larger than adwin_delta "
                f"({self.adwin_delta}): the warning is the looser detector (0 turns it off)"
            )
        self._check_security()
        self._check_checkpoint_keys()
        self._check_metrics_tls()
        return self

    def _check_labels_topic(self) -> None:
        labels = self.labels_topic
        if labels is None:
            return
        others = {self.topic, self.predictions_topic, self.dead_letter_topic}
        if self.checkpoint_store == "kafka":
            others.add(self.checkpoint_topic)
        if labels in others:
            raise ValueError("labels_topic must differ from the input, output, checkpoint topics")

    def _check_checkpoint_keys(self) -> None:
        keys = self.checkpoint_keys()  # raises on a malformed list
        if keys and self.allow_unsigned_checkpoints:
            raise ValueError(
                "allow_unsigned_checkpoints contradicts the checkpoint key that is set: "
                "with a key every checkpoint is signed, and unsigned ones are refused"
            )
        if self.checkpoint_store == "kafka" and not keys and not self.allow_unsigned_checkpoints:
            raise ValueError(
                "checkpoint_store kafka needs a checkpoint key: without one, whoever can "
                f"produce to the checkpoint topic {self.checkpoint_topic!r} can run code in "
                "every daemon of the group (a checkpoint is a pickle). Set "
                f"{ENV_PREFIX}CHECKPOINT_KEY in the environment, or accept that risk "
                "explicitly with --allow-unsigned-checkpoints"
            )

    def checkpoint_keys(self) -> tuple[bytes, ...]:
        """The checkpoint keys, the signing one first; empty when none is set."""
        if self.checkpoint_key is None:
            return ()
        parts = self.checkpoint_key.get_secret_value().split(",")
        for number, part in enumerate(parts, 1):
            # Never echo a key: say which one of the list is wrong, and how.
            if not part:
                raise ValueError(f"checkpoint key {number} of {len(parts)} is empty")
            if part != part.strip():
                raise ValueError(
                    f"checkpoint key {number} of {len(parts)} has leading or trailing "
                    "whitespace; separate the keys with commas only"
                )
        if len(set(parts)) != len(parts):
            raise ValueError("the checkpoint key list names a key twice")
        return tuple(part.encode() for part in parts)

    def _check_metrics_tls(self) -> None:
        files = {
            "metrics_tls_certfile": self.metrics_tls_certfile,
            "metrics_tls_keyfile": self.metrics_tls_keyfile,
        }
        given = [name for name, path in files.items() if path is not None]
        if len(given) == 1:
            raise ValueError(
                f"metrics_tls_certfile and metrics_tls_keyfile go together; only {given[0]} is set"
            )
        for name, path in files.items():
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {path} is not a file")

    def _check_security(self) -> None:
        security_config(self._security_fields())  # raises ValueError on a contradiction

    def _security_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SECURITY_FIELDS}

    def kafka_config(self) -> dict[str, Any]:
        """Connection settings as kafka-python keyword arguments, secrets revealed only here."""
        return {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            **security_config(self._security_fields()),
        }

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = settings_cls.model_config.get("toml_file")
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if toml_file:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=toml_file),)
        return sources


#: The settings of how a client authenticates and encrypts (``streamlearn produce`` has them
#: too, as options, its secrets from the same environment variables).
SECURITY_FIELDS = (
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
)


def security_config(fields: dict[str, Any]) -> dict[str, Any]:
    """The :data:`SECURITY_FIELDS` as kafka-python keyword arguments, secrets revealed only
    here; ``ValueError`` when they contradict each other.

    >>> fields = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
    ...           "sasl_username": "u", "sasl_password": SecretStr("p")}
    >>> security_config(fields)["sasl_plain_password"]
    'p'
    """
    protocol = fields.get("security_protocol") or "PLAINTEXT"
    mechanism, username, password = (
        fields.get(name) for name in ("sasl_mechanism", "sasl_username", "sasl_password")
    )
    sasl = protocol.startswith("SASL")
    if sasl and (not mechanism or not username or not password):
        raise ValueError(
            f"security_protocol {protocol} needs sasl_mechanism, sasl_username and sasl_password"
        )
    if not sasl and (mechanism or username or password):
        raise ValueError(f"SASL settings given but security_protocol is {protocol}")
    ssl_files = {name: fields.get(name) for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")}
    if (any(ssl_files.values()) or fields.get("ssl_password")) and not protocol.endswith("SSL"):
        raise ValueError(f"SSL settings given but security_protocol is {protocol}")
    config: dict[str, Any] = {"security_protocol": protocol}
    if sasl:
        config["sasl_mechanism"] = mechanism
        config["sasl_plain_username"] = username
        config["sasl_plain_password"] = _reveal(password)
    config.update({name: str(path) for name, path in ssl_files.items() if path is not None})
    if fields.get("ssl_password") is not None:
        config["ssl_password"] = _reveal(fields["ssl_password"])
    return config


def _reveal(secret: SecretStr | str | None) -> str | None:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def load_settings(
    cli_values: dict[str, Any],
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
) -> RunSettings:
    """Build the settings once, or raise :class:`SettingsError` saying what is wrong."""
    environ = dict(os.environ) if environ is None else environ
    _refuse_unknown_env(environ)
    cls: type[RunSettings] = RunSettings
    if config_file is not None:
        if not config_file.is_file():
            raise SettingsError(f"config file {config_file} does not exist")
        cls = type(
            "RunSettingsFromFile",
            (RunSettings,),
            {"model_config": {**RunSettings.model_config, "toml_file": config_file}},
        )
    given = {key: value for key, value in cli_values.items() if value is not None}
    try:
        return cls(**given)
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None


def _refuse_unknown_env(environ: dict[str, str]) -> None:
    known = {ENV_PREFIX + name.upper() for name in RunSettings.model_fields}
    unknown = sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known)
    if unknown:
        raise SettingsError(f"unknown environment variable(s): {', '.join(unknown)}")


def _explain(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if error["loc"] else message)
    return "invalid settings:\n  " + "\n  ".join(lines)
