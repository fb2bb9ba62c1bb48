"""Training runs that can be left alone: epoch counts, the checkpoint set, log lines, resume changes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.config import TrainConfig
from p2ptools.inference.options import PredictOptions
from p2ptools.model.checkpoints import load_checkpoint, load_generator
from p2ptools.runtime import device as device_mod
from p2ptools.runtime.output import write_image

SMALL = ["--model", "tiny", "--set", "model.image_size=32", "--set", "model.load_size=36",
         "--set", "model.num_downs=5", "--set", "model.ngf=8", "--set", "model.ndf=8", "--workers", "0"]


@pytest.fixture
def pairs(tmp_path):
    """A generated aligned dataset: 6 train and 2 val A|B images of 32 px (no real data needed)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    for split, n in (("train", 6), ("val", 2)):
        for i in range(n):
            a = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            write_image(root / split / f"{i}.png", np.concatenate([a, 255 - a], axis=1))
    return root


def _train(*args):
    return CliRunner().invoke(cli, ["train", *map(str, args)], catch_exceptions=False)


def test_epochs_is_the_total_and_the_lr_decays_over_the_preset_share(pairs, tmp_path):
    res = _train(pairs, "--out", tmp_path / "r", "--epochs", 1, *SMALL)
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(tmp_path / "r" / "latest.pt")
    assert ck["state"]["epoch"] == 1 and ck["state"]["global_step"] == 2  # 6 images, batch 4
    assert "(1 epochs, stopped by epochs" in res.output
    res = _train(pairs, "--out", tmp_path / "r4", "--epochs", 4, *SMALL)
    tc = load_checkpoint(tmp_path / "r4" / "latest.pt")["train_config"]
    assert TrainConfig(**tc).n_decay == 2  # tiny's decay_fraction 0.5
    assert "epoch 4/4" in res.stderr and "epoch 5/" not in res.stderr
    assert load_checkpoint(tmp_path / "r4" / "latest.pt")["opt_G"]["param_groups"][0]["lr"] == pytest.approx(0.0)
    res = _train(pairs, "--out", tmp_path / "r5", "--epochs", 2, "--decay-epochs", 3, *SMALL)
    assert res.exit_code == 1 and "decay_epochs must be between 0 and epochs (2)" in res.output


def test_checkpoint_set_and_bytes(pairs, tmp_path):
    run = tmp_path / "run"
    res = _train(pairs, "--out", run, "--epochs", 6, "--save-epoch-freq", 2, "--keep-last", 2, *SMALL)
    assert res.exit_code == 0, res.output
    pts = sorted(p.name for p in run.glob("*.pt"))
    assert pts == ["best.pt", "epoch_4.pt", "epoch_6.pt", "latest.pt"]  # epoch_2 pruned
    full, snap = (run / "latest.pt").stat().st_size, (run / "epoch_6.pt").stat().st_size
    snapshot = load_checkpoint(run / "epoch_6.pt")
    assert not snapshot["full"] and "D" not in snapshot and "opt_G" not in snapshot and "rng" not in snapshot
    g_bytes = sum(v.numel() * v.element_size() for v in snapshot["G"].values())
    assert g_bytes < snap < g_bytes * 1.2  # the generator and little else
    assert snap < full / 2
    G, mcfg, _ = load_generator(run, "epoch_6")  # a snapshot alone rebuilds the generator
    assert mcfg.ngf == 8
    files = [p for p in run.rglob("*") if p.is_file()]
    assert sorted(p.name for p in (run / "samples").iterdir()) == [f"epoch_00{k}.jpg" for k in range(1, 7)]
    assert sum(p.stat().st_size for p in files) < 2 * full + 2 * snap + 200_000


def test_resume_prints_changes_and_refuses_what_cannot_work(pairs, tmp_path):
    run = tmp_path / "run"
    assert _train(pairs, "--out", run, "--epochs", 2, *SMALL).exit_code == 0
    res = _train("--resume", run, "--epochs", 3, "--patience", 5)
    assert res.exit_code == 0, res.output
    assert "epochs: 2 → 3" in res.stderr and "patience: 0 → 5" in res.stderr
    assert load_checkpoint(run / "latest.pt")["state"]["epoch"] == 3
    res = _train("--resume", run, "--batch-size", 2)
    assert res.exit_code == 1 and "cannot resume with batch_size: 4 → 2" in res.output
    res = _train("--resume", run, "--set", "model.ngf=16")
    assert res.exit_code == 1 and "model.ngf: 8 → 16" in res.output
    assert "Traceback" not in res.output


def test_epoch_lines_reach_a_redirected_stderr(pairs, tmp_path):
    log = tmp_path / "train.log"
    cmd = [sys.executable, "-m", "p2ptools", "train", str(pairs), "--out", str(tmp_path / "run"),
           "--epochs", "2", *SMALL]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as fh:
        subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True, env=env,
                       timeout=300)
    text = log.read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("epoch ")]
    assert [ln.split(" · ")[0] for ln in lines] == ["epoch 1/2", "epoch 2/2"]
    for part in ("steps", "G_GAN", "D ", "G_L1", "val L1", "best", "lr "):
        assert part in lines[0]
    assert "ETA" in lines[0] and lines[1].endswith("done")
    assert "\r" not in text and "it/s" not in text  # no progress bar off a terminal


def test_tile_size_mismatch_is_a_warning_naming_both(pairs, tmp_path):
    res = _train(pairs, "--out", tmp_path / "r", "--epochs", 1, *SMALL[:-2], "--set", "model.image_size=64",
                 "--set", "model.load_size=72", "--set", "model.num_downs=5", "--workers", 0)
    assert res.exit_code == 0, res.output
    assert "trains on 64-px crops" in res.stderr and "are 32 px: they are upsampled" in res.stderr


def test_amp_auto_takes_bf16_only_where_native(monkeypatch, caplog):
    cpu = torch.device("cpu")
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    assert device_mod.resolve_amp("auto", cpu) == "none"
    with caplog.at_level("WARNING"):
        assert device_mod.resolve_amp("bf16", cpu) == "bf16"
    assert "no bf16 units" in caplog.text and "AVX2" not in "" and device_mod.cpu_capability() in caplog.text
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    assert device_mod.resolve_amp("auto", cpu) == "bf16"
    assert device_mod.resolve_amp("fp16", cpu) == "none"  # fp16 autocast is CUDA-only here


def test_help_shows_every_default():
    res = CliRunner().invoke(cli, ["train", "--help"])
    for option in ("--epochs", "--decay-epochs", "--batch-size", "--lr", "--save-epoch-freq", "--keep-last",
                   "--amp", "--patience", "--workers"):
        block = res.output.split("Options:", 1)[1].split(f"\n  {option} ", 1)[1].split("\n  --", 1)[0]
        assert "default:" in block, option


def test_interrupted_run_is_resumed_by_rerunning_the_recipe(tmp_path, monkeypatch):
    from p2ptools.training import train as train_mod

    calls = {"n": 0}
    real = train_mod.step_losses

    def interrupt_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "step_losses", interrupt_on_third)
    tiny = "train.set={model: {image_size: 32, load_size: 36, num_downs: 5, ngf: 8, ndf: 8}}"
    args = ["run", "sample", "--workdir", str(tmp_path / "wd"), "--set", "train.epochs=2", "--set", tiny,
            "--until", "train"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and "interrupted in the train stage" in res.output
    assert "rerun `p2ptools run" in res.output and "p2ptools train --resume" not in res.output
    monkeypatch.setattr(train_mod, "step_losses", real)
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0 and "train resumed" in res.output
    res = CliRunner().invoke(cli, [*args[:-2], "--set", "train.epochs=3", "--until", "train"],
                             catch_exceptions=False)
    assert "train.epochs: 2 → 3" in res.stderr and "resuming the run" in res.stderr
    assert load_checkpoint(tmp_path / "wd" / "run" / "latest.pt")["state"]["epoch"] == 3
    res = CliRunner().invoke(cli, [*args[:-2], "--set", "train.epochs=3", "--set", tiny.replace("ngf: 8", "ngf: 4"),
                                   "--until", "train"], catch_exceptions=False)
    assert "model.ngf: 8 → 4" in res.stderr and "training anew" in res.stderr and "train ran" in res.output
    shutil.rmtree(tmp_path / "wd")


def test_predict_refuses_output_equal_to_input_and_foreign_files(pairs, tmp_path):
    run = tmp_path / "run"
    assert _train(pairs, "--out", run, "--epochs", 1, *SMALL).exit_code == 0
    res = CliRunner().invoke(cli, ["predict", str(run), str(pairs / "val"), str(pairs / "val")])
    assert res.exit_code == 1 and "is the input folder" in res.output
    out = tmp_path / "pred"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    res = CliRunner().invoke(cli, ["predict", str(run), str(pairs / "val"), str(out)])
    assert res.exit_code == 1 and "notes.txt" in res.output and not list(out.glob("*.png"))
    (out / "notes.txt").unlink()
    for _ in range(2):  # a rerun rewrites its own files
        res = CliRunner().invoke(cli, ["predict", str(run), str(pairs / "val"), str(out)])
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["train", str(pairs), "--out", str(pairs / "run"), *SMALL])
    assert res.exit_code == 1 and "inside the input" in res.output


def test_yaml_number_forms_and_cross_field_checks(pairs, tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("model: {name: p, ngf: 8, ndf: 8, num_downs: 5, image_size: 32, load_size: 36}\n"
                      "train: {lr: 2e-4, epochs: 1e0, lambda_l1: 1e2, decay_fraction: 5e-1, workers: 0}\n")
    res = _train(pairs, "--out", tmp_path / "r", "--model", preset)
    assert res.exit_code == 0, res.output
    tc = load_checkpoint(tmp_path / "r" / "latest.pt")["train_config"]
    assert tc["lr"] == 2e-4 and tc["epochs"] == 1 and tc["lambda_l1"] == 100.0
    res = _train(pairs, "--out", tmp_path / "gp", "--model", preset, "--gan-loss", "wgangp")
    assert res.exit_code == 1 and "BatchNorm critic" in res.output and "model.d_norm=instance" in res.output


def test_batch_stats_outputs_do_not_depend_on_batch_mates(pairs, tmp_path):
    from p2ptools.inference.predict import predict_folder

    run = tmp_path / "run"
    assert _train(pairs, "--out", run, "--epochs", 1, *SMALL).exit_code == 0
    one = tmp_path / "one"
    (one / "x").mkdir(parents=True)
    shutil.copy(pairs / "train" / "0.png", one / "x" / "0.png")
    predict_folder(run, one / "x", tmp_path / "alone", PredictOptions(batch_stats=True, progress=False))
    predict_folder(run, pairs / "train", tmp_path / "crowd",
                   PredictOptions(batch_stats=True, batch_size=6, progress=False))
    assert (tmp_path / "alone" / "0.png").read_bytes() == (tmp_path / "crowd" / "0.png").read_bytes()


def test_clear_run_removes_only_what_training_wrote(tmp_path):
    from p2ptools.model.checkpoints import clear_run, foreign_run_files

    names = ["latest.pt", "epoch_5.pt", "val.csv", "samples/epoch_001.jpg", "tensorboard/events.out.tfevents.1.h",
             "notes.txt", "samples/mine.png"]
    for n in names:
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / n).write_text("x")
    assert foreign_run_files(tmp_path) == ["notes.txt", "samples/mine.png"]
    clear_run(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "notes.txt", "samples/mine.png"]
    assert not (tmp_path / "tensorboard").exists()
