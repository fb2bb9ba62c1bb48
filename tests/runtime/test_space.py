"""A full disk: one line naming the output, never a traceback or an input blamed; finished work stays
and the rerun resumes. On a real small file system (a tmpfs; skipped where one cannot be mounted)."""

from __future__ import annotations

import errno
import os
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.errors import DiskFullError
from p2ptools.runtime.output import atomic_write_bytes
from tests.conftest import SMALL_TRAIN, blocks_mask, small_pairs, write_tif


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MB tmpfs at tmp_path/small; yields (path, resize(megabytes))."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")

    def resize(mb: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={mb}m", str(mnt)], check=True)

    yield mnt, resize
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder, leave_bytes):
    """Fill the file system of ``folder`` until about ``leave_bytes`` are free."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    (folder / "filler.bin").write_bytes(b"\0" * max(0, free - leave_bytes))


def test_atomic_write_turns_enospc_into_one_line_and_leaves_no_temp(tmp_path, monkeypatch):
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(DiskFullError, match=r"out: the disk is full .* while writing a.png; what was finished is kept"):
        atomic_write_bytes(tmp_path / "out" / "a.png", b"x" * 10)
    assert list((tmp_path / "out").iterdir()) == []


def test_tile_on_a_full_disk_names_the_output_keeps_tiles_and_resumes(small_fs, tmp_path):
    mnt, resize = small_fs
    src = tmp_path / "scenes"
    noise = np.random.default_rng(1).integers(0, 255, (3, 1024, 1024), dtype=np.uint8)  # ~200 KB a tile
    write_tif(src / "images" / "s.tif", noise)
    write_tif(src / "gt" / "s.tif", blocks_mask(1024, 1024, [255], block=64))
    out = mnt / "tiles"
    res = CliRunner().invoke(cli, ["tile", str(src), str(out), "--size", "256", "--split", "1,0,0"])
    assert res.exit_code == 1, res.output
    assert "the disk is full" in res.output and "cannot read" not in res.output and "Traceback" not in res.output
    assert "s.tif" not in res.output.split("the disk is full")[0].split("\n")[-1]  # not blamed on the scene
    kept = sorted(p.name for p in out.rglob("*.png"))
    assert kept, "finished tiles stay"
    resize(40)
    res = CliRunner().invoke(cli, ["tile", str(src), str(out), "--size", "256", "--split", "1,0,0"])
    assert res.exit_code == 0, res.output
    assert len(list(out.rglob("*.png"))) == 16 and "already there" in res.output


def test_train_on_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(small_fs, tmp_path):
    mnt, resize = small_fs
    data = small_pairs(tmp_path / "ds")
    run = mnt / "run"
    resize(20)
    res = CliRunner().invoke(cli, ["train", str(data), "--out", str(run), "--epochs", "1", *SMALL_TRAIN])
    assert res.exit_code == 0, res.output
    before = (run / "latest.pt").read_bytes()
    _fill(mnt, 20_000)
    res = CliRunner().invoke(cli, ["train", "--resume", str(run), "--epochs", "3"])
    assert res.exit_code == 1 and "the disk is full" in res.output and "Traceback" not in res.output, res.output
    assert (run / "latest.pt").read_bytes() == before  # the previous checkpoint is intact
    assert not [p for p in run.rglob("*.tmp")]


def test_predict_on_a_full_disk_keeps_what_it_wrote(small_fs, tiny_run, tmp_path):
    mnt, _ = small_fs
    src = tmp_path / "in"
    src.mkdir()
    import cv2

    for i in range(40):
        cv2.imwrite(str(src / f"{i:02d}.png"), np.random.default_rng(i).integers(0, 255, (32, 32, 3), np.uint8))
    _fill(mnt, 30_000)
    res = CliRunner().invoke(cli, ["predict", str(tiny_run), str(src), str(mnt / "preds")])
    assert res.exit_code == 1 and "the disk is full" in res.output and "Traceback" not in res.output, res.output
    assert any((mnt / "preds").glob("*.png"))
