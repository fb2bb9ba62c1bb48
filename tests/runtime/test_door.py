"""The one door to the disk: no link p2ptools did not make is followed, ``OUT/.p2ptools`` is a real
folder, and lock set-up failures are one line naming the output folder."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.errors import OutputError
from p2ptools.runtime.output import write_geotiff, write_image

SECRET = b"someone else's file\n"


def _images(folder: Path, n: int = 2, size: int = 8) -> Path:
    for i in range(n):
        write_image(folder / f"{i}.png", np.full((size, size, 3), 40 * i, np.uint8))
    return folder


def _outside(tmp_path: Path) -> Path:
    target = tmp_path / "elsewhere" / "precious.txt"
    target.parent.mkdir()
    target.write_bytes(SECRET)
    return target


def _pair(tmp_path: Path, out: Path):
    a, b = _images(tmp_path / "A"), _images(tmp_path / "B")
    return CliRunner().invoke(cli, ["pair", str(a), str(b), str(out)])


def _one_line_error(res, *words: str) -> str:
    """The command failed with exit 1 and one clean ``Error:`` line (no traceback) holding ``words``."""
    assert res.exit_code == 1 and (res.exception is None or isinstance(res.exception, SystemExit)), res.exception
    lines = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_link_planted_at_the_lock_is_refused_and_its_target_untouched(tmp_path):
    target, out = _outside(tmp_path), tmp_path / "out"
    (out / ".p2ptools").mkdir(parents=True)
    (out / ".p2ptools" / "lock").symlink_to(target)
    _one_line_error(_pair(tmp_path, out), str(out / ".p2ptools" / "lock"), "link")
    assert target.read_bytes() == SECRET
    assert not any(out.glob("*/*.png"))


def test_state_folder_a_link_to_elsewhere_is_refused_and_nothing_written_there(tmp_path):
    elsewhere, out = tmp_path / "elsewhere", tmp_path / "out"
    elsewhere.mkdir()
    out.mkdir()
    (out / ".p2ptools").symlink_to(elsewhere, target_is_directory=True)
    _one_line_error(_pair(tmp_path, out), str(out / ".p2ptools"), "link")
    assert list(elsewhere.iterdir()) == []


def test_state_folder_a_file_is_one_line(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".p2ptools").write_bytes(SECRET)
    _one_line_error(_pair(tmp_path, out), str(out / ".p2ptools"), "a file")
    assert (out / ".p2ptools").read_bytes() == SECRET


def test_a_link_at_a_planned_output_is_foreign_and_never_written_through(tiny_run, tmp_path):
    target = _outside(tmp_path)
    src, out = _images(tmp_path / "in", size=32), tmp_path / "preds"
    out.mkdir()
    (out / "0.png").symlink_to(target)  # the name predict will write for in/0.png
    _one_line_error(CliRunner().invoke(cli, ["predict", str(tiny_run), str(src), str(out)]), "0.png")
    assert target.read_bytes() == SECRET
    assert (out / "0.png").is_symlink() and not (out / "1.png").exists()


def test_training_logs_never_write_through_a_link(tmp_path):
    # train refuses a run folder with a link in it up front (a foreign file); its log writer refuses too
    from p2ptools.training.train import LOSS_COLUMNS, _Logs

    target, run = _outside(tmp_path), tmp_path / "run"
    run.mkdir()
    (run / "losses.csv").symlink_to(target)
    with pytest.raises(OutputError, match="losses.csv: is a link"):
        _Logs(run, None, True)
    (run / "losses.csv").unlink()
    logs = _Logs(run, None, True)
    (run / "losses.csv").unlink()
    (run / "losses.csv").symlink_to(target)
    with pytest.raises(OutputError, match="losses.csv: is a link"):
        logs.add(run / "losses.csv", LOSS_COLUMNS, {"step": 1})
    assert target.read_bytes() == SECRET


def test_a_geotiff_temporary_name_planted_as_a_link_is_never_written_through(tmp_path):
    target, out = _outside(tmp_path), tmp_path / "out" / "x.tif"
    out.parent.mkdir()
    for name in (f".x.tif.{os.getpid()}.tmp.tif", "x.tif"):  # the temporary name 266ad2d used, and the file
        (out.parent / name).symlink_to(target)
    with pytest.raises(OutputError, match="x.tif: is a link"):
        write_geotiff(out, np.zeros((1, 4, 4), np.uint8), {})
    assert target.read_bytes() == SECRET


def test_door_writes_never_through_links_and_removes_links_not_targets(tmp_path):
    from p2ptools.runtime import door

    target, out = _outside(tmp_path), tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    door.add_root(out)
    (out / "linked").symlink_to(target.parent, target_is_directory=True)
    with pytest.raises(OutputError, match="linked: is a link"):
        door.write_bytes(out / "linked" / "new.txt", b"x")  # a link among the folders inside OUT
    (out / "sub" / "f.txt").symlink_to(target)
    with pytest.raises(OutputError, match="f.txt: is a link"):
        door.write_bytes(out / "sub" / "f.txt", b"x")
    with pytest.raises(OutputError, match="f.txt: is a link"):
        door.append_text(out / "sub" / "f.txt", "x")
    assert door.remove(out / "sub" / "f.txt") and not (out / "sub" / "f.txt").is_symlink()
    assert target.read_bytes() == SECRET and sorted(p.name for p in target.parent.iterdir()) == ["precious.txt"]
    door.write_bytes(out / "sub" / "deep" / "ok.txt", b"ok")
    assert (out / "sub" / "deep" / "ok.txt").read_bytes() == b"ok"
    assert [p.name for p in (out / "sub" / "deep").iterdir()] == ["ok.txt"]  # no temporary file left


def _failing(monkeypatch, name: str, code: int, when) -> None:
    """Make ``os.<name>`` fail with ``code`` for the calls ``when(first argument)`` accepts."""
    real = getattr(os, name)

    def fake(first, *args, **kwargs):
        if when(first):
            raise OSError(code, os.strerror(code), str(first) if not isinstance(first, int) else None)
        return real(first, *args, **kwargs)

    monkeypatch.setattr(os, name, fake)


def _is_lock_fd(fd) -> bool:
    try:
        return isinstance(fd, int) and os.readlink(f"/proc/self/fd/{fd}").endswith("/.p2ptools/lock")
    except OSError:
        return False


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_output_folder_is_one_line(tmp_path, monkeypatch, code):
    # tests run as root, where chmod stops no write: the file system's refusal is simulated
    out = tmp_path / "out"
    out.mkdir()
    _failing(monkeypatch, "mkdir", code, lambda p: str(p).endswith(".p2ptools"))
    _one_line_error(_pair(tmp_path, out), str(out), os.strerror(code))


def test_an_immutable_lock_file_is_one_line(tmp_path, monkeypatch):
    out = tmp_path / "out"
    (out / ".p2ptools").mkdir(parents=True)
    (out / ".p2ptools" / "lock").write_text("pid=1\n")
    _failing(monkeypatch, "open", errno.EPERM, lambda p: str(p).endswith("/.p2ptools/lock"))
    _one_line_error(_pair(tmp_path, out), str(out), "lock", os.strerror(errno.EPERM))


def test_a_full_disk_while_taking_the_lock_names_the_output_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    for name in ("write", "pwrite"):  # writing who holds the lock
        _failing(monkeypatch, name, errno.ENOSPC, _is_lock_fd)
    line = _one_line_error(_pair(tmp_path, out), "the disk is full")
    assert line.startswith(f"Error: {out}: "), line


def test_predict_refuses_an_output_folder_holding_its_input(tiny_run, tmp_path):
    src = _images(tmp_path / "outer" / "in", size=32)
    res = CliRunner().invoke(cli, ["predict", str(tiny_run), str(src), str(tmp_path / "outer")])
    _one_line_error(res, str(tmp_path / "outer"), "holds the input", str(src))
    res = CliRunner().invoke(cli, ["predict", str(tiny_run), str(src), str(src / "preds")])
    _one_line_error(res, "inside the input")
    assert sorted(p.name for p in (tmp_path / "outer").rglob("*")) == ["0.png", "1.png", "in"]
