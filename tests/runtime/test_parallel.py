"""Worker processes never outlive the command: SIGKILL of the parent, SIGTERM and Ctrl-C end them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import blocks_mask, photo, write_tif


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        out += [int(c) for c in text.split()]
    return out


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def _start_tiling(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    src = tmp_path / "big"
    for i in range(2):
        write_tif(src / "images" / f"s{i}.tif", photo(2048, 2048, seed=i))
        write_tif(src / "gt" / f"s{i}.tif", blocks_mask(2048, 2048, [255], seed=i))
    cmd = [sys.executable, "-m", "p2ptools", "tile", str(src), str(tmp_path / "out"), "--size", "32", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        kids = _children(proc.pid)
        if len(kids) >= 2:
            return proc, kids
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    pytest.skip("the tiling finished before its workers could be observed")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and PR_SET_PDEATHSIG")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["kill", "term", "int"])
def test_workers_end_with_the_parent(tmp_path, sig):
    proc, kids = _start_tiling(tmp_path)
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the command did not end after {sig!r}: " + proc.stderr.read().decode()[-2000:])
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.05)
    assert not any(_alive(k) for k in kids), "worker processes outlived the parent"
    if sig != signal.SIGKILL:
        err = proc.stderr.read().decode()
        assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
