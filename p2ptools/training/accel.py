"""Keeping the training device fed and fast: how many DataLoader workers ``auto`` means, the loader's
options, cuDNN autotuning, the channels-last format and the opt-in ``torch.compile``."""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import torch
from torch import nn

from p2ptools.errors import ConfigError

log = logging.getLogger(__name__)

#: more workers than this only add processes: one decodes, augments and packs a 256-px facades
#: pair in ~3 ms, so eight feed well over 2,000 samples/s
MAX_AUTO_WORKERS = 8


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, e.g. a container's or a job's share)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | str, device: torch.device, cores: int | None = None,
                    local_world: int | None = None) -> int:
    """The DataLoader worker processes for ``workers`` (an int, or ``auto``).

    ``auto`` shares the usable cores among the processes of this machine (torchrun's
    ``LOCAL_WORLD_SIZE``), keeps one for the process that drives the device, and takes at most
    :data:`MAX_AUTO_WORKERS`. Training on the CPU takes every core for the network, so there a share
    of two cores or fewer means no workers (loading in the training process measured as fast as one
    worker competing with it; ``benchmarks/loader.py``) and more cores at most two workers (a
    sample's 3 ms is well under 1 % of a CPU step).

    Args:
        workers: the configured value.
        device: the training device.
        cores: the usable cores (default: :func:`usable_cores`).
        local_world: training processes on this machine (default: ``LOCAL_WORLD_SIZE`` or 1).

    Returns:
        The number of worker processes (0: load in the training process).
    """
    if workers != "auto":
        return int(workers)
    cores = usable_cores() if cores is None else cores
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if local_world is None else local_world
    share = max(1, cores // max(1, local_world))
    if device.type == "cpu":
        return 0 if share <= 2 else min(2, share - 1)
    return min(MAX_AUTO_WORKERS, share - 1)


def loader_options(workers: int, batch_size: int, device: torch.device, persistent: bool = True
                   ) -> dict[str, Any]:
    """DataLoader keywords for training on ``device`` with ``workers`` processes: pinned memory on
    CUDA (the copies can then overlap the device's work), persistent workers (started once per run,
    not once per epoch; ``persistent=False`` for a loader used once per epoch, as validation) and
    about eight samples queued per worker (two batches at least)."""
    opts: dict[str, Any] = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0:
        opts.update(persistent_workers=persistent, prefetch_factor=max(2, 8 // batch_size))
    return opts


def use_channels_last(flag: bool | None, device: torch.device) -> bool:
    """Whether training uses the channels-last memory format: ``None`` (auto) means on CUDA (tensor
    cores take NHWC without transposes), not on the CPU (as before; oneDNN converts either way)."""
    return device.type == "cuda" if flag is None else bool(flag)


def tune_for_fixed_sizes(device: torch.device) -> None:
    """Let cuDNN time its convolution algorithms once per shape and keep the fastest: training crops
    are always ``image_size``, so the shapes never change after the first step."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def compile_problem(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` here (its compiler toolchain is missing), or None."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "--compile on CUDA needs Triton (pip install triton)"
    if device.type == "cpu":
        from torch._inductor import config as inductor_config

        cxx = inductor_config.cpp.cxx
        named = [c for c in (cxx if isinstance(cxx, tuple) else (cxx,)) if c]
        if not any(shutil.which(c) for c in (*named, "g++", "c++", "clang++")):
            return "--compile on the CPU needs a C++ compiler (g++ or clang++) on the PATH"
        return None
    return f"--compile is not supported on {device.type}"


def compile_module(net: nn.Module, device: torch.device) -> nn.Module:
    """``torch.compile(net)``; :func:`p2ptools.model.checkpoints.unwrap` gives the module back.

    Raises:
        ConfigError: in one line, when the device's compiler toolchain is missing.
    """
    problem = compile_problem(device)
    if problem:
        raise ConfigError(f"{problem}; or train without --compile")
    return torch.compile(net)
