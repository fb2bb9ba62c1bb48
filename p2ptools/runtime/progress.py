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
    """A progress line at every tenth of a long job and at least every ``every`` seconds (whatever the
    terminal): ``what: 300/1000 img (30%), 12s elapsed, ETA 28s``, and with ``show_bar`` a progress
    bar as well (drawn only on a terminal). A context manager: leaving it closes the bar.

    ``steps=0`` gives no lines per tenth (only the timed ones, ``every=0`` none at all).
    """

    def __init__(self, total: int, what: str, unit: str, steps: int = 10, show_bar: bool = False,
                 every: float = 60.0, extra: Any = None) -> None:
        import time

        self.total, self.what, self.unit, self.steps, self.every = total, what, unit, steps, every
        self.extra = extra  # a callable giving text appended to each line (current losses …)
        self.bar = bar(total, what, unit, show_bar)
        self.done = 0
        self._next = 1
        self._clock = time.perf_counter
        self._start = self._last = self._clock()

    def update(self, n: int) -> None:
        """Count ``n`` more units done; log a line when a new tenth is reached or ``every`` seconds passed."""
        self.bar.update(n)
        self.done += n
        now = self._clock()
        tenth = self.total > 0 and self.steps > 0 and self.done * self.steps >= self._next * self.total
        timed = self.every > 0 and now - self._last >= self.every and self.done < self.total
        if not (tenth or timed):
            return
        while self.total > 0 and self.steps > 0 and self._next * self.total <= self.done * self.steps:
            self._next += 1
        self._last = now
        spent = now - self._start
        left = spent * (self.total - self.done) / max(self.done, 1)
        more = f" · {self.extra()}" if self.extra is not None else ""
        report("%s: %d/%d %s (%d%%), %s elapsed, ETA %s%s", self.what, self.done, self.total, self.unit,
               100 * self.done // max(self.total, 1), duration(spent),
               duration(left) if self.done < self.total else "0s", more)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()

    def __enter__(self) -> Ticker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
