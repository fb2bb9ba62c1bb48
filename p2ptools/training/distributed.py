"""Several processes under torchrun: each process's device and the process group, and the two
collectives the fit loop uses (every process must join each of them at the same point).

Without torchrun (``WORLD_SIZE`` unset) every function is the single-process case: no process group,
:func:`gather` and :func:`from_rank0` return their argument's value without communicating.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from p2ptools.config import TrainConfig
from p2ptools.errors import ConfigError
from p2ptools.runtime.device import select_device


def process_ranks() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def gather(values: torch.Tensor, world: int) -> list[list[float]]:
    """Every process's ``values`` (a 1-d tensor on its device), rank by rank, read on the host: one
    synchronisation, and under torchrun one all-gather that every process must join."""
    if world == 1:
        return [values.tolist()]
    import torch.distributed as dist

    rows = [torch.empty_like(values) for _ in range(world)]
    dist.all_gather(rows, values)
    return torch.stack(rows).tolist()


def from_rank0(value: Any, world: int) -> Any:
    """Rank 0's ``value`` (a picklable object) on every process (itself without torchrun)."""
    if world == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def init_device(tcfg: TrainConfig, world: int, local_rank: int) -> torch.device:
    """The device of this process, joining torchrun's process group when there is one (the backend
    follows the device: ``nccl`` for CUDA, ``gloo`` for the CPU).

    Raises:
        ConfigError: for a device that cannot run under torchrun (:func:`rank_device`).
    """
    if world == 1:
        device = select_device(tcfg.device)
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)  # streams, events and new tensors default to the GPU asked for
        return device
    import torch.distributed as dist

    device = rank_device(tcfg.device, local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def rank_device(spec: str, local_rank: int) -> torch.device:
    """The device of torchrun's process ``LOCAL_RANK`` for ``--device spec``.

    ``cpu`` (or ``auto`` where CUDA is not available) trains every process on the CPU; ``auto`` or
    ``cuda`` with CUDA gives process ``LOCAL_RANK`` the GPU ``cuda:LOCAL_RANK``. One GPU named
    (``cuda:1``) is refused: torchrun starts one process per GPU, and each takes its own (choose the
    GPUs with ``CUDA_VISIBLE_DEVICES``). MPS and other devices are refused (DDP runs on CUDA or the CPU).

    Raises:
        ConfigError: in one line, for a device that cannot run here under torchrun.
    """
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if spec not in ("auto", "cuda"):
        kind = "one GPU" if spec.startswith("cuda:") else f"the device {spec!r}"
        raise ConfigError(f"--device {spec} names {kind}, but under torchrun every process takes its own device: "
                          "use --device cuda (process LOCAL_RANK trains on cuda:LOCAL_RANK; choose the GPUs with "
                          "CUDA_VISIBLE_DEVICES) or --device cpu")
    if not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for under torchrun, but CUDA is not available here; use --device cpu")
    visible = torch.cuda.device_count()
    if local_rank >= visible:
        raise ConfigError(f"torchrun process LOCAL_RANK={local_rank} needs cuda:{local_rank}, but {visible} GPU(s) "
                          f"are visible here: start at most {visible} process(es) per machine "
                          f"(--nproc-per-node {visible}) or train on the CPU with --device cpu")
    return torch.device(f"cuda:{local_rank}")
