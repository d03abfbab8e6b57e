"""The one way tests wait: for a condition, bounded, failing with what was awaited.

A fixed sleep is either too short on a loaded machine or wasted on an idle one; a test
waits for what it needs instead (a metric on /metrics, a committed offset, a file, a
process state, a line of the run log).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], object],
    timeout_s: float,
    what: str,
    every_s: float = 0.1,
    details: Callable[[], object] | None = None,
) -> None:
    """Call ``condition`` until it is truthy; after ``timeout_s`` fail the test naming
    ``what`` (and adding ``details()``, e.g. a log tail). A condition may raise to fail
    at once (a process that exited cannot catch up)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout_s:g} s waiting for {what}"
            if details is not None:
                message += f":\n{details()}"
            raise AssertionError(message)
        time.sleep(every_s)
