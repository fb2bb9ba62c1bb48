"""Two torchrun processes on the CPU (gloo) decide together: a NaN on one stops both at once, in one
line naming it; validation and early stopping are rank 0's, sent to the other."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from p2ptools.model.checkpoints import load_checkpoint

TINY = ["--model", "tiny", "--set", "model.image_size=32", "--set", "model.load_size=36",
        "--set", "model.num_downs=5", "--batch-size", "2", "--workers", "0", "--device", "cpu", "--amp", "none"]

#: the CLI, with ``PATCH`` run first in each process (what the test changes on one rank)
LAUNCHER = textwrap.dedent("""
    import os, sys
    from p2ptools.training import step as step_mod
    from p2ptools.training import train as train_mod
    RANK = int(os.environ["RANK"])
    {patch}
    from p2ptools.cli.main import cli
    cli(sys.argv[1:], prog_name="p2ptools")
""")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(tmp_path, patch: str, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER.format(patch=textwrap.dedent(patch)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(script), "-q", "train", *args, *TINY]
    # a hang (one process raising alone, the other waiting in an all-reduce) ends the test at the timeout
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env={**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()})


def test_a_nan_on_one_process_stops_both_in_one_line(pairs, tmp_path):
    patch = """
        real, calls = train_mod.gan_loss, [0]
        def gan_loss(pred, is_real, mode):
            calls[0] += 1
            value = real(pred, is_real, mode)
            return value * float("nan") if RANK == 1 and calls[0] > 3 * 2 else value  # rank 1's third step
        step_mod.gan_loss = gan_loss
    """
    run = tmp_path / "run"
    res = _torchrun(tmp_path, patch, str(pairs), "--out", str(run), "--epochs", "3",
                    "--set", "train.log_every=1")
    assert res.returncode != 0, res.stderr[-3000:]
    lines = [ln for ln in res.stderr.splitlines() if "became nan" in ln]
    assert len(lines) == 2, res.stderr[-3000:]  # one per process, the same line
    assert all("loss_D became nan on process 1 of 2 at epoch 2, step 2; training stopped" in ln for ln in lines), lines
    assert not [ln for ln in res.stderr.splitlines() if "File " in ln and "p2ptools" in ln]  # torchrun's own only
    state = load_checkpoint(run / "latest.pt")["state"]
    assert state["global_step"] == 2 and state["epoch"] == 1  # the first epoch's: the good one


def test_early_stopping_is_rank_0s_decision_on_both_processes(pairs, tmp_path):
    patch = """
        scores = iter([50.0, 40.0, 45.0, 47.0, 30.0] if RANK == 0 else [50.0, 49.0, 48.0, 47.0, 46.0])
        train_mod.validate = lambda *a, **k: {"val_l1_255": next(scores), "val_G_GAN": 0.0, "val_D": 0.0}
    """
    run = tmp_path / "run"
    # latest.pt every 3 steps (2 per epoch) and at epoch ends: every process counts the saves alike
    res = _torchrun(tmp_path, patch, str(pairs), "--out", str(run), "--epochs", "6", "--patience", "2",
                    "--save-every", "3", "--save-minutes", "0")
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = load_checkpoint(run / "latest.pt")
    assert ckpt["state"]["early_stopped"] and ckpt["state"]["epoch"] == 4 and ckpt["state"]["best_epoch"] == 2
