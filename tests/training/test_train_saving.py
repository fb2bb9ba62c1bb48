"""Training reads its losses every log_every steps, not every step, and writes checkpoints from a
copy on a background thread: atomic, never of diverged weights, errors raised in the training thread."""

from __future__ import annotations

import pytest
import torch

from p2ptools.config import TrainConfig
from p2ptools.errors import OutputError
from p2ptools.model.checkpoints import CheckpointWriter, load_checkpoint
from p2ptools.model.config import ModelConfig
from p2ptools.training import step as step_mod
from p2ptools.training import train as train_mod
from p2ptools.training.train import RunState, TrainingDiverged, build_models, fit

TINY = ModelConfig(ngf=8, ndf=8, num_downs=5, image_size=32, load_size=36)


def _cfg(root, out, **kw) -> TrainConfig:
    base = dict(dataset=root, out=out, epochs=2, decay_epochs=1, batch_size=1, workers=0, device="cpu", amp="none")
    return TrainConfig(**{**base, **kw})


def test_losses_are_read_every_log_every_steps(pairs, tmp_path, monkeypatch):
    reads = []
    real = train_mod.gather

    def counted(values, world):
        reads.append(values.numel())
        return real(values, world)

    monkeypatch.setattr(train_mod, "gather", counted)
    res = fit(TINY, _cfg(pairs, tmp_path / "run", log_every=3, save_every=100), progress=False)
    assert res.state.global_step == 16  # 8 images, batch 1, 2 epochs
    # steps 3, 6, 8 (the epoch's last), 9, 12, 15, 16, and once before the final latest.pt: no read per step
    assert len(reads) == 8
    rows = (tmp_path / "run" / "losses.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in rows] == [3, 6, 8, 9, 12, 15, 16]


def test_a_nan_between_log_rows_is_caught_before_the_next_checkpoint(pairs, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = train_mod.gan_loss

    def poisoned(pred, is_real, mode):
        calls["n"] += 1
        value = real(pred, is_real, mode)
        return value * float("nan") if calls["n"] > 3 * 7 else value  # from step 7 (0-based)

    monkeypatch.setattr(step_mod, "gan_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss_D became nan at epoch 1, step 7; .*latest.pt"):
        fit(TINY, _cfg(pairs, tmp_path / "run", log_every=100, save_every=3), progress=False)
    good = load_checkpoint(tmp_path / "run" / "latest.pt")
    assert good["state"]["global_step"] == 6  # written at step 6; step 9's was refused (checked first)
    assert all(torch.isfinite(v).all() for v in good["G"].values() if v.is_floating_point())


def test_the_checkpoint_holds_the_state_when_it_was_asked_for(pairs, tmp_path):
    tcfg = _cfg(pairs, tmp_path / "run")
    m = build_models(TINY, tcfg, torch.device("cpu"))
    before = {k: v.clone() for k, v in m.G.state_dict().items()}
    writer = CheckpointWriter()
    writer.save(tmp_path / "run" / "latest.pt", m, RunState(global_step=5), TINY, tcfg, True, {})
    with torch.no_grad():  # training goes on while the file is written
        for p in m.G.parameters():
            p.fill_(7.0)
    writer.wait()
    saved = load_checkpoint(tmp_path / "run" / "latest.pt")
    assert saved["state"]["global_step"] == 5
    assert all(torch.equal(saved["G"][k], before[k]) for k in before)
    assert [p.name for p, _ in writer.written] == ["latest.pt"]
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["latest.pt"]  # no temporary file left


def test_an_error_of_the_writer_is_raised_in_the_training_thread_in_one_line(pairs, tmp_path):
    tcfg = _cfg(pairs, tmp_path / "run")
    m = build_models(TINY, tcfg, torch.device("cpu"))
    (tmp_path / "run" / "latest.pt").mkdir(parents=True)  # a folder where the file goes
    writer = CheckpointWriter()
    writer.save(tmp_path / "run" / "latest.pt", m, RunState(), TINY, tcfg, True, {})
    with pytest.raises(OutputError, match=r"^[^\n]*latest.pt: is a folder where p2ptools writes a file[^\n]*$"):
        writer.wait()
    writer.wait()  # said once


def test_on_cuda_latest_is_written_by_the_clock_not_every_save_every_steps(pairs, tmp_path, monkeypatch):
    saved: list[tuple[str, int]] = []
    real = CheckpointWriter.save

    def spy(self, path, models, state, *args, **kwargs):
        saved.append((path.name, state.global_step))
        return real(self, path, models, state, *args, **kwargs)

    monkeypatch.setattr(CheckpointWriter, "save", spy)

    class OnCuda(train_mod._Trainer):  # the CUDA choice, on the CPU
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.by_time = True

    monkeypatch.setattr(train_mod, "_Trainer", OnCuda)
    fit(TINY, _cfg(pairs, tmp_path / "slow", log_every=2, save_every=1, save_minutes=60), progress=False)
    assert [s for s in saved if s[0] == "latest.pt"] == [("latest.pt", 8), ("latest.pt", 16)]  # epoch 1, end
    saved.clear()
    fit(TINY, _cfg(pairs, tmp_path / "fast", log_every=2, save_every=100, save_minutes=0), progress=False)
    assert [s[1] for s in saved if s[0] == "latest.pt"][:4] == [2, 4, 6, 8]  # at each check once due
