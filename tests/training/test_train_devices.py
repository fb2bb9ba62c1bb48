"""Training on the devices no CI machine has: torchrun on a GPU machine (mocked CUDA queries), the
fp16 loss scalers across a resume."""

from __future__ import annotations

import pytest
import torch

from p2ptools.config import TrainConfig
from p2ptools.errors import ConfigError
from p2ptools.model.checkpoints import save_checkpoint
from p2ptools.model.config import ModelConfig
from p2ptools.training.distributed import init_device
from p2ptools.training.train import RunState, _restore, build_models

TINY = ModelConfig(ngf=8, ndf=8, num_downs=5, image_size=32, load_size=36)


@pytest.fixture
def joined(monkeypatch):
    """torch.distributed and the CUDA device switch recorded, not run: the backends asked for, the GPU set."""
    import torch.distributed as dist

    calls: list[str] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append(backend))
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(str(d)))
    return calls


def _gpus(monkeypatch, n: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


def _tcfg(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(dataset=tmp_path, out=tmp_path / "run", **kw)


def test_torchrun_with_device_cpu_stays_on_the_cpu_of_a_gpu_machine(joined, monkeypatch, tmp_path):
    _gpus(monkeypatch, 1)
    assert init_device(_tcfg(tmp_path, device="cpu"), 2, 1) == torch.device("cpu")
    assert joined == ["gloo"]  # no cuda:1 on a 1-GPU machine, no nccl


def test_torchrun_gives_each_process_its_gpu(joined, monkeypatch, tmp_path):
    _gpus(monkeypatch, 2)
    for spec in ("auto", "cuda"):
        joined.clear()
        assert init_device(_tcfg(tmp_path, device=spec), 2, 1) == torch.device("cuda:1")
        assert joined == ["nccl", "cuda:1"]
    _gpus(monkeypatch, 0)
    joined.clear()
    assert init_device(_tcfg(tmp_path), 2, 1) == torch.device("cpu") and joined == ["gloo"]


@pytest.mark.parametrize("spec, gpus, message", [
    ("auto", 1, "LOCAL_RANK=1 needs cuda:1, but 1 GPU(s) are visible here: start at most 1 process(es) per "
                "machine (--nproc-per-node 1) or train on the CPU with --device cpu"),
    ("cuda:0", 2, "--device cuda:0 names one GPU, but under torchrun every process takes its own device"),
    ("cuda", 0, "CUDA is not available here; use --device cpu"),
])
def test_torchrun_refuses_a_device_it_cannot_give_in_one_line(joined, monkeypatch, tmp_path, spec, gpus, message):
    _gpus(monkeypatch, gpus)
    with pytest.raises(ConfigError, match="^[^\n]*$") as err:
        init_device(_tcfg(tmp_path, device=spec), 2, 1)
    assert message in str(err.value) and joined == []  # refused before joining the group


def _saved(tmp_path, scale: float | None):
    """A full checkpoint of the tiny networks, its scalers off (None) or on at ``scale``."""
    tcfg = _tcfg(tmp_path, device="cpu", amp="none")
    m = build_models(TINY, tcfg, torch.device("cpu"))
    if scale is not None:
        m.scaler_G = torch.amp.GradScaler("cpu", init_scale=scale, enabled=True)
        m.scaler_D = torch.amp.GradScaler("cpu", init_scale=scale, enabled=True)
    path = tmp_path / f"run{scale}" / "latest.pt"
    save_checkpoint(path, m, RunState(epoch=1, global_step=4), TINY, tcfg, full=True, dataset={})
    return path, tcfg


def _fresh(tcfg: TrainConfig, fp16: bool):
    m = build_models(TINY, tcfg, torch.device("cpu"))
    m.scaler_G = torch.amp.GradScaler("cpu", enabled=fp16)  # what --amp fp16 builds on CUDA
    m.scaler_D = torch.amp.GradScaler("cpu", enabled=fp16)
    return m


def test_an_fp32_run_resumes_with_fp16_and_an_fp16_run_with_fp32(tmp_path, caplog):
    path, tcfg = _saved(tmp_path, None)  # scalers off: saved as {}
    m = _fresh(tcfg, fp16=True)
    with caplog.at_level("INFO"):
        state = _restore(m, path, TINY, tcfg)
    assert state.global_step == 4 and m.scaler_G.get_scale() == 65536.0
    assert "the fp16 loss scalers start anew" in caplog.text
    path, tcfg = _saved(tmp_path, 1024.0)
    m = _fresh(tcfg, fp16=False)
    assert _restore(m, path, TINY, tcfg).global_step == 4 and not m.scaler_G.is_enabled()
    m = _fresh(tcfg, fp16=True)
    _restore(m, path, TINY, tcfg)
    assert m.scaler_G.get_scale() == m.scaler_D.get_scale() == 1024.0  # fp16 to fp16 keeps the scale


def test_one_process_on_a_named_gpu_makes_it_the_current_device(joined, monkeypatch, tmp_path):
    """``--device cuda:1`` without torchrun: GPU 1 becomes the current device, so the checkpoint writer's
    event and every new stream are on the GPU the tensors are on, not GPU 0."""
    _gpus(monkeypatch, 2)
    assert init_device(_tcfg(tmp_path, device="cuda:1"), 1, 0) == torch.device("cuda:1")
    assert joined == ["cuda:1"]  # no process group, the device set
    joined.clear()
    assert init_device(_tcfg(tmp_path, device="cuda"), 1, 0) == torch.device("cuda")
    assert joined == []  # a bare cuda keeps the current device
