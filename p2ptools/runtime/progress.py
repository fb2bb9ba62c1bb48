"""Progress for long work: a bar on a terminal, and a log line per unit whatever the terminal.

Long commands (training epochs, evaluation metrics, whole-scene bands, tiled scenes) report each
finished unit through :func:`report`, on the ``p2ptools.runtime.progress`` logger, which the command line
shows at INFO level by default, so output redirected to a file (nohup, a cluster job) still shows
progress. Progress bars (:func:`bar`) draw only when stderr is a terminal.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

from tqdm import tqdm  # not tqdm.auto: a command line, and half the import time

LOGGER_NAME = "p2ptools.runtime.progress"
_log = logging.getLogger(LOGGER_NAME)


def stderr_is_tty() -> bool:
    """Whether stderr is an interactive terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def bar(total: int | None, desc: str, unit: str, enabled: bool = True, initial: int = 0) -> tqdm:
    """A tqdm bar drawn only when ``enabled`` and stderr is a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=not (enabled and stderr_is_tty()),
                dynamic_ncols=True)


def report(message: str, *args: Any) -> None:
    """Log one line of progress (shown by default by the command line)."""
    _log.info(message, *args)


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``: a short human duration (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class TqdmHandler(logging.StreamHandler):
    """A logging handler that writes through ``tqdm.write`` so lines do not break a drawn bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class Ticker:
    """A progress line at every tenth of a long job (whatever the terminal): ``what: 300/1000 img (30%),
    12s elapsed, ETA 28s``, and with ``show_bar`` a progress bar as well (drawn only on a terminal).
    A context manager: leaving it closes the bar."""

    def __init__(self, total: int, what: str, unit: str, steps: int = 10, show_bar: bool = False) -> None:
        import time

        self.total, self.what, self.unit, self.steps = total, what, unit, steps  # steps 0: no lines
        self.bar = bar(total, what, unit, show_bar)
        self.done = 0
        self._next = 1
        self._clock = time.perf_counter
        self._start = self._clock()

    def update(self, n: int) -> None:
        """Count ``n`` more units done; log a line when a new tenth is reached."""
        self.bar.update(n)
        self.done += n
        if self.total <= 0 or self.steps <= 0 or self.done * self.steps < self._next * self.total:
            return
        while self._next * self.total <= self.done * self.steps:
            self._next += 1
        spent = self._clock() - self._start
        left = spent * (self.total - self.done) / max(self.done, 1)
        report("%s: %d/%d %s (%d%%), %s elapsed, ETA %s", self.what, self.done, self.total, self.unit,
               100 * self.done // self.total, duration(spent), duration(left) if self.done < self.total else "0s")

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()

    def __enter__(self) -> Ticker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
