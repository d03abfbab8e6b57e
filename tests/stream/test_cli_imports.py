"""``streamlearn --help`` builds every parser without importing River, scipy or Kafka.

Each check runs in a fresh interpreter: this test process has long imported all of
them, so only a new ``sys.modules`` tells what the CLI itself pulls in.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from stream.tools.generators import GENERATORS

HEAVY = (
    "river", "scipy", "kafka", "stream.tools.produce", "stream.daemon.app", "stream.daemon.loop"
)  # fmt: skip
SUBCOMMANDS = ("run", "produce", "broker", "report", "demo")


def _in_fresh_python(body: str) -> dict[str, Any]:
    """Run ``body`` in a new interpreter after the helpers below; return what it printed.

    ``body`` calls ``help_of(argv)`` (the text ``main(argv)`` wrote before exiting) and
    ``report(**values)``; ``loaded`` lists the heavy modules imported by then.
    """
    prelude = textwrap.dedent(
        f"""
        import contextlib, io, json, sys
        from stream.cli import main

        def help_of(argv):
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                main(argv)
            return out.getvalue()

        def loaded():
            return sorted(m for m in {HEAVY!r} if m in sys.modules)

        def report(**values):
            print(json.dumps(values))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_importing_the_cli_imports_nothing_heavy() -> None:
    result = _in_fresh_python("report(loaded=loaded())")
    assert result["loaded"] == []


@pytest.mark.parametrize("argv", [["--help"], *([c, "--help"] for c in SUBCOMMANDS)])
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    result = _in_fresh_python(f"text = help_of({argv!r}); report(text=text, loaded=loaded())")
    assert "usage: streamlearn" in result["text"]
    assert result["loaded"] == []


def test_produce_help_offers_exactly_the_registered_generators() -> None:
    result = _in_fresh_python("report(text=help_of(['produce', '--help']))")
    offered = re.search(r"--generator \{([^}]*)\}", result["text"])
    assert offered is not None, result["text"]
    assert tuple(offered.group(1).split(",")) == GENERATORS


def test_running_produce_imports_the_producer_on_demand() -> None:
    # No --count with a generator: refused by the producer's own option checks, before
    # any connection, so this proves the lazy handler reaches stream.producer.
    result = _in_fresh_python(
        """
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["produce", "--bootstrap-servers", "127.0.0.1:1", "--topic", "t"])
        report(code=code, err=err.getvalue(), loaded=loaded())
        """
    )
    assert result["code"] == 2
    assert "count is required" in result["err"]
    assert {"kafka", "stream.tools.produce"} <= set(result["loaded"])


def test_building_a_concept_imports_river_on_demand() -> None:
    result = _in_fresh_python(
        """
        from stream.tools.generators import concept_stream
        before = loaded()
        pairs = list(concept_stream("sea", seed=1, count=3))
        report(before=before, after=loaded(), n=len(pairs))
        """
    )
    assert "river" not in result["before"]
    assert "river" in result["after"]
    assert result["n"] == 3
