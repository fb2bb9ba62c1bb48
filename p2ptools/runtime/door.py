"""The one door to the disk: every file p2ptools creates, replaces or removes goes through here.

The rules, kept in this module alone:

- **No link is followed that p2ptools did not make** (and it makes none). A link where a file would
  be written, or among the folders between an output folder and that file, is refused in one line
  naming it (:class:`~p2ptools.errors.OutputError`); what it points to is never opened, truncated
  or replaced. A removal removes a link itself, never its target.
- **Writes are atomic**: a new file is created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``) under
  a temporary name in the target's folder and renamed into place, so an interrupted write leaves no
  half-written file and a name planted in advance is never written through. New files get the
  permissions the umask gives (0644 under 022).
- **``OUT/.p2ptools`` is a real folder** (:func:`state_folder`): a link or a file there is named and
  refused.
- A full disk is :class:`~p2ptools.errors.DiskFullError` naming the file (:mod:`p2ptools.runtime.space`).

The output folders are the folders whose lock this process holds (:mod:`p2ptools.runtime.lock`
calls :func:`add_root`): the folders between one of them and a file written inside it are checked
part by part (the output folder itself may be a link the user made). Elsewhere (a single output
file, a cache) the file's own name is checked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from p2ptools.errors import DiskFullError, OutputError
from p2ptools.runtime.space import disk_full, free_bytes, human_bytes, is_disk_full

STATE_DIR = ".p2ptools"

#: absolute output folders of this process (their locks are held): writes inside them check every folder
_ROOTS: set[Path] = set()

#: open() flags of a file this module creates: never through a link, never an existing file
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def add_root(out: Path) -> None:
    """Register ``out`` as an output folder of this process (called when its lock is taken)."""
    _ROOTS.add(Path(os.path.abspath(out)))


def _root_of(path: Path) -> Path | None:
    """The outermost registered output folder that ``path`` lies in (by spelling), or None (an output
    folder inside another one, as ``run``'s stages in its work folder, is checked from the outer one)."""
    parents = set(path.parents)
    inside = [r for r in _ROOTS if r in parents]
    return min(inside, key=lambda r: len(r.parts)) if inside else None


def _kind(path: Path, st: os.stat_result) -> str:
    """``a link (to /x)``, ``a folder`` or ``a file``: what sits at ``path``, for a message."""
    if stat.S_ISLNK(st.st_mode):
        try:
            return f"a link (to {os.readlink(path)})"
        except OSError:  # pragma: no cover - removed meanwhile
            return "a link"
    return "a folder" if stat.S_ISDIR(st.st_mode) else "a file"


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def refuse_link(path: Path) -> None:
    """Refuse a link at ``path``: p2ptools never writes through, nor replaces, a link it did not make.

    Raises:
        OutputError: naming the link and where it points.
    """
    st = _lstat(Path(path))
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise OutputError(f"{path}: is {_kind(Path(path), st)} where p2ptools writes a file; p2ptools never writes "
                          "through or replaces a link it did not make: remove the link, or write elsewhere")


def refuse_shared(path: Path, fd: int) -> None:
    """Refuse a file opened in place (a lock, an appended log) that is not a plain file of its own: a hard
    link shares its contents with another name, maybe outside the output folder (closes ``fd`` first).

    Raises:
        OutputError: naming the file and what it is.
    """
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
        return
    os.close(fd)
    what = (f"a hard link ({st.st_nlink} names share its contents)" if stat.S_ISREG(st.st_mode)
            else "not a plain file")
    raise OutputError(f"{path}: is {what} where p2ptools writes into a file of its own; p2ptools never writes "
                      "into a file that has other names: remove it, or write elsewhere")


def ensure_folder(folder: Path) -> Path:
    """Create ``folder`` (and its parents) as real folders; returns it.

    Inside an output folder, every existing part below the output folder must be a real folder.

    Raises:
        OutputError: naming a link or a file where a folder should be.
        DiskFullError: when the disk is full.
    """
    folder = Path(folder)
    root = _root_of(Path(os.path.abspath(folder)))
    try:
        if root is None:
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        root.mkdir(parents=True, exist_ok=True)
        current = root
        for part in Path(os.path.abspath(folder)).relative_to(root).parts:
            current = current / part
            st = _lstat(current)
            if st is None:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(current)
                st = os.lstat(current)
            if not stat.S_ISDIR(st.st_mode):
                what = "p2ptools' state folder" if part == STATE_DIR else "a folder"
                raise OutputError(f"{current}: is {_kind(current, st)} where p2ptools keeps {what}; p2ptools never "
                                  "writes through a link or over a file it did not make: move it away, or use "
                                  "another output folder")
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{folder}: a file stands where p2ptools writes a folder (or one of its parents); move "
                          "it away, or write elsewhere") from None
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(folder, None) from None
        raise
    return folder


def state_folder(out: Path) -> Path:
    """``OUT/.p2ptools``, created if missing; a real folder (a link or a file there is refused).

    Raises:
        OutputError: for a link, a file or anything else at ``OUT/.p2ptools`` (named).
    """
    check_state_folder(out)
    return ensure_folder(Path(out) / STATE_DIR)


def check_state_folder(out: Path) -> None:
    """Refuse anything but a real folder (or nothing) at ``OUT/.p2ptools``; creates nothing.

    Raises:
        OutputError: for a link, a file or anything else there (named).
    """
    path = Path(out) / STATE_DIR
    st = _lstat(path)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        link = "; p2ptools never writes through a link it did not make" if stat.S_ISLNK(st.st_mode) else ""
        raise OutputError(f"{path}: is {_kind(path, st)}, not p2ptools' state folder (its records and lock are kept "
                          f"in a real folder there){link}: move it away, or use another output folder")


def _check_target(path: Path) -> None:
    """``path`` may be written: not a link or a folder, and its folders exist as real folders."""
    ensure_folder(path.parent)
    _check_name(path)


def _check_name(path: Path) -> None:
    """Nothing but a file (or nothing) at ``path``: a link or a folder there is refused."""
    st = _lstat(path)
    if st is None:
        return
    if stat.S_ISLNK(st.st_mode):
        refuse_link(path)
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path}: is a folder where p2ptools writes a file; move it away, or write elsewhere")


def new_temp(path: Path, suffix: str = ".tmp") -> tuple[int, Path]:
    """Create, exclusively, an empty temporary file beside ``path`` (``.NAME.<random><suffix>``).

    Returns:
        The open (write-only) descriptor and the file's path.

    Raises:
        OutputError: for a link or a folder at ``path`` or among its folders.
        DiskFullError: when the disk is full.
    """
    path = Path(path)
    _check_target(path)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(tmp, _CREATE, 0o666), tmp  # 0o666 less the umask, as open() would create it
        except FileExistsError:  # pragma: no cover - 2**32 names
            continue
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(path, None) from None
            raise


def temp_path(path: Path, suffix: str = ".tmp") -> Path:
    """An empty temporary file beside ``path``, created exclusively (:func:`new_temp`), for a writer that
    needs a name (GDAL); rename it into place with :func:`replace`, remove it with :func:`remove`."""
    fd, tmp = new_temp(path, suffix)
    os.close(fd)
    return tmp


def replace(tmp: Path, path: Path) -> None:
    """Rename the temporary file ``tmp`` (made by :func:`new_temp` beside ``path``, whose folders it
    checked) to ``path`` (atomic), which must not be a link or a folder.

    Raises:
        OutputError: for a link or a folder at ``path``.
    """
    _check_name(Path(path))
    os.replace(tmp, path)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through an exclusive temporary file in the same folder and a rename.

    Raises:
        OutputError: for a link or a folder at ``path`` or among its folders inside the output folder.
        DiskFullError: when the disk is full (naming the file and its size).
    """
    path = Path(path)
    fd, tmp = new_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        replace(tmp, path)
    except BaseException as exc:
        remove(tmp)
        if is_disk_full(exc):
            raise disk_full(path, len(data)) from None
        raise


def write_stream(path: Path, write: Callable[[BinaryIO], None]) -> int:
    """Write ``path`` by handing ``write`` the open temporary file (exclusive, in the same folder),
    then renaming it into place: :func:`write_bytes` for a writer that streams (``torch.save``),
    without the whole file in memory first.

    Returns:
        The size of the file written, in bytes.

    Raises:
        OutputError: for a link or a folder at ``path`` or among its folders inside the output folder.
        DiskFullError: when the disk is full (naming the file).
    """
    path = Path(path)
    fd, tmp = new_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            size = fh.tell()
        replace(tmp, path)
    except BaseException as exc:
        remove(tmp)
        if is_disk_full(exc):
            raise disk_full(path, None) from None
        raise
    return size


def write_text(path: Path, text: str) -> None:
    """:func:`write_bytes` of UTF-8 text."""
    write_bytes(path, text.encode("utf-8"))


def append_text(path: Path, text: str) -> None:
    """Append ``text`` (UTF-8) to ``path``, created if missing; never through a link.

    Raises:
        OutputError: for a link or a folder at ``path``.
        DiskFullError: when the disk is full.
    """
    path = Path(path)
    _check_target(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        refuse_shared(path, fd)
        with os.fdopen(fd, "a", encoding="utf-8", newline="") as fh:
            fh.write(text)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link planted since the check
            refuse_link(path)
        if is_disk_full(exc):
            raise disk_full(path, len(text)) from None
        raise


def remove(path: Path) -> bool:
    """Remove the file or link ``path`` (a link itself, never its target); a folder is left alone.

    Returns:
        Whether something was removed.
    """
    path = Path(path)
    st = _lstat(path)
    if st is None or stat.S_ISDIR(st.st_mode):
        return False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
        return True
    return False  # pragma: no cover - removed meanwhile


def remove_tree(path: Path) -> None:
    """Remove the folder ``path`` and everything in it (links inside are removed, never followed);
    a link or a file at ``path`` is removed itself."""
    path = Path(path)
    st = _lstat(path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)  # fd-based on Linux: never follows a link inside
    else:
        remove(path)


def remove_empty_folder(path: Path) -> bool:
    """Remove the folder ``path`` when it is empty (and a real folder); returns whether it was removed."""
    st = _lstat(Path(path))
    if st is None or not stat.S_ISDIR(st.st_mode):
        return False
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


def _lock_error(folder: Path, path: Path, exc: OSError) -> OutputError:
    """The one line for a lock that cannot be made or opened, naming the output folder."""
    if is_disk_full(exc):
        free = free_bytes(folder)
        have = f"{human_bytes(free)} free" if free is not None else "no free space"
        return DiskFullError(f"{folder}: the disk is full ({have}) while taking the output folder's lock {path}; "
                             "free some space (or write elsewhere) and run the same command again")
    reason = exc.strerror or str(exc)
    return OutputError(f"{folder}: cannot take the output folder's lock {path} ({reason}); p2ptools writes its lock "
                       "and records there: give a folder you can write to (its permissions, a read-only disk, "
                       "an immutable file)")


def open_lock(folder: Path, path: Path) -> int:
    """Open (creating it if missing) the lock file ``path`` of the output ``folder``, never through a link.

    Returns:
        A read-write descriptor.

    Raises:
        OutputError: for a link or a file where ``OUT/.p2ptools`` should be, a link at ``path``, or a
            lock that cannot be created or opened (read-only folder or disk, permissions, an immutable
            file), naming the folder.
        DiskFullError: when the disk is full, naming the folder.
    """
    folder, path = Path(folder), Path(path)
    try:
        if path.parent == folder / STATE_DIR:
            ensure_folder(folder)
            state_folder(folder)
        else:
            ensure_folder(path.parent)
        refuse_link(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
        refuse_shared(path, fd)  # a hard link to a file elsewhere would be truncated and rewritten
        return fd
    except OutputError as exc:
        if is_disk_full(exc):
            raise _lock_error(folder, path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from None
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_link(path)
        raise _lock_error(folder, path, exc) from None


def write_lock(folder: Path, path: Path, fd: int, text: str) -> None:
    """Replace the contents of the open lock file ``fd`` with ``text`` (who holds it).

    Raises:
        OutputError: when it cannot be written (a full disk: :class:`DiskFullError`), naming the folder.
    """
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, os.fsencode(text), 0)  # a name's bytes kept as they are
    except OSError as exc:
        raise _lock_error(folder, path, exc) from None
