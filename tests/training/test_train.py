"""Training: losses, schedule, one epoch learning, exact resume, early stopping, divergence, CLI."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.config import TrainConfig
from p2ptools.inference.options import PredictOptions
from p2ptools.model.config import ModelConfig
from p2ptools.training import step as step_mod
from p2ptools.training import train as train_mod
from p2ptools.training.data import AlignedDataset, EpochSampler, paired_transform, to_device_batch
from p2ptools.training.step import TrainingDiverged, build_models, gan_loss, gradient_penalty, lr_factor, train_step
from p2ptools.training.train import fit, load_checkpoint, load_generator
from tests.conftest import shared_path

TINY = dict(ngf=8, ndf=8, num_downs=5, image_size=32, load_size=36)


@pytest.fixture
def facades(tmp_path):
    """8 real facades pairs for train/, 3 for val/."""
    src = sorted(shared_path("facades", "train").glob("*.jpg"))
    root = tmp_path / "facades"
    for split, files in (("train", src[:8]), ("val", src[8:11])):
        (root / split).mkdir(parents=True)
        for p in files:
            shutil.copy(p, root / split / p.name)
    return root


def _cfg(root, out, **kw):
    # the CPU in fp32, whatever the machine: on a GPU, auto would train in bf16 without deterministic
    # algorithms, and the bit-identical resume below would not hold
    base = dict(dataset=root, out=out, epochs=3, decay_epochs=1, batch_size=2, workers=0, log_every=1,
                save_every=2, device="cpu", amp="none")
    return TrainConfig(**{**base, **kw})


def test_gan_losses_known_values():
    z = torch.zeros(2, 1, 3, 3)
    assert gan_loss(z, True, "vanilla").item() == pytest.approx(math.log(2))
    assert gan_loss(torch.full((1, 1, 2, 2), 3.0), False, "lsgan").item() == pytest.approx(9.0)
    p = torch.tensor([1.0, 3.0])
    assert gan_loss(p, True, "wgan").item() == -2.0 and gan_loss(p, False, "wgangp").item() == 2.0


def test_gradient_penalty_of_a_linear_critic():
    w = torch.zeros(1, 6, 4, 4)
    w[0, 0, 0, 0] = 3.0  # D(x) = 3·x[0, 0, 0], gradient norm 3 everywhere → penalty (3 − 1)² = 4
    def critic(x):
        return (x * w).sum(dim=(1, 2, 3))
    real, fake = torch.randn(2, 6, 4, 4), torch.randn(2, 6, 4, 4)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(4.0)


def test_lr_schedule_constant_then_linear():
    f = [lr_factor(e, 6, 3) for e in range(6)]  # 6 epochs in all, the last 3 decaying
    assert f == pytest.approx([1, 1, 1, 0.75, 0.5, 0.25])


def test_paired_augmentation_applies_one_transform_to_both():
    a = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    for seed in range(20):
        ta, tb = paired_transform(a, a.copy(), 40, 32, "d4", np.random.default_rng(seed))
        assert ta.shape == (32, 32, 3) and np.array_equal(ta, tb)


def test_epoch_sampler_order_skip_and_shards():
    s = EpochSampler(10, seed=1, epoch=2)
    order = list(s)
    assert sorted(order) == list(range(10)) and order == list(EpochSampler(10, seed=1, epoch=2))
    assert order != list(EpochSampler(10, seed=1, epoch=3))
    assert list(EpochSampler(10, seed=1, epoch=2, skip=4)) == order[4:]
    shards = [list(EpochSampler(10, 1, 2, rank=r, world_size=2)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(10))
    shards = [list(EpochSampler(7, 1, 2, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3] and set(sum(shards, [])) == set(range(7))  # padded evenly


def test_one_epoch_reduces_l1_on_real_pairs(facades):
    torch.manual_seed(0)
    mcfg = ModelConfig(**TINY)
    tcfg = _cfg(facades, facades / "unused")
    ds = AlignedDataset(facades, "train", crop_size=32, load_size=36, augment="none")
    m = build_models(mcfg, tcfg, torch.device("cpu"))
    pairs = [to_device_batch({"A": ds[i]["A"][None], "B": ds[i]["B"][None]}, torch.device("cpu"))
             for i in range(len(ds))]

    def l1() -> float:  # per-image batch statistics, dropout off: the deterministic training-time view
        drops = [mod for mod in m.G.modules() if isinstance(mod, torch.nn.Dropout)]
        for d in drops:
            d.eval()
        with torch.no_grad():
            value = sum(F.l1_loss(m.G(a), b).item() for a, b in pairs) / len(pairs)
        for d in drops:
            d.train()
        return value

    before = l1()
    for a, b in pairs:  # one epoch, batch 1, the paper's settings
        train_step(m, a, b, tcfg, torch.device("cpu"))
    assert l1() < before - 0.005


def test_resume_is_bit_identical(pairs, tmp_path):
    mcfg = ModelConfig(**TINY)
    full = fit(mcfg, _cfg(pairs, tmp_path / "full"), progress=False)
    assert full.state.global_step == 12 and full.stopped_by == "epochs"
    part = fit(mcfg, _cfg(pairs, tmp_path / "part", max_steps=5), progress=False)
    assert part.stopped_by == "max_steps" and part.state.global_step == 5 and part.state.step_in_epoch == 1
    with pytest.raises(Exception, match="already holds a run"):
        fit(mcfg, _cfg(pairs, tmp_path / "part"), progress=False)
    fit(mcfg, _cfg(pairs, tmp_path / "part"), resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "full" / "latest.pt"), load_checkpoint(tmp_path / "part" / "latest.pt")
    for net in ("G", "D"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs after resume"
    assert a["opt_G"]["param_groups"][0]["lr"] == b["opt_G"]["param_groups"][0]["lr"]
    la, lb = pd.read_csv(tmp_path / "full" / "losses.csv"), pd.read_csv(tmp_path / "part" / "losses.csv")
    pd.testing.assert_frame_equal(la.drop(columns="sec_per_step"), lb.drop(columns="sec_per_step"))
    assert (tmp_path / "full" / "loss_curves.png").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "full" / "samples").iterdir()) == [
        "epoch_001.jpg", "epoch_002.jpg", "epoch_003.jpg"]


def test_early_stopping_restores_the_best_epoch(pairs, tmp_path, monkeypatch):
    scores = iter([50.0, 40.0, 45.0, 47.0, 30.0])

    def scripted(*args, **kwargs):
        return {"val_l1_255": next(scores), "val_G_GAN": 0.0, "val_D": 0.0}

    monkeypatch.setattr(train_mod, "validate", scripted)
    res = fit(ModelConfig(**TINY), _cfg(pairs, tmp_path / "run", epochs=5, decay_epochs=0, patience=2),
              progress=False)
    assert res.stopped_by == "patience" and res.state.best_epoch == 2 and res.state.epoch == 4
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    latest = load_checkpoint(tmp_path / "run" / "latest.pt")
    assert latest["state"]["early_stopped"]
    for k in best["G"]:
        assert torch.equal(best["G"][k], latest["G"][k])  # the restored weights are epoch 2's
    assert len(pd.read_csv(tmp_path / "run" / "val.csv")) == 4


def test_nan_loss_stops_and_keeps_last_good_checkpoint(pairs, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = train_mod.gan_loss

    def poisoned(pred, is_real, mode):
        calls["n"] += 1
        value = real(pred, is_real, mode)
        return value * float("nan") if calls["n"] > 3 * 7 else value  # 3 calls per step: NaN at step 8

    monkeypatch.setattr(step_mod, "gan_loss", poisoned)  # where the step takes it
    with pytest.raises(TrainingDiverged, match="loss_D became nan at epoch 1, step 7.*latest.pt"):
        fit(ModelConfig(**TINY), _cfg(pairs, tmp_path / "run", batch_size=1, epochs=3, save_every=3),
            progress=False)
    good = load_checkpoint(tmp_path / "run" / "latest.pt")
    assert good["state"]["global_step"] == 6
    assert all(torch.isfinite(v).all() for v in good["G"].values() if v.is_floating_point())


def test_empty_val_folder_means_no_validation(pairs, tmp_path):
    for p in (pairs / "val").iterdir():
        p.unlink()  # a split emptied by filtering
    res = fit(ModelConfig(**TINY), _cfg(pairs, tmp_path / "run", max_steps=2), progress=False)
    assert res.history == [] and res.state.global_step == 2


def test_wgan_and_lsgan_steps_run(pairs, tmp_path):
    for loss, extra in (("wgan", dict(optimizer="rmsprop", lr=5e-5, n_critic=2)), ("wgangp", {}), ("lsgan", {})):
        res = fit(ModelConfig(**{**TINY, "d_norm": "none" if loss == "wgangp" else "batch"}),
                  _cfg(pairs, tmp_path / loss, gan_loss=loss, max_steps=4, **extra), progress=False)
        assert res.state.global_step == 4
    d = load_checkpoint(tmp_path / "wgan" / "latest.pt")["D"]
    assert max(v.abs().max().item() for k, v in d.items() if k.endswith("weight") and v.ndim == 4) <= 0.01


def test_cli_train_predict_and_resume(facades, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(facades), "--model", "tiny", "--out", str(run), "--epochs", "1",
            "--set", "model.image_size=32", "--set", "model.load_size=36", "--set", "model.num_downs=5",
            "--max-steps", "1", "--workers", "0"]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "stopped by max_steps" in res.output
    res = CliRunner().invoke(cli, ["train", "--resume", str(run)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "stopped by max_steps" in res.output  # the stored config keeps max_steps=1
    G, mcfg, meta = load_generator(run, "latest")  # the checkpoint alone rebuilds the model
    assert mcfg.image_size == 32 and not G.training
    out = tmp_path / "pred"
    res = CliRunner().invoke(cli, ["predict", str(run), str(facades / "val"), str(out), "--side-by-side"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(p.stem for p in (facades / "val").iterdir())
    assert "ab input" in res.output
    assert (out / "side_by_side" / next(out.glob("*.png")).name).is_file()
    bad = CliRunner().invoke(cli, ["train", str(facades), "--out", str(tmp_path / "x"), "--set", "model.ngf"])
    assert bad.exit_code != 0 and "model.FIELD=VALUE" in bad.output
    bad = CliRunner().invoke(cli, ["train", str(facades), "--out", str(tmp_path / "x"), "--model", "nope"])
    assert bad.exit_code == 1 and "bundled preset" in bad.output
    bad = CliRunner().invoke(cli, ["predict", str(run), str(facades / "val"), str(out), "--checkpoint", "best"])
    assert bad.exit_code == 1 and "has no best.pt" in bad.output


def test_predict_dropout_modes(pairs, tmp_path):
    from p2ptools.inference.predict import predict_folder

    fit(ModelConfig(**TINY), _cfg(pairs, tmp_path / "run", max_steps=2), progress=False)
    a = predict_folder(tmp_path / "run", pairs / "val", tmp_path / "a", PredictOptions(progress=False))
    predict_folder(tmp_path / "run", pairs / "val", tmp_path / "b", PredictOptions(progress=False))
    predict_folder(tmp_path / "run", pairs / "val", tmp_path / "c", PredictOptions(dropout=True, progress=False))
    assert a.written == 3
    names = sorted(p.name for p in (tmp_path / "a").glob("*.png"))
    same = [(tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names]
    noisy = [(tmp_path / "a" / n).read_bytes() == (tmp_path / "c" / n).read_bytes() for n in names]
    assert all(same) and not all(noisy)  # eval mode is deterministic; dropout on is not


def test_distributed_training_with_torchrun_on_cpu(pairs, tmp_path):
    """Two DDP processes (gloo backend): rank 0 writes the checkpoint, and training completes."""
    import subprocess
    import sys

    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29577",
           "-m", "p2ptools", "-q", "train", str(pairs), "--model", "tiny", "--out", str(run),
           "--set", "model.image_size=32", "--set", "model.load_size=36", "--set", "model.num_downs=5",
           "--epochs", "1", "--batch-size", "2", "--workers", "0", "--device", "cpu"]
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**env, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    state = load_checkpoint(run / "latest.pt")["state"]
    assert state["global_step"] == 2 and state["epoch"] == 1  # 8 images / (2 ranks × batch 2) = 2 steps
