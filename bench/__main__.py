"""``python -m bench``: the side-by-side benchmark of issue 5 (``--help`` for options)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench.runner import BROKERS, CONTENDERS, DEFAULT_OUTPUT, SECTIONS, Plan, main


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark streamlearn against bare River, a naive kafka-python loop and "
        "Quix Streams on the embedded broker or Apache Kafka; writes a Markdown table.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small N and one run: a smoke test, not a measurement"
    )
    parser.add_argument(
        "--only",
        metavar="NAME",
        choices=CONTENDERS + SECTIONS,
        help=f"one section or contender: {', '.join(CONTENDERS + SECTIONS)}",
    )
    parser.add_argument(
        "--events",
        type=int,
        metavar="N",
        help="events per throughput run (default 100,000; 3,000 with --quick)",
    )
    parser.add_argument("--runs", type=int, metavar="R", help="runs per figure (default 3)")
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the table (default: %(default)s)",
    )
    parser.add_argument(
        "--broker",
        choices=(*BROKERS, "both"),
        default="tansu",
        help="the broker to run on: the embedded Tansu, Apache Kafka (needs "
        "Java 17 and Maven), or both in turn with the headline rows side "
        "by side (default: %(default)s)",
    )
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=6000,
        help="consumer group session timeout; Tansu waits that long before "
        "a group's first assignment (default: %(default)s)",
    )
    return parser.parse_args(argv)


def plan_from(args: argparse.Namespace) -> Plan:
    if args.quick:
        plan = Plan.quick(args.events or 3000)
    else:
        plan = Plan(events=args.events) if args.events else Plan()
    if args.runs:
        plan = replace(plan, runs=args.runs)
    return plan.only(args.only) if args.only else plan


if __name__ == "__main__":
    arguments = parse()
    brokers = BROKERS if arguments.broker == "both" else (arguments.broker,)
    raise SystemExit(
        main(plan_from(arguments), arguments.output, arguments.session_timeout_ms, brokers)
    )
