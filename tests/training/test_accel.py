"""Feeding the device: ``--workers auto``, the loader's options, cuDNN autotuning, channels-last and
``--compile`` (accepted where the toolchain exists, refused in one line where it does not)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.config import TrainConfig
from p2ptools.errors import ConfigError
from p2ptools.model.checkpoints import unwrap
from p2ptools.model.config import ModelConfig
from p2ptools.training import accel
from p2ptools.training.accel import loader_options, resolve_workers, tune_for_fixed_sizes, use_channels_last
from p2ptools.training.train import build_models

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
TINY = dict(ngf=8, ndf=8, num_downs=5, image_size=32, load_size=36)


@pytest.mark.parametrize(("cores", "local_world", "device", "want"), [
    (1, 1, CUDA, 0), (2, 1, CUDA, 1), (16, 1, CUDA, 8), (6, 1, CUDA, 5), (16, 4, CUDA, 3), (16, 8, CUDA, 1),
    (1, 1, CPU, 0), (2, 1, CPU, 0), (4, 1, CPU, 2), (64, 1, CPU, 2), (4, 2, CPU, 0),
])
def test_auto_workers_share_the_cores(cores, local_world, device, want):
    assert resolve_workers("auto", device, cores=cores, local_world=local_world) == want


def test_auto_workers_read_the_affinity_and_torchrun(monkeypatch):
    monkeypatch.setattr(accel.os, "sched_getaffinity", lambda pid: set(range(12)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert resolve_workers("auto", CUDA) == 5 and resolve_workers(3, CUDA) == 3


def test_workers_accepts_a_count_or_auto_and_refuses_the_rest(tmp_path):
    base = dict(dataset=tmp_path, out=tmp_path / "run")
    assert TrainConfig(**base).workers == "auto"
    assert TrainConfig(**base, workers="3").workers == 3 and TrainConfig(**base, workers="Auto").workers == "auto"
    for bad in (-1, "many", 1.5, True):
        with pytest.raises(ConfigError, match="workers must be auto or a count"):
            TrainConfig(**base, workers=bad)


def test_cli_workers_option_is_validated_by_the_config(tmp_path):
    (tmp_path / "data" / "train").mkdir(parents=True)
    res = CliRunner().invoke(cli, ["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                                   "--workers", "lots"])
    assert res.exit_code != 0 and "workers must be auto or a count" in res.output
    assert len([ln for ln in res.output.splitlines() if "workers" in ln]) == 1


def test_loader_options_pin_on_cuda_and_keep_workers():
    assert loader_options(0, 1, CPU) == {"num_workers": 0, "pin_memory": False}
    opts = loader_options(4, 1, CUDA)
    assert opts["pin_memory"] and opts["persistent_workers"] and opts["prefetch_factor"] == 8
    assert loader_options(4, 64, CUDA)["prefetch_factor"] == 2
    assert loader_options(4, 1, CUDA, persistent=False)["persistent_workers"] is False


def test_the_validation_loader_starts_at_most_two_workers_per_pass(tmp_path, monkeypatch):
    """Training's loader keeps its workers for the run; validation's (one pass per epoch) starts at most
    2 for each pass instead of keeping a second full set alive all run long."""
    from p2ptools.config import TrainConfig
    from p2ptools.training import train
    from p2ptools.training.data import EpochSampler

    monkeypatch.setattr(train, "resolve_workers", lambda workers, device: 8)
    tcfg = TrainConfig(dataset=tmp_path, out=tmp_path / "run")
    ds = list(range(4))
    val = train._loader(ds, tcfg, CPU)
    fit = train._loader(ds, tcfg, CPU, EpochSampler(4, 0, tagged=True))
    assert (val.num_workers, val.persistent_workers) == (2, False)
    assert (fit.num_workers, fit.persistent_workers) == (8, True)


def test_channels_last_auto_is_cuda_only_and_cudnn_benchmark_on_cuda(monkeypatch):
    assert use_channels_last(None, CUDA) and not use_channels_last(None, CPU)
    assert use_channels_last(True, CPU) and not use_channels_last(False, CUDA)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    tune_for_fixed_sizes(CPU)
    assert torch.backends.cudnn.benchmark is False
    tune_for_fixed_sizes(CUDA)
    assert torch.backends.cudnn.benchmark is True


def test_compile_is_refused_in_one_line_without_a_compiler(tmp_path, monkeypatch):
    monkeypatch.setattr(accel.shutil, "which", lambda name: None)
    tcfg = TrainConfig(dataset=tmp_path, out=tmp_path / "run", compile=True)
    with pytest.raises(ConfigError, match=r"^--compile on the CPU needs a C\+\+ compiler .*without --compile$"):
        build_models(ModelConfig(**TINY), tcfg, CPU)
    monkeypatch.setattr("torch.utils._triton.has_triton", lambda: False)
    assert "Triton" in accel.compile_problem(CUDA)


def test_compile_wraps_both_networks_and_unwrap_gives_them_back(tmp_path):
    if accel.compile_problem(CPU):
        pytest.skip(accel.compile_problem(CPU))
    m = build_models(ModelConfig(**TINY), TrainConfig(dataset=tmp_path, out=tmp_path / "run", compile=True), CPU)
    for net in (m.G, m.D):
        assert hasattr(net, "_orig_mod") and not hasattr(unwrap(net), "_orig_mod")
        assert all(not k.startswith("_orig_mod") for k in unwrap(net).state_dict())
    assert {id(p) for p in m.opt_G.param_groups[0]["params"]} == {id(p) for p in unwrap(m.G).parameters()}
