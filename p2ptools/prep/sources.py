"""Scenes wherever they are: local files, ``http(s)://``, ``s3://``, ``gs://``, ``/vsi…`` paths, list files.

A remote scene is read like a local one — GDAL opens it through its virtual file systems
(``/vsicurl/``, ``/vsis3/``, ``/vsigs/``) and every tile window is a range request — so tiling a
Cloud-Optimized GeoTIFF in a bucket reads only the blocks the tiles need. Credentials come from the
usual GDAL/AWS/Google environment variables.

A *list file* (``.txt``: one path or URL per line, ``#`` comments) stands for a folder of photos or
of labels; its entries are paired by file stem like folder entries.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from p2ptools.errors import InputError

REMOTE_PREFIXES = ("http://", "https://", "s3://", "gs://", "/vsi")
LIST_SUFFIXES = (".txt", ".list")


class RemotePath(str):
    """A URL or GDAL virtual path that behaves enough like a ``Path`` for p2ptools (name, stem, suffix)."""

    @property
    def _pure(self) -> PurePosixPath:
        path = urlparse(self).path if "://" in self else str(self)
        return PurePosixPath(path)

    @property
    def name(self) -> str:
        return self._pure.name

    @property
    def stem(self) -> str:
        return self._pure.stem

    @property
    def suffix(self) -> str:
        return self._pure.suffix

    def is_file(self) -> bool:
        return True  # checked when GDAL opens it

    def resolve(self) -> RemotePath:
        return self


def is_remote(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a URL or a GDAL virtual path."""
    return str(path).startswith(REMOTE_PREFIXES)


def as_source(entry: str, base: Path) -> Path | RemotePath:
    """A list-file entry as a local path (``~`` expanded per entry; relative ones are relative to the
    list's folder) or a :class:`RemotePath`."""
    return RemotePath(entry) if is_remote(entry) else base / Path(entry).expanduser()


def is_list_file(path: Path) -> bool:
    """Whether ``path`` is a list file of scenes (a ``.txt``/``.list`` file)."""
    return Path(path).is_file() and Path(path).suffix.lower() in LIST_SUFFIXES


def read_list(path: Path) -> list[Path | RemotePath]:
    """The entries of a list file (blank lines and ``#`` comments skipped).

    Raises:
        InputError: if it cannot be read or lists nothing.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the list of scenes: {exc}") from exc
    entries = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not entries:
        raise InputError(f"{path}: lists no scenes")
    return [as_source(e, Path(path).parent) for e in entries]


def gdal_http_env(retries: int, timeout: int) -> dict[str, str]:
    """GDAL settings for remote reads: retries, timeout, no directory listing on open."""
    return {"GDAL_HTTP_MAX_RETRY": str(retries), "GDAL_HTTP_RETRY_DELAY": "1", "GDAL_HTTP_TIMEOUT": str(timeout),
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "CPL_VSIL_CURL_USE_HEAD": "NO"}
