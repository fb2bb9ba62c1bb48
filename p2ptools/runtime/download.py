"""Downloads of files p2ptools knows (pretrained weights, dataset archives): one fetch, one rule.

A file is fetched into a hidden ``.NAME.PID.part`` beside its destination with torch hub's
downloader (a progress bar on a terminal, nothing on a redirected stream), checked by the caller,
then renamed into place; the part file never outlives the call. ``is_offline`` is the one switch
(``--offline``, ``P2PTOOLS_OFFLINE=1``) every download obeys; ``trusted_transport`` says whether a
URL is safe to fetch a file from when only part of its digest is known.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

from p2ptools.errors import P2PError


class DownloadFailed(P2PError):
    """The transfer itself failed (network, HTTP status, a full disk while writing)."""


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` when given, else whether ``P2PTOOLS_OFFLINE`` is set to 1/true/yes/on."""
    if offline is not None:
        return offline
    return os.environ.get("P2PTOOLS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, in hex."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def trusted_transport(url: str) -> bool:
    """https, a local file, or a server on this machine (a test, a mirror on localhost)."""
    u = urlparse(url)
    return u.scheme in ("https", "file") or (u.scheme == "http" and (u.hostname or "") in ("localhost", "127.0.0.1",
                                                                                             "::1"))


def part_path(dest: Path) -> Path:
    """The hidden temporary name a download of ``dest`` is written to (same folder, so rename is atomic)."""
    return dest.parent / f".{dest.name}.{os.getpid()}.part"


def fetch(url: str, part: Path, progress: bool | None = None) -> None:
    """Download ``url`` into ``part`` (the caller checks it, renames it, and removes it on failure).

    Args:
        url: http(s) or file URL.
        part: the temporary file to write.
        progress: a progress bar (default: when stderr is a terminal).

    Raises:
        DownloadFailed: with the reason in words (``HTTP 404 Not Found``, the network error).
    """
    import torch

    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(part), progress=sys.stderr.isatty() if progress is None else progress)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        from p2ptools.runtime.space import disk_full, is_disk_full

        if is_disk_full(exc):
            raise disk_full(part) from exc
        reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else \
            getattr(exc, "reason", None) or exc
        raise DownloadFailed(str(reason)) from exc
