"""Bounded threads around the network: a producer that makes its items ahead on a thread of its own,
and a consumer that handles results on one, so reading, decoding, blending and writing overlap with
the engine (ONNX Runtime and torch release the GIL while they compute).

Both hold at most ``depth`` items in their queue, so memory stays bounded; an error on either thread
is raised again on the caller's, and a ``stop`` event ends both when the caller fails or is closed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

_END = object()


@dataclass
class _Failed:
    exc: BaseException


def put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put ``item`` into the bounded ``q``, waiting while it is full; False if ``stop`` was set meanwhile."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    """The next item of ``q``, waiting while it is empty; the end once ``stop`` is set and ``q`` is empty
    (the other side has failed: its error is raised where it is caught)."""
    while True:
        try:
            return q.get(timeout=0.05)
        except queue.Empty:
            if stop.is_set():
                return _END


def ahead(items: Iterable[Any], depth: int, stop: threading.Event, name: str) -> Iterator[Any]:
    """The items of ``items``, made on a thread of their own at most ``depth`` ahead; the thread's error
    raised here. Closing this generator (or setting ``stop``) ends the thread; closing waits for it.

    Args:
        items: what the thread iterates (reads, decodes …).
        depth: items made ahead at most.
        stop: set to end the thread early; set by this generator when it is closed.
        name: the thread's name.
    """
    q: queue.Queue[Any] = queue.Queue(depth)

    def work() -> None:
        try:
            for item in items:
                if not put(q, item, stop):
                    return
            put(q, _END, stop)
        except BaseException as exc:  # noqa: BLE001 (raised again on the consuming thread)
            put(q, _Failed(exc), stop)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while (item := _get(q, stop)) is not _END:
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


class Consumer:
    """A thread that calls ``handle(item)`` for every item :meth:`put` to it, in order. A context manager:
    a clean exit waits for the last item and raises the thread's error, if any; an exit by an error
    stops the thread (items still queued are dropped).

    Its own ``abort`` event, not the shared ``stop``, ends it: a producer that finishes normally sets
    ``stop`` too (:func:`ahead`), and the items queued by then must still be handled.

    Args:
        handle: what the thread does with each item (blend, encode, write …).
        depth: items queued at most (:meth:`put` waits while the queue is full).
        stop: set when the thread fails (so a producer sharing it stops too) or the caller fails.
        name: the thread's name.
    """

    def __init__(self, handle: Callable[[Any], None], depth: int, stop: threading.Event, name: str) -> None:
        self.handle, self.stop = handle, stop
        self.abort = threading.Event()
        self.q: queue.Queue[Any] = queue.Queue(depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name=name, daemon=True)

    def __enter__(self) -> Consumer:
        self.thread.start()
        return self

    def put(self, item: Any) -> None:
        """Queue one item, waiting while the queue is full.

        Raises:
            BaseException: the thread's error, once it has failed.
        """
        if not put(self.q, item, self.abort) or self.error is not None:
            raise self.error or RuntimeError(f"{self.thread.name} stopped")

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None:
            put(self.q, _END, self.abort)
        else:
            self.abort.set()
            self.stop.set()
        self.thread.join()
        if kind is None and self.error is not None:
            raise self.error

    def _work(self) -> None:
        try:
            while (item := _get(self.q, self.abort)) is not _END and not self.abort.is_set():
                self.handle(item)
        except BaseException as exc:  # noqa: BLE001 (raised again on the caller's thread)
            self.error = exc
            self.abort.set()
            self.stop.set()
