"""The worker processes that run window fits beside the loop, one pool per process.

A fit on a thread shares the interpreter lock with the loop: an MLP's minibatch loop and
the daemon's loop slow each other down (docs/models.md, "The refit pause"). So
:class:`learners.background_fit.BackgroundFit` sends its fit to a worker process of one
pool, created on first use and shared by every model of the process, with
``max(1, cpu_count - 1)`` workers (a fit in flight per model at most; more fits than
workers queue).

- Workers are started with ``forkserver`` (``spawn`` where there is none), never
  ``fork``: the daemon has kafka-python's threads, which a forked child would inherit
  mid-lock. Each worker imports scikit-learn when it starts, so the first fit does not
  pay for it, and keeps BLAS to :data:`WORKER_BLAS_THREADS` thread(s): its other
  threads would compete with the loop for the same cores.
- :func:`warm` starts the pool ahead of the first fit (a model calls it when it learns
  its first event).
- A broken pool (a worker killed, out of memory) is replaced at the next :func:`submit`.
- At interpreter exit the pool's pending fits are cancelled and its workers terminated
  before ``concurrent.futures`` would wait for a running fit to end; a worker whose
  parent dies (killed) exits too.

>>> submit(sum, [1, 2, 3]).result()
6
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

__all__ = ["WORKER_BLAS_THREADS", "submit", "warm", "workers"]

#: BLAS threads in a worker (the loop keeps the process's default).
WORKER_BLAS_THREADS = 1

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_exit_hook_registered = False


def workers() -> int:
    """How many worker processes the pool has: a core is left to the loop."""
    return max(1, (os.cpu_count() or 1) - 1)


def submit(function: Callable[..., Any], *args: Any) -> Future[Any]:
    """``function(*args)`` in a worker process (``function`` importable at top level);
    a pool found broken is replaced once. Raises what starting a process raises."""
    for _ in range(2):
        pool = _current_pool()
        try:
            return pool.submit(function, *args)
        except BrokenProcessPool:
            _discard(pool)
    raise BrokenProcessPool("a fresh fit pool broke at once")


def warm() -> None:
    """Start the pool and a worker now, on a thread of their own, if there is no pool:
    the first fit then finds them ready instead of waiting a second or two for them."""
    with _lock:
        if _pool is not None:
            return
    threading.Thread(target=_warm, name="streamlearn-fit-pool-warm", daemon=True).start()


def _warm() -> None:
    # A failure here meets the first fit too, which handles it.
    with contextlib.suppress(Exception):
        submit(_ready).result()


def _ready() -> None:
    """Nothing: the worker's initializer did the work."""


def _current_pool() -> ProcessPoolExecutor:
    global _pool, _exit_hook_registered
    with _lock:
        if _pool is None:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context(
                "forkserver" if "forkserver" in methods else "spawn"
            )
            _pool = ProcessPoolExecutor(workers(), context, initializer=_start_worker)
            if not _exit_hook_registered:
                # Registered after concurrent.futures' own hook, so it runs before it.
                threading._register_atexit(_stop_at_exit)  # type: ignore[attr-defined]
                _exit_hook_registered = True
        return _pool


def _discard(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def _stop_at_exit() -> None:
    """Cancel what waits and end the workers: concurrent.futures' exit hook would wait
    for a running fit, however long."""
    with _lock:
        pool = _pool
    if pool is None:
        return
    # Python 3.11 has no public way to end a running task (3.14 adds terminate_workers);
    # taken before shutdown, which forgets them.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    # Joins the pool's manager thread, quick with its workers gone: left running, it would
    # race concurrent.futures' exit hook for its wake-up pipe.
    pool.shutdown(wait=True, cancel_futures=True)


def _start_worker() -> None:
    """In each worker, once: scikit-learn imported, BLAS limited, and an exit with the
    parent (a running fit would otherwise outlive a killed daemon)."""
    import sklearn.base  # noqa: F401  (the import the first fit would otherwise pay)
    from threadpoolctl import threadpool_limits

    threadpool_limits(WORKER_BLAS_THREADS)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: Any) -> None:
    parent.join()  # returns when the parent's end of the pipe closes: it has exited
    os._exit(1)
