"""Downloads of files p2ptools knows (pretrained weights, dataset archives): one fetch, one rule.

A file is fetched into a hidden ``.NAME.PID.part`` beside its destination (a progress bar on a
terminal, nothing on a redirected stream), checked by the caller, then renamed into place; the part
file never outlives the call. ``is_offline`` is the one switch (``--offline``, ``P2PTOOLS_OFFLINE=1``)
every download obeys; ``trusted_transport`` says whether a URL's bytes arrive as its server sent
them (https, or a server on this machine). Every redirect hop is held to the first URL's rule: a
download that starts on a trusted transport is never redirected to plain http on another machine
(nor to anything but http(s)); the refused hop is not connected to.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from p2ptools.errors import P2PError

#: host names that are this machine: an http URL on one of them never crosses a network
LOOPBACK = ("localhost", "127.0.0.1", "::1")
#: seconds a connection or a read may stall before the download fails
TIMEOUT_S = 120


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
    return u.scheme in ("https", "file") or (u.scheme == "http" and (u.hostname or "") in LOOPBACK)


class UnsafeRedirect(DownloadFailed):
    """A server redirected a download to a location the first URL's rule does not allow."""


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to http(s), and, when the download started on a trusted transport
    (https, or http on this machine), only to a trusted transport again: every hop is held to the
    rule the first URL met, and a refused hop is never connected to."""

    def __init__(self, trusted: bool) -> None:
        super().__init__()
        self.trusted = trusted

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        scheme = urlparse(newurl).scheme
        if scheme not in ("http", "https") or (self.trusted and not trusted_transport(newurl)):
            fp.close()
            why = "plain http to another machine" if scheme == "http" else f"a {scheme or 'relative'} URL"
            raise UnsafeRedirect(f"refused a redirect from {req.full_url} to {newurl} ({why}; a download that "
                                 "started over https or on this machine stays on https or this machine)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def part_path(dest: Path) -> Path:
    """The hidden temporary name a download of ``dest`` is written to (same folder, so rename is atomic)."""
    return dest.parent / f".{dest.name}.{os.getpid()}.part"


def fetch(url: str, part: Path, progress: bool | None = None, max_bytes: int | None = None) -> None:
    """Download ``url`` into ``part`` (the caller checks it, renames it, and removes it on failure).

    Each redirect is checked before it is followed (:class:`_CheckedRedirects`): from https or from
    this machine, only to https or this machine again. The bytes go to a new, randomly named file
    beside ``part`` that is renamed onto it when complete (a file or link planted at ``part`` is
    replaced, never written through).

    Args:
        url: http(s) URL.
        part: the temporary file to write.
        progress: a progress bar (default: when stderr is a terminal).
        max_bytes: refuse a download larger than this (the announced size, or the bytes received).

    Raises:
        DownloadFailed: with the reason in words (``HTTP 404 Not Found``, the network error, a refused
            redirect, too many bytes).
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    opener = urllib.request.build_opener(_CheckedRedirects(trusted_transport(url)))
    tmp = part.parent / f".{part.name}.{secrets.token_hex(6)}"
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "p2ptools"}), timeout=TIMEOUT_S) as resp, \
                open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666),
                     "wb") as out:
            _copy(resp, out, progress, max_bytes, url)
        os.replace(tmp, part)
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        from p2ptools.runtime.space import disk_full, is_disk_full

        if is_disk_full(exc):
            raise disk_full(part) from exc
        reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else \
            getattr(exc, "reason", None) or exc
        raise DownloadFailed(str(reason)) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _copy(resp: Any, out: Any, progress: bool | None, max_bytes: int | None, url: str) -> None:
    """Stream ``resp`` into ``out`` with an optional progress bar, stopping past ``max_bytes``."""
    from tqdm import tqdm

    announced = int(resp.headers.get("Content-Length") or 0) or None
    if max_bytes is not None and announced is not None and announced > max_bytes:
        raise DownloadFailed(f"{url} announces {announced} bytes; at most {max_bytes} are expected, so nothing was "
                             "downloaded")
    got = 0
    with tqdm(total=announced, disable=not (sys.stderr.isatty() if progress is None else progress), unit="B",
              unit_scale=True, unit_divisor=1024) as bar:
        for block in iter(lambda: resp.read(1 << 20), b""):
            got += len(block)
            if max_bytes is not None and got > max_bytes:
                raise DownloadFailed(f"{url} sent more than {max_bytes} bytes, more than expected; stopped")
            out.write(block)
            bar.update(len(block))
