"""One writer per output folder: an advisory lock held for a command's life.

Every command that writes an output folder (``tile``, ``make-inpaint``, ``pair``, ``unpair``,
``train``, ``train-fcn``, ``predict``, ``evaluate``, ``run``) holds ``OUT/.p2ptools/lock`` with
``flock`` while it works. The operating system releases the lock when the process ends, however it
ends (a SIGKILL, an out-of-memory kill, a preempted job), so a lock never goes stale; the file
itself stays and says who held it last. A second command on the same folder is refused at once,
in one line naming the other's process id and command line.

A command that writes a single file (``predict RUN scene.tif OUT.tif``) locks ``.OUT.tif.lock``
beside it instead, and removes it when done.

Locks are re-entrant within a process (``run`` holds its work folder while its stages take theirs).
Commands take them through :func:`hold`, which keeps the lock until the process exits, right after
the checks that need no writing (an output inside an input, a file where the folder should be).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from p2ptools.errors import OutputError
from p2ptools.runtime import door

#: p2ptools' state folder inside an output folder, and the lock file in it
STATE_DIR = door.STATE_DIR
LOCK_FILE = "lock"

#: resolved lock path → (file descriptor, depth) of the locks this process holds
_HELD: dict[str, tuple[int, int]] = {}


def command_line() -> str:
    """This process's command line as a user typed it (``p2ptools tile a b``)."""
    argv = list(sys.argv) or ["python"]
    argv[0] = "p2ptools" if Path(argv[0]).name in ("p2ptools", "__main__.py") else Path(argv[0]).name
    return shlex.join(argv)


def _holder(path: Path) -> str:
    """What the lock file says of the process holding it (``pid 123: p2ptools tile a b, since 10:02``)."""
    try:
        fields = dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line)
    except (OSError, UnicodeDecodeError, ValueError):
        return "another process"
    since = fields.get("started", "")
    return f"pid {fields.get('pid', '?')}: {fields.get('command', '?')}" + (f", since {since}" if since else "")


def _acquire(path: Path, folder: Path) -> int:
    """Open and lock ``path`` without waiting; returns the descriptor.

    Raises:
        OutputError: when another process holds it (naming that process).
    """
    for _ in range(5):
        fd = door.open_lock(folder, path)  # never through a link; OUT/.p2ptools a real folder
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"{folder}: in use by another p2ptools command ({_holder(path)}); wait for it to "
                              "finish, or write to another folder") from None
        except OSError as exc:  # a file system without flock (some network mounts): no lock, say so once
            os.close(fd)
            raise OutputError(f"{folder}: cannot lock {path} ({exc.strerror}); p2ptools needs a file system "
                              "with advisory locks to keep two commands from writing one folder") from None
        try:
            same = os.fstat(fd).st_ino == os.lstat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file that was removed between our open and our lock
            return fd
        os.close(fd)
    raise OutputError(f"{folder}: could not lock {path} (it keeps being replaced)")  # pragma: no cover


@contextlib.contextmanager
def folder_lock(folder: Path, lock_path: Path | None = None) -> Iterator[Path]:
    """Hold the lock of an output folder (``folder/.p2ptools/lock``) for the ``with`` block.

    Args:
        folder: the output folder (created if missing).
        lock_path: another lock file (for single-file outputs); removed when released.

    Yields:
        The lock file's path.

    Raises:
        OutputError: when another command holds the folder, naming its pid and command line; when the
            lock cannot be made (a read-only folder, ``OUT/.p2ptools`` a link or a file, a link at the
            lock), naming the folder; :class:`~p2ptools.errors.DiskFullError` for a full disk.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder")
    if lock_path is None:
        door.check_state_folder(folder)  # before its path is resolved: a link there is never followed
    path = lock_path if lock_path is not None else folder / STATE_DIR / LOCK_FILE
    key = str(path.parent.resolve() / path.name) if path.parent.exists() else str(path.absolute())
    if key in _HELD:
        fd, depth = _HELD[key]
        _HELD[key] = (fd, depth + 1)
        try:
            yield path
        finally:
            fd, depth = _HELD[key]
            _HELD[key] = (fd, depth - 1)
        return
    fd = _acquire(path, folder)
    key = str(path.parent.resolve() / path.name)
    try:
        door.write_lock(folder, path, fd, f"pid={os.getpid()}\ncommand={command_line()}\n"
                                          f"started={time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    except BaseException:
        os.close(fd)
        raise
    if lock_path is None:
        door.add_root(folder)  # the files written inside it go through checked folders (runtime.door)
    _HELD[key] = (fd, 1)
    try:
        yield path
    finally:
        del _HELD[key]
        if lock_path is not None:
            with contextlib.suppress(OSError):
                door.remove(path)
        os.close(fd)  # releases the lock


def file_lock(out_file: Path) -> contextlib.AbstractContextManager[Path]:
    """The lock of a single output file: ``.NAME.lock`` beside it, removed when released."""
    out_file = Path(out_file)
    return folder_lock(out_file.parent, out_file.parent / f".{out_file.name}.lock")


_PROCESS_LOCKS = contextlib.ExitStack()
atexit.register(_PROCESS_LOCKS.close)


def hold(folder: Path) -> Path:
    """Take the lock of ``folder`` for the rest of this process's life (no-op when already held).

    Returns:
        The lock file's path.

    Raises:
        OutputError: when another command holds the folder, naming its pid and command line.
    """
    return _PROCESS_LOCKS.enter_context(folder_lock(folder))

