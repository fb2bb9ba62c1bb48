"""A checkpoint's stored model configuration passes the same validation as a preset's before any
network is built from it: a crafted file cannot make p2ptools allocate terabytes or fail with a
traceback."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.model.checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, RunState, load_generator
from p2ptools.model.config import ModelConfig
from p2ptools.model.nets import build_generator
from tests.conftest import small_pairs

TINY = ModelConfig(ngf=8, ndf=8, num_downs=5, image_size=32, load_size=36)


def _checkpoint(run, model_config=None, **train_config):
    """A generator-only checkpoint as save_checkpoint writes it, with its stored configuration replaced."""
    G = build_generator(TINY.generator, TINY.generator_kwargs())
    run.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "full": False, "dataset": None,
                "model_config": {**dataclasses.asdict(TINY), **(model_config or {})},
                "train_config": {"direction": "AtoB", "dataset": None, **train_config},
                "state": dataclasses.asdict(RunState()), "G": G.state_dict()}, run / "latest.pt")
    return run


@pytest.fixture
def never_built(monkeypatch):
    """Building a generator from a checkpoint fails the test (so nothing huge is ever allocated)."""
    import p2ptools.model.checkpoints as checkpoints

    def build(*args, **kwargs):
        raise AssertionError("a generator was built from a checkpoint that should have been refused")

    monkeypatch.setattr(checkpoints, "build_generator", build)


def _refusal(*args) -> str:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    return lines[0]


@pytest.mark.parametrize("change, message", [
    ({"ngf": 100000}, "model_config: ngf=100000: the unet generator would have 4.1e13 parameters, 147.8 TiB"),
    ({"image_size": 2**22, "load_size": 2**22}, f"model_config: image_size={2**22}: the unet generator"),
    ({"ngff": 8}, "model_config: unknown option(s) ngff; valid: "),
    ({"g_norm": ["batch"]}, "model_config: g_norm must be str, got ['batch']"),
])
def test_a_crafted_model_config_is_refused_before_building(tmp_path, never_built, change, message):
    run = _checkpoint(tmp_path / "run", change)
    data = small_pairs(tmp_path / "ds", n_train=1, n_val=1)
    line = _refusal("predict", run, data / "val", tmp_path / "p")
    assert f"{run / 'latest.pt'}: {message}" in line, line
    if "ngf" in change:
        assert "at most ngf=1024" in line
    line = _refusal("train", "--resume", run)  # resuming reads the same configuration first
    assert message in line, line


def test_a_crafted_direction_is_refused(tmp_path):
    run = _checkpoint(tmp_path / "run", direction="atob")
    line = _refusal("predict", run, small_pairs(tmp_path / "ds", 1, 1) / "val", tmp_path / "p")
    assert "train_config: direction must be one of AtoB, BtoA, got 'atob'" in line


def test_the_checkpoint_as_written_loads(tmp_path):
    G, mcfg, _ = load_generator(_checkpoint(tmp_path / "run", {"dropout": 0}))
    assert mcfg == ModelConfig(**{**dataclasses.asdict(TINY), "dropout": 0.0})
    assert isinstance(mcfg.dropout, float)  # stored values come back coerced to their fields' types


@pytest.mark.parametrize(("amp", "said"), [("none", "fp32"), ("bf16", "bf16 autocast")])
def test_a_checkpoint_states_the_precision_it_was_trained_in(amp, said):
    from types import SimpleNamespace

    from p2ptools.config import TrainConfig
    from p2ptools.model.checkpoints import checkpoint_payload

    G = build_generator(TINY.generator, TINY.generator_kwargs())
    tcfg = TrainConfig(dataset=Path("d"), out=Path("o"))
    payload = checkpoint_payload(SimpleNamespace(G=G, amp=amp), RunState(), TINY, tcfg, False, None)
    assert payload["precision"] == said


def test_on_a_gpu_the_checkpoint_states_tf32(monkeypatch):
    from types import SimpleNamespace

    from p2ptools.config import TrainConfig
    from p2ptools.model import checkpoints

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (8, 0))
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    fake = SimpleNamespace(parameters=lambda: iter([SimpleNamespace(device=torch.device("cuda:0"))]),
                           state_dict=lambda: {})
    monkeypatch.setattr(checkpoints, "unwrap", lambda net: net)
    tcfg = TrainConfig(dataset=Path("d"), out=Path("o"))
    payload = checkpoints.checkpoint_payload(SimpleNamespace(G=fake, amp="none"), RunState(), TINY, tcfg, False, None)
    assert payload["precision"] == "fp32 (TF32 conv)"


def test_unwrap_strips_compile_and_distributed_wrappers_in_any_order():
    from p2ptools.model.checkpoints import unwrap

    class Wrapper(torch.nn.Module):  # DistributedDataParallel's shape: the network as .module
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.module = module

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    compiled = torch.compile(net)  # compiles lazily: nothing runs here
    assert list(compiled.state_dict())[0].startswith("_orig_mod.")
    for wrapped in (compiled, Wrapper(compiled), torch.compile(Wrapper(net)), Wrapper(Wrapper(net)), net):
        assert unwrap(wrapped) is net
    assert unwrap(torch.nn.Sequential()) is not None  # an empty container is still a module
