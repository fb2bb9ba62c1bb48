"""One writer per output folder: a second command is refused naming the first; a killed one leaves no lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.runtime.output import write_image

HOLDER = """
import sys, time
from pathlib import Path
sys.argv = ["p2ptools", "pair", "a", "b", sys.argv[1]]
from p2ptools.runtime.lock import hold
hold(Path(sys.argv[4]))
print("held", flush=True)
time.sleep(60)
"""


def _images(folder, n=2):
    for i in range(n):
        write_image(folder / f"{i}.png", np.full((8, 8, 3), 40 * i, np.uint8))
    return folder


def test_second_writer_is_refused_naming_the_first_and_sigkill_leaves_no_stale_lock(tmp_path):
    a, b, out = _images(tmp_path / "A"), _images(tmp_path / "B"), tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        res = CliRunner().invoke(cli, ["pair", str(a), str(b), str(out)])
        assert res.exit_code == 1
        assert f"in use by another p2ptools command (pid {holder.pid}: p2ptools pair a b {out}" in res.output
        assert not any(out.glob("*/*.png"))
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    res = CliRunner().invoke(cli, ["pair", str(a), str(b), str(out)])
    assert res.exit_code == 0, res.output  # the OS released the killed process's lock


def test_two_trainings_into_one_run_folder(tmp_path):
    from tests.conftest import SMALL_TRAIN, small_pairs

    data = small_pairs(tmp_path / "ds", n_train=40)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "p2ptools", "train", str(data), "--out", str(run), "--epochs", "5000", *SMALL_TRAIN]
    first = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (run / ".p2ptools" / "lock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert f"in use by another p2ptools command (pid {first.pid}" in second.stderr, second.stderr
        resumed = subprocess.run([sys.executable, "-m", "p2ptools", "train", "--resume", str(run)],
                                 capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 1 and "in use by another p2ptools command" in resumed.stderr
    finally:
        first.kill()
        first.wait()
