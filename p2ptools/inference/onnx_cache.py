"""The ONNX Runtime engine's cache of exported generators: content-addressed, verified, atomic, pruned.

The folder is ``$P2PTOOLS_CACHE/onnx``, else ``$XDG_CACHE_HOME/p2ptools/onnx``, else
``~/.cache/p2ptools/onnx``. An entry is ``<key>.onnx`` with ``<key>.sha256`` beside it (the graph's
SHA-256 in ``sha256sum`` format):

* the key is a SHA-256 of what the export depends on (:func:`generator_key`): the generator's tensors
  (state-dict names, shapes, dtypes and bytes, sorted by name: the tensors, not the checkpoint file, so
  a copy of a checkpoint hits and a changed weight misses), its modules and their settings (folded
  BatchNorm shows; the exporter traces in eval mode), the input channels and trace size, and the exporter
  (:func:`p2ptools.model.export.exporter_version`: p2ptools, torch and onnx versions, opset, graph
  format; plus the source of the network classes and of the exporter);
* a graph is read whole and checked against its digest before ONNX Runtime gets its bytes; one that
  does not match is ignored with one warning, removed and exported again;
* writes are atomic (a temporary file in the folder, then a rename), the graph before its digest, so
  a graph without a digest is a miss;
* after each new entry the folder is pruned to the :data:`MAX_ENTRIES` (8) most recently used entries
  and :data:`MAX_BYTES` (1 GiB) in all, least recently used first (the entry just written is always
  kept); recency is the digest file's modification time, which p2ptools sets on each use (not the
  access time, which many mounts do not keep). Temporary files older than a day and graphs of the
  earlier path-keyed scheme (24 hex digits) go too;
* the folder must be the user's own: opened without following a symbolic link, a folder owned by the
  current user and not writable by group or others (p2ptools creates it 0700); otherwise one warning
  and no cache. An unusable cache (not trusted, read-only, a file where the folder should be, disk
  full) means the graph is exported into memory and run from its bytes, said in one log line (once per
  process; the graph is then kept in memory for the next engine of the same network).

Without a trusted folder a planted graph is never read: the key names the tensors, not a file, and
only the user can write in the folder (the digest beside a graph guards against corruption, not
against someone who can write both).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

MAX_ENTRIES = 8
MAX_BYTES = 1 << 30
STALE_TEMP_S = 86400
_ENTRY = re.compile(r"([0-9a-f]{64})\.(onnx|sha256)")
_TEMP = re.compile(r"\.[0-9a-f]{64}\.(onnx|sha256)\.[0-9a-f]{12}\.tmp")
_LEGACY = re.compile(r"[0-9a-f]{24}\.onnx")
_said: set[str] = set()
_memory: dict[str, bytes] = {}


class _Untrusted(Exception):
    """The cache folder is not the user's own (a symbolic link, another owner, writable by others)."""


def cache_dir() -> Path:
    """``$P2PTOOLS_CACHE/onnx``, else ``$XDG_CACHE_HOME/p2ptools/onnx``, else ``~/.cache/p2ptools/onnx``."""
    if os.environ.get("P2PTOOLS_CACHE"):
        return Path(os.environ["P2PTOOLS_CACHE"]) / "onnx"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "p2ptools" / "onnx"


def _put(h: hashlib._Hash, data: bytes | memoryview) -> None:
    h.update(memoryview(data).nbytes.to_bytes(8, "little"))  # length-prefixed: no two inputs give one stream
    h.update(data)


def _source_files(G: nn.Module) -> list[str]:
    """The files of p2ptools' network classes in ``G`` and of the exporter."""
    names = {type(m).__module__ for m in G.modules() if type(m).__module__.split(".")[0] == "p2ptools"}
    files = {getattr(sys.modules.get(n), "__file__", None) for n in names | {"p2ptools.model.export"}}
    return sorted(f for f in files if f)


def generator_key(G: nn.Module, in_channels: int, size: int, exporter: str) -> str:
    """SHA-256 (hex) of what exporting ``G`` depends on: ``exporter`` (its versions), ``in_channels`` and
    ``size``, the modules (``repr``: their classes and settings, folded BatchNorm as ``Identity``), the
    source of p2ptools' network classes and of the exporter, and every tensor of the state dict, sorted by
    name: name, shape, dtype and bytes."""
    h = hashlib.sha256()
    _put(h, f"{exporter}|{in_channels}|{size}".encode())
    _put(h, repr(G).encode())  # the exporter traces in eval mode: train/eval flags do not change the graph
    for f in _source_files(G):
        try:
            _put(h, Path(f).read_bytes())
        except OSError:
            _put(h, f.encode())
    for name, t in sorted(G.state_dict().items()):
        t = t.detach().cpu().contiguous()
        _put(h, json.dumps([name, list(t.shape), str(t.dtype)]).encode())
        _put(h, memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def _say_once(msg: str, *args: object) -> None:
    text = msg % args
    if text not in _said:
        _said.add(text)
        log.warning("%s", text)


def _open_trusted(folder: Path) -> int:
    """A file descriptor of ``folder`` (created 0700 when missing), once it is the user's own.

    Raises:
        _Untrusted: a symbolic link, a folder of another user or writable by group or others.
        OSError: it cannot be made or opened (a file in the way, a read-only parent).
    """
    if not hasattr(os, "geteuid") or os.open not in os.supports_dir_fd:
        raise _Untrusted("cannot be checked on this system (who owns it)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    if os.path.islink(folder):
        raise _Untrusted("is a symbolic link")
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    why = ("is not a folder" if not stat.S_ISDIR(st.st_mode) else
           f"belongs to user id {st.st_uid}, not to you" if st.st_uid != os.geteuid() else
           f"is writable by others (mode {stat.S_IMODE(st.st_mode):o}; chmod go-w it)" if st.st_mode & 0o022 else "")
    if why:
        os.close(fd)
        raise _Untrusted(why)
    return fd


def _read_at(fd: int, name: str) -> bytes:
    """The bytes of the regular file ``name`` in folder ``fd`` (a symbolic link is not followed)."""
    f = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    with os.fdopen(f, "rb") as fh:
        if not stat.S_ISREG(os.fstat(f).st_mode):
            raise OSError(f"{name} is not a file")
        return fh.read()


def _write_at(fd: int, name: str, data: bytes) -> None:
    """Write ``name`` in folder ``fd`` atomically: a new temporary file beside it, then a rename."""
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    f = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
    try:
        with os.fdopen(f, "wb") as fh:
            fh.write(data)
        os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
    except BaseException:
        _unlink(fd, tmp)
        raise


def _unlink(fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=fd)
    except OSError:
        pass


def _read_entry(fd: int, key: str, folder: Path) -> bytes | None:
    """The verified graph of ``key``, else None (missing, incomplete, or not matching its digest: removed)."""
    try:
        digest = _read_at(fd, f"{key}.sha256")  # none yet: a miss (or a graph still being written)
        graph = _read_at(fd, f"{key}.onnx")
    except OSError:
        return None
    if digest.split(b" ", 1)[0].strip().decode("ascii", "replace") != hashlib.sha256(graph).hexdigest():
        log.warning("ONNX Runtime cache: %s does not match its SHA-256 digest: ignored, removed and exported again",
                    folder / f"{key}.onnx")
        for name in (f"{key}.sha256", f"{key}.onnx"):
            _unlink(fd, name)
        return None
    try:
        os.utime(f"{key}.sha256", dir_fd=fd, follow_symlinks=False)  # the use p2ptools records for pruning
    except OSError:
        pass
    return graph


def _store(fd: int, key: str, graph: bytes) -> None:
    _write_at(fd, f"{key}.onnx", graph)
    _write_at(fd, f"{key}.sha256", f"{hashlib.sha256(graph).hexdigest()}  {key}.onnx\n".encode())


def prune(fd: int, keep: str, max_entries: int | None = None, max_bytes: int | None = None) -> list[str]:
    """Remove the least recently used entries of the cache folder ``fd`` beyond ``max_entries`` entries or
    ``max_bytes`` bytes in all (default :data:`MAX_ENTRIES`, :data:`MAX_BYTES`); ``keep`` always stays.
    Also removes digests without a graph, temporary files older than :data:`STALE_TEMP_S` and graphs of
    the earlier path-keyed scheme. Returns the keys removed."""
    max_entries = MAX_ENTRIES if max_entries is None else max_entries
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    entries: dict[str, dict[str, os.stat_result]] = {}
    with os.scandir(fd) as it:
        for e in it:
            m = _ENTRY.fullmatch(e.name)
            if m:
                entries.setdefault(m[1], {})[m[2]] = e.stat(follow_symlinks=False)
            elif _LEGACY.fullmatch(e.name) or (_TEMP.fullmatch(e.name) and
                                                time.time() - e.stat(follow_symlinks=False).st_mtime > STALE_TEMP_S):
                _unlink(fd, e.name)
    used = sorted(entries, key=lambda k: (k == keep, (entries[k].get("sha256") or entries[k]["onnx"]).st_mtime_ns),
                  reverse=True)
    removed, count, total = [], 0, 0
    for key in used:
        size = sum(s.st_size for s in entries[key].values())
        if "onnx" in entries[key] and (key == keep or (count < max_entries and total + size <= max_bytes)):
            count, total = count + 1, total + size
            continue
        for ext in entries[key]:
            _unlink(fd, f"{key}.{ext}")
        removed.append(key)
    return removed


def cached_graph(G: nn.Module, in_channels: int, size: int, exporter: str, export: Callable[[], bytes]) -> bytes:
    """The ONNX graph of ``G``: from the cache when a verified entry has its key, else ``export()`` (then
    stored and the cache pruned). Without a usable cache (see the module) one log line, and the graph
    from memory or ``export()``."""
    key = generator_key(G, in_channels, size, exporter)
    if key in _memory:
        return _memory[key]
    folder = cache_dir()
    try:
        fd = _open_trusted(folder)
    except _Untrusted as exc:
        _say_once("ONNX Runtime cache %s %s: not used; the graph is exported into memory", folder, exc)
        return _remember(key, export())
    except OSError as exc:
        _say_once("ONNX Runtime cache %s cannot be used (%s): the graph is exported into memory", folder,
                  exc.strerror or exc)
        return _remember(key, export())
    try:
        graph = _read_entry(fd, key, folder)
        if graph is None:
            graph = export()
            try:
                _store(fd, key, graph)
                prune(fd, key)
            except OSError as exc:
                _say_once("ONNX Runtime cache %s cannot be written (%s): the graph is kept in memory", folder,
                          exc.strerror or exc)
                return _remember(key, graph)
        return graph
    finally:
        os.close(fd)


def _remember(key: str, graph: bytes) -> bytes:
    _memory.clear()  # one graph: the network the process is predicting with
    _memory[key] = graph
    return graph
