"""Running independent work items in worker processes, or on a Dask cluster, results as they complete.

``imap_unordered`` runs items in this process, in a local process pool (``workers``), or on
dask.distributed (``dask``: the address of a running scheduler — ``dask scheduler``,
dask-jobqueue on SLURM/PBS, dask-kubernetes — or ``local:N`` for a LocalCluster of N worker
processes). The caller sees the same thing either way: results in completion order. On Dask a task
whose worker dies is run again on another worker (the scheduler's ``allowed_failures``); one that
fails for good is handed to ``on_error``, so the caller can report it like a bad input.

Local pool workers never outlive the command: on Linux each asks the kernel to end it when its parent dies
(``PR_SET_PDEATHSIG``, so a SIGKILL of the parent leaves no orphan), and on Ctrl-C or SIGTERM the
parent cancels what has not started and terminates the workers before the error is reported.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_PR_SET_PDEATHSIG = 1


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _worker_init(parent: int) -> None:
    """In each worker: die with the parent (pid ``parent``), leave Ctrl-C and SIGTERM to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent sees Ctrl-C and ends the pool
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's "SIGTERM = Ctrl-C" handler
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by the parent while it forked
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(1)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """End the workers now and cancel what has not started (on Ctrl-C, SIGTERM or an error).

    The interrupt may have landed anywhere in the executor's own code, so nothing here waits on its
    locks: the workers are signalled directly, the call queue's feeder thread is not waited for at
    exit (its pipe has no reader left), the pool is shut down only if its lock is free, and its
    finished manager thread is taken off the exit hook.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)  # shutdown() forgets it
    for p in processes:
        with contextlib.suppress(Exception):
            p.terminate()
    queue = getattr(pool, "_call_queue", None)
    if queue is not None:
        with contextlib.suppress(Exception):
            queue.cancel_join_thread()
    lock = getattr(pool, "_shutdown_lock", None)
    if lock is None or lock.acquire(blocking=False):
        if lock is not None:
            lock.release()
        with contextlib.suppress(Exception):
            pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        with contextlib.suppress(Exception):
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    # once the pool's manager thread has seen the workers go, drop it from the interpreter's exit hook,
    # which would otherwise write to the wake-up pipe that thread has closed (a traceback at exit)
    if manager is not None:
        manager.join(timeout=10)
        if not manager.is_alive():
            from concurrent.futures import process as cf_process

            getattr(cf_process, "_threads_wakeups", {}).pop(manager, None)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM (delivered when the block ends) in the main thread on POSIX."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def imap_unordered(fn: Callable[[T], R], items: Iterable[T], workers: int, dask: str | None = None,
                   on_error: Callable[[T, BaseException], R] | None = None) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in completion order.

    With ``dask`` the items run on that Dask cluster (see the module docstring). Else, with
    ``workers <= 1`` (or a single item) everything runs in this process, in order; otherwise a
    process pool runs the items; it forks where the platform can (workers start at once with this
    process's modules already imported) and spawns elsewhere. ``fn`` must be a module-level
    function and items must pickle; ``fn`` should return errors as values rather than raise.

    Raises:
        ConfigError: ``dask`` given without dask.distributed installed, or a scheduler that cannot
            be reached.
    """
    items = list(items)
    if dask:
        yield from _dask_map(fn, items, dask, on_error)
        return
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=ctx, initializer=_worker_init,
                               initargs=(os.getpid(),))
    try:
        # Ctrl-C and SIGTERM wait while the workers are forked: an interrupt raised inside fork's own
        # hooks would be swallowed (the command would go on) or leave the pool half made
        with _signals_held():
            futures = [pool.submit(fn, item) for item in items]
        for fut in as_completed(futures):
            yield fut.result()
    except BaseException:
        _terminate(pool)
        raise
    else:
        pool.shutdown(wait=True)


#: how long to wait for a Dask scheduler to answer
CONNECT_TIMEOUT = "20s"


def dask_client(address: str) -> tuple[Any, Any]:
    """``(client, cluster)`` for ``address``: ``local:N`` starts a LocalCluster of N single-threaded
    worker processes (``cluster`` is then closed with the client), anything else is a scheduler
    address (``tcp://host:8786``, a scheduler file path ending in ``.json``).

    Raises:
        ConfigError: without dask.distributed, for a malformed ``local:N`` or an unreachable scheduler.
    """
    from p2ptools.errors import ConfigError

    try:
        import distributed
    except ImportError:
        raise ConfigError("--dask needs dask.distributed: pip install 'p2ptools[dask]'") from None
    if address.startswith("local:"):
        try:
            n = int(address.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"--dask {address}: write local:N with N ≥ 1 worker processes, e.g. local:4")
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                           silence_logs=logging.ERROR)
        return distributed.Client(cluster), cluster
    try:
        if address.endswith(".json"):
            return distributed.Client(scheduler_file=address, timeout=CONNECT_TIMEOUT), None
        return distributed.Client(address, timeout=CONNECT_TIMEOUT), None
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"--dask {address}: cannot reach the Dask scheduler ({exc})") from exc


def _dask_map(fn: Callable[[T], R], items: list[T], address: str,
              on_error: Callable[[T, BaseException], R] | None) -> Iterator[R]:
    client, cluster = dask_client(address)
    import distributed

    futures: list[Any] = []
    try:
        futures = client.map(fn, items, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in distributed.as_completed(futures):
            try:
                yield fut.result()
            except Exception as exc:  # the task's worker died too often, or fn raised
                from p2ptools.runtime.space import is_disk_full

                if on_error is None or is_disk_full(exc):  # a full disk stops the run; it is not the item's fault
                    raise
                yield on_error(items[index[fut.key]], exc)
    finally:
        with contextlib.suppress(Exception):
            client.cancel(futures)
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
