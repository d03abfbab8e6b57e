"""The options of ``streamlearn produce``, declared without importing Kafka or River.

``streamlearn --help`` builds every subcommand's parser, so what it needs stays light;
:mod:`stream.tools.produce` does the producing and is imported only when ``produce`` runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from stream.tools.generators import GENERATORS

KeyStrategy = Literal["id", "none"]
KEY_STRATEGIES: tuple[str, ...] = ("id", "none")


def add_produce_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``streamlearn produce``."""
    add = parser.add_argument
    add(
        "--bootstrap-servers",
        required=True,
        metavar="HOST:PORT[,...]",
        help="Kafka bootstrap servers, comma-separated",
    )
    add("--topic", required=True, help="topic to publish to; created if missing")
    add_source_arguments(parser)
    add(
        "--partitions",
        type=int,
        metavar="P",
        help="partitions to create the topic with and write to, event i going to"
        " partition i %% P (default: the existing topic's count, else 1)",
    )
    add(
        "--rate",
        type=float,
        metavar="EPS",
        help="events per second to pace at (default: as fast as possible)",
    )
    add(
        "--key",
        choices=KEY_STRATEGIES,
        default="id",
        help="record key: the event id, or none (default: %(default)s)",
    )
    add(
        "--labels-topic",
        metavar="T",
        help="with --label-delay: send the labels to topic T instead, keyed by id on the"
        " partition number of their event; T is created with the events topic's partition"
        " count (the daemon's --labels-topic)",
    )
    add_security_arguments(parser)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the events come from: a generator or a file (``produce`` and ``evaluate``)."""
    add = parser.add_argument
    add(
        "--count",
        type=int,
        metavar="N",
        help="number of events to produce; required with a generator, with --file"
        " defaults to every row of the file",
    )
    add(
        "--seed",
        type=int,
        default=42,
        help="random seed: the same seed gives the same events; ids are '<seed>-<index>'"
        " (default: %(default)s)",
    )
    add(
        "--generator",
        default="sea",
        choices=GENERATORS,
        help="River synthetic stream to draw events from (default: %(default)s)",
    )
    add(
        "--drift-at",
        type=int,
        action="append",
        default=[],
        metavar="K",
        help="concept change at event index K (repeatable, increasing): event K is"
        " the first of another concept of the same generator (abrupt, unless --drift-width)",
    )
    add(
        "--drift-width",
        type=int,
        default=0,
        metavar="W",
        help="make each change gradual over W events: event K+j (j < W) comes from the new"
        " concept with probability (j+1)/(W+1) (default: %(default)s, abrupt)",
    )
    add(
        "--file",
        type=Path,
        metavar="PATH",
        help="replay a CSV or JSON-lines file (by extension) instead of a generator",
    )
    add(
        "--label-column",
        metavar="C",
        help="with --file: the column or key holding the label (default: 'label');"
        " canonical JSON lines with a 'features' object use their own 'label'",
    )
    add(
        "--label-delay",
        type=int,
        metavar="D",
        help="send events without their label and each label later, as its own"
        ' {"id", "label"} record on the event\'s partition, D records after its'
        " event (before event i, the label of event i - D; the last D close the stream)",
    )
    add(
        "--number-labels",
        action="store_true",
        help="with --file: labels are numbers (a regression's targets), sent as floats;"
        " without it a label is a class (bool, integer or string)",
    )


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """How ``produce`` authenticates, as ``run`` does; the passwords come only from
    ``STREAMLEARN_SASL_PASSWORD`` and ``STREAMLEARN_SSL_PASSWORD`` (a command line is
    visible to every user in ``ps``)."""
    add = parser.add_argument
    add(
        "--security-protocol",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        help="Kafka security protocol (default: PLAINTEXT)",
    )
    add(
        "--sasl-mechanism",
        choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
        help="SASL mechanism (with a SASL_* protocol); the password from STREAMLEARN_SASL_PASSWORD",
    )
    add("--sasl-username", help="SASL user name")
    add("--ssl-cafile", type=Path, help="CA bundle to verify the brokers (PEM)")
    add("--ssl-certfile", type=Path, help="client certificate (PEM)")
    add(
        "--ssl-keyfile",
        type=Path,
        help="client private key (PEM); its password, if any, from STREAMLEARN_SSL_PASSWORD",
    )


def source_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The source options of parsed arguments, as ``SourceOptions`` keyword arguments."""
    return {
        "count": args.count,
        "seed": args.seed,
        "generator": args.generator,
        "drift_at": tuple(args.drift_at or ()),
        "drift_width": args.drift_width,
        "file": args.file,
        "label_column": args.label_column,
        "label_delay": args.label_delay,
        "number_labels": args.number_labels,
    }
