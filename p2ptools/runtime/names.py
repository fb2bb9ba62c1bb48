"""File names as a file system allows them: any bytes but ``/`` and NUL. Python hands a byte that is not
UTF-8 over as a lone surrogate (``surrogateescape``); GDAL takes UTF-8 names only. These helpers let
every command read and write such names."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def is_utf8(text: str) -> bool:
    """Whether ``text`` is plain UTF-8 text: not a file name with a byte that is not UTF-8 (a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextlib.contextmanager
def gdal_name(path: Path, new: bool = False) -> Iterator[str]:
    """``path`` spelled so that GDAL opens it: as it is, or, for a name that is not UTF-8 (GDAL takes UTF-8
    names only), ``/proc/self/fd/N`` of the file opened here (``new``: ``/proc/self/fd/N/<name>`` in its
    folder, for a file to create, whose own name must then be UTF-8); held open while the block runs.

    GDAL opens the file again through that name, so a dataset stays usable after the block.
    """
    if is_utf8(str(path)) or not Path("/proc/self/fd").is_dir():  # elsewhere: GDAL's own message names the file
        yield str(path)
        return
    fd = os.open(path.parent if new else path, os.O_RDONLY)
    try:
        yield f"/proc/self/fd/{fd}" + (f"/{path.name}" if new else "")
    finally:
        os.close(fd)
