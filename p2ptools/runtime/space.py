"""Free space: sizes for people, and a full disk told as one line about the output, not an input.

Every writer of p2ptools (:func:`p2ptools.runtime.output.atomic_write_bytes`,
:func:`~p2ptools.runtime.output.write_geotiff`) turns "no space left on device" (``ENOSPC``, or a
quota's ``EDQUOT``) into :class:`~p2ptools.errors.DiskFullError` naming the output folder, the
file being written and the free space it needs. Commands that go on after a bad input stop at
once on it: a full disk is not a bad scene, and nothing already finished is removed.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from p2ptools.errors import DiskFullError

#: errno values that mean the file system (or the user's quota) is full
FULL = (errno.ENOSPC, errno.EDQUOT)


def human_bytes(n: float) -> str:
    """``1536`` → ``1.5 KB``; ``686e6`` → ``686 MB`` (decimal units, as ``df -H`` prints them)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("bytes",) or abs(n) >= 100 else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.0f} TB"  # pragma: no cover


def free_bytes(path: Path) -> int | None:
    """Free space on the file system of ``path`` (or of its nearest existing parent); None if unknown."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the file system or quota is full."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, DiskFullError):
            return True
        if isinstance(exc, OSError) and exc.errno in FULL:
            return True
        text = str(exc)
        if "No space left on device" in text or "Disk quota exceeded" in text or "Free disk space available" in text:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return False


def disk_full(path: Path, need: int | None = None) -> DiskFullError:
    """The one-line error for a full disk while writing ``path``.

    Args:
        path: the file being written.
        need: its size in bytes, when known.
    """
    path = Path(path)
    free = free_bytes(path.parent)
    needs = f", and this file alone needs {human_bytes(need)}" if need else ""
    have = f"{human_bytes(free)} free" if free is not None else "no free space"
    return DiskFullError(f"{path.parent}: the disk is full ({have}{needs}) while writing {path.name}; what was "
                         "finished is kept: free some space (or write elsewhere) and run the same command again "
                         "to resume")
