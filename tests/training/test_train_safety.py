"""Training runs that survive the world: SIGKILL loses at most an epoch, resumes cannot change the
network, damaged images are left out before the first step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.model.checkpoints import load_checkpoint
from tests.conftest import SMALL_TRAIN, small_pairs


def test_sigkill_after_the_first_epoch_leaves_a_checkpoint_to_resume(tmp_path):
    data = small_pairs(tmp_path / "ds", n_train=8)
    run, log = tmp_path / "run", tmp_path / "train.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "p2ptools", "train", str(data), "--out", str(run),
                                 "--epochs", "500", *SMALL_TRAIN], stderr=err, stdout=err)
        try:
            deadline = time.monotonic() + 120
            while "epoch 2/500" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
            assert "epoch 2/500" in log.read_text(), log.read_text()
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # no handler runs: what is on disk is all there is
            proc.wait()
    state = load_checkpoint(run / "latest.pt")["state"]
    assert state["epoch"] >= 1  # written at the end of the first epoch (--save-every 500 steps is far away)
    res = CliRunner().invoke(cli, ["train", "--resume", str(run), "--epochs", str(state["epoch"] + 1)])
    assert res.exit_code == 0, res.output
    assert f"after epoch {state['epoch']}" in res.output and f"at step {state['global_step']}" in res.output


def test_a_write_cut_short_is_removed_on_resume_and_a_lookalike_user_file_is_not(tiny_run, tmp_path):
    """SIGKILL during a (background) checkpoint write leaves the door's ``.best.pt.<8 hex>.tmp``: the next
    start removes it instead of refusing the run folder; a user's file of another name is still refused."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / ".best.pt.0a1b2c3d.tmp").write_bytes(b"half a checkpoint")
    (run / "samples" / ".epoch_001.jpg.00ff00ff.tmp").write_bytes(b"half a jpeg")
    res = CliRunner().invoke(cli, ["train", "--resume", str(run), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert not (run / ".best.pt.0a1b2c3d.tmp").exists()
    assert not (run / "samples" / ".epoch_001.jpg.00ff00ff.tmp").exists()
    (run / ".best.pt.tmp").write_bytes(b"mine")  # not the door's name: the user's
    res = CliRunner().invoke(cli, ["train", "--resume", str(run), "--epochs", "3"])
    assert res.exit_code == 1 and ".best.pt.tmp" in res.output and (run / ".best.pt.tmp").read_bytes() == b"mine"


def test_resume_refuses_another_model_naming_what_the_run_has(tiny_run, tmp_path):
    res = CliRunner().invoke(cli, ["train", "--resume", str(tiny_run), "--model", "pix2pix"])
    assert res.exit_code == 1
    assert "is a run of model tiny" in res.output and "--model pix2pix would change its networks" in res.output
    assert "ngf: 8 → 64" in res.output
    res = CliRunner().invoke(cli, ["train", "--resume", str(tiny_run), "--set", "model.ngf=16"])
    assert res.exit_code == 1 and "ngf: 8 → 16" in res.output


def test_a_truncated_training_image_is_left_out_before_the_first_step(tmp_path):
    data = small_pairs(tmp_path / "ds", n_train=6)
    bad = data / "train" / "3.png"
    bad.write_bytes(bad.read_bytes()[:200])
    res = CliRunner().invoke(cli, ["train", str(data), "--out", str(tmp_path / "run"), "--epochs", "2", *SMALL_TRAIN])
    assert res.exit_code == 0, res.output
    assert "1 of 6 train image(s) cannot be read and are left out" in res.output and "3.png" in res.output
    for name in ("0.png", "1.png"):
        (data / "train" / name).write_bytes(b"")
    (data / "train" / "2.png").write_bytes(b"x")
    for name in ("4.png", "5.png"):
        (data / "train" / name).write_bytes(b"")
    res = CliRunner().invoke(cli, ["train", str(data), "--out", str(tmp_path / "run2"), "--epochs", "1", *SMALL_TRAIN])
    assert res.exit_code == 1 and "none of its 6 image(s) can be read" in res.output


def test_free_space_is_checked_before_the_first_full_checkpoint(tmp_path, monkeypatch, caplog):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 1000))
    data = small_pairs(tmp_path / "ds")
    res = CliRunner().invoke(cli, ["train", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", *SMALL_TRAIN])
    assert "a full checkpoint (latest.pt, best.pt) takes" in res.output and "1.0 KB free" in res.output
