"""Precision choices on CUDA (mocked: no GPU here) and the TF32 switch."""

from __future__ import annotations

import pytest
import torch

from p2ptools.runtime import device as device_mod

CAPABILITIES = [  # (capability, GPU, --amp auto)
    ((9, 0), "NVIDIA H100", "bf16"),
    ((8, 0), "NVIDIA A100", "bf16"),
    ((8, 6), "NVIDIA RTX A6000", "bf16"),
    ((7, 5), "Tesla T4", "fp16"),
    ((7, 0), "Tesla V100", "fp16"),
    ((6, 1), "Tesla P40", "none"),
    ((6, 0), "Tesla P100", "fp16"),
    ((5, 2), "Tesla M60", "none"),
]


@pytest.fixture
def gpus(monkeypatch):
    """Two mocked GPUs: 0 is an H100 (the current one), 1 is what the test sets; records the indices asked."""
    asked: list[int] = []
    table = {0: ((9, 0), "NVIDIA H100")}

    def capability(index=None):
        asked.append(index)
        return table[index][0]

    def name(index=None):
        asked.append(index)
        return table[index][1]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # counts emulation: not asked
    monkeypatch.setattr(device_mod, "_SAID", set())
    said: list[str] = []
    monkeypatch.setattr(device_mod, "report", lambda msg, *a: said.append(msg % a))
    return table, asked, said


@pytest.mark.parametrize(("capability", "gpu", "expected"), CAPABILITIES)
def test_auto_reads_the_capability_of_the_gpu_asked_for(gpus, capability, gpu, expected):
    table, asked, said = gpus
    table[1] = (capability, gpu)
    assert device_mod.resolve_amp("auto", torch.device("cuda:1")) == expected
    assert asked and set(asked) == {1}  # GPU 1, never the current GPU 0
    major, minor = capability
    assert len(said) == 1 and gpu in said[0] and f"compute capability {major}.{minor}" in said[0]
    shown = device_mod.describe_precision(torch.device("cuda:1"), expected, training=False)
    assert said[0].startswith(f"precision: {shown} on {gpu}")


def test_bare_cuda_reads_the_current_gpu(gpus):
    table, asked, said = gpus
    assert device_mod.resolve_amp("auto", torch.device("cuda")) == "bf16"
    assert set(asked) == {0} and "NVIDIA H100 (cuda:0, compute capability 9.0)" in said[0]


def test_the_report_line_is_said_once_per_process(gpus):
    table, asked, said = gpus
    table[1] = ((7, 0), "Tesla V100")
    for _ in range(3):
        device_mod.resolve_amp("auto", torch.device("cuda:1"))
    assert len(said) == 1 and "precision: fp16 autocast on Tesla V100" in said[0]


def test_explicit_bf16_below_ampere_warns_and_runs(gpus, caplog):
    table, asked, said = gpus
    table[1] = ((7, 5), "Tesla T4")
    with caplog.at_level("WARNING"):
        assert device_mod.resolve_amp("bf16", torch.device("cuda:1")) == "bf16"
    assert "Tesla T4" in caplog.text and "emulated" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert device_mod.resolve_amp("bf16", torch.device("cuda:0")) == "bf16"  # an H100: no warning
        assert device_mod.resolve_amp("fp16", torch.device("cuda:1")) == "fp16"
    assert not caplog.text


def test_describe_precision_names_tf32_on_cuda(gpus, monkeypatch):
    cuda, cpu = torch.device("cuda:0"), torch.device("cpu")
    assert device_mod.describe_precision(cpu, "none") == "fp32"
    assert device_mod.describe_precision(cpu, "bf16") == "bf16 autocast"
    assert device_mod.describe_precision(cuda, "fp16") == "fp16 autocast + GradScaler"
    assert device_mod.describe_precision(cuda, "fp16", training=False) == "fp16 autocast"
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert device_mod.describe_precision(cuda, "none") == "fp32 (TF32 matmul/conv)"
    with device_mod.tf32_disabled():
        assert device_mod.describe_precision(cuda, "none") == "fp32 (TF32 off)"
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    assert device_mod.describe_precision(cuda, "none") == "fp32 (TF32 conv)"


@pytest.mark.parametrize(("matmul", "conv"), [(True, True), (False, True), (True, False)])
def test_tf32_disabled_restores_the_flags_even_on_errors(monkeypatch, matmul, conv):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", matmul)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", conv)
    with device_mod.tf32_disabled():
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (matmul, conv)
    with pytest.raises(RuntimeError, match="boom"), device_mod.tf32_disabled():
        raise RuntimeError("boom")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (matmul, conv)
