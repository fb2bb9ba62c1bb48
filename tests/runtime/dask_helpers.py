"""Task functions for the Dask tests (importable by worker processes)."""

from __future__ import annotations

import os
from pathlib import Path


def square_or_die_once(item: tuple[int, str]) -> int:
    """``n²``; but the first time item 3 runs, its worker process dies (os._exit), mid-run."""
    n, marker = item
    if n == 3 and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    return n * n


def always_fail(n: int) -> int:
    """A task that raises (not caught by the task itself)."""
    raise ValueError(f"bad item {n}")
