"""Devices and precision, shared by training, prediction and evaluation.

``--device auto`` picks CUDA, then Apple MPS, then the CPU. ``--amp auto`` picks the 16-bit autocast
that the hardware runs natively and full precision elsewhere. On CUDA it reads the compute
capability of the device asked for (``cuda:1`` is asked about GPU 1, not the current GPU), because
``torch.cuda.is_bf16_supported()`` also counts emulation:

===========================  =======================  ==========================================
compute capability           ``--amp auto``           GPUs (examples)
===========================  =======================  ==========================================
≥ 8.0                        bf16 autocast            A100, A10, RTX 30xx/40xx, L4, H100, H200
7.0 – 7.5                    fp16 autocast + scaler   V100 (7.0), T4, RTX 20xx (7.5)
6.0                          fp16 autocast + scaler   P100 (fast fp16)
6.1, 6.2, < 6                fp32                     GTX 10xx, P4, P40 (fp16 at 1/64 rate)
===========================  =======================  ==========================================

An explicit ``--amp bf16`` below 8.0 runs but warns (no bf16 units: emulated, slow). On a CPU,
``auto`` picks bf16 only with AMX or AVX-512 BF16: with AVX2 only, bf16 autocast is emulated and
was measured at more than 30 s per pix2pix step against 1.6 s in fp32 (AMD EPYC, facades, batch 1).
Apple MPS runs fp32 under ``auto``. CUDA's TF32 (on by default for cuDNN convolutions) is stated by
:func:`describe_precision` and turned off for metric networks by :func:`tf32_disabled`.
"""

from __future__ import annotations

import contextlib
import logging
import platform
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import torch

from p2ptools.errors import ConfigError
from p2ptools.runtime.precisions import AMPS
from p2ptools.runtime.progress import report

log = logging.getLogger(__name__)



def select_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; anything else is a torch device string.

    Raises:
        ConfigError: for an unknown or unavailable device.
    """
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {spec!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} asked for, but CUDA is not available here")
    return device


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_capability() -> str:
    """torch's vector ISA level for this CPU (``AVX2``, ``AVX512``, …)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:  # pragma: no cover - torch < 2.1
        return "unknown"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AMX tiles or AVX-512 BF16)."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def describe_cpu() -> str:
    """``AMD EPYC (torch: AVX2, bf16 emulated)``: for logs and benchmark headers."""
    bf16 = "native bf16" if cpu_has_native_bf16() else "bf16 emulated"
    return f"{cpu_model()} (torch: {cpu_capability()}, {bf16}, {torch.get_num_threads()} threads)"


def cuda_index(device: torch.device) -> int:
    """The GPU index of a CUDA device: its own, or the current GPU for a bare ``cuda``."""
    return device.index if device.index is not None else torch.cuda.current_device()


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """The compute capability ``(major, minor)`` of the GPU ``device`` names."""
    major, minor = torch.cuda.get_device_capability(cuda_index(device))
    return int(major), int(minor)


def cuda_auto_amp(capability: tuple[int, int]) -> str:
    """``--amp auto`` on a GPU of this compute capability (the table of the module docstring)."""
    if capability >= (8, 0):
        return "bf16"
    if capability >= (7, 0) or capability == (6, 0):
        return "fp16"
    return "none"


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 natively (a GPU of compute capability 8.0 or more; a CPU with
    AMX or AVX-512 BF16)."""
    if device.type == "cuda":
        return cuda_capability(device) >= (8, 0)
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def describe_device(device: torch.device) -> str:
    """``NVIDIA H100 80GB HBM3 (cuda:0, compute capability 9.0)``, the CPU's description, or the device."""
    if device.type == "cuda":
        index = cuda_index(device)
        major, minor = cuda_capability(device)
        return f"{torch.cuda.get_device_name(index)} (cuda:{index}, compute capability {major}.{minor})"
    if device.type == "cpu":
        return describe_cpu()
    return str(device)


_SAID: set[tuple[str, ...]] = set()


def _auto_amp(device: torch.device) -> tuple[str, str]:
    """``--amp auto`` on ``device``, and why (for the report line)."""
    if device.type == "cuda":
        major, minor = cuda_capability(device)
        chosen = cuda_auto_amp((major, minor))
        why = {"bf16": "bf16 units", "fp16": "fp16 units, no bf16 units",
               "none": "no fast fp16 nor bf16 units"}[chosen]
        return chosen, f"{why} at compute capability {major}.{minor}"
    chosen = "bf16" if native_bf16(device) else "none"
    return chosen, "native bf16" if chosen == "bf16" else "no native bf16"


def resolve_amp(amp: str, device: torch.device) -> str:
    """The precision to use: ``auto`` becomes the table of the module docstring (``bf16``, ``fp16`` or
    ``none``), said once per process with the device's name and compute capability.

    An explicit ``bf16`` on a CPU without bf16 units or a GPU below compute capability 8.0 is kept but
    warned about; ``fp16`` off CUDA falls back to ``none`` with a warning (CPU fp16 autocast is slower
    than fp32).

    Raises:
        ConfigError: for an unknown value.
    """
    if amp not in AMPS:
        raise ConfigError(f"amp must be one of {', '.join(AMPS)}, got {amp!r}")
    if amp == "auto":
        chosen, why = _auto_amp(device)
        line = ("precision: %s on %s (--amp auto: %s)", describe_precision(device, chosen, training=False),
                describe_device(device), why)
        if line not in _SAID:  # once per process, not once per scene or model
            _SAID.add(line)
            report(*line)
        return chosen
    if amp == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        log.warning("--amp bf16 on %s: this CPU has no bf16 units, so bf16 is emulated and much slower than "
                    "fp32 (measured 30 s against 1.6 s per pix2pix step on an AVX2-only AMD EPYC); "
                    "use --amp auto or none", describe_cpu())
    if amp == "bf16" and device.type == "cuda" and not native_bf16(device):
        log.warning("--amp bf16 on %s: GPUs below compute capability 8.0 have no bf16 units, so bf16 is "
                    "emulated and slow; use --amp auto (fp16 where the GPU has fast fp16) or none",
                    describe_device(device))
    if amp == "fp16" and device.type != "cuda":
        log.warning("--amp fp16 needs CUDA; running in fp32 on %s", device)
        return "none"
    return amp


def describe_precision(device: torch.device, amp: str, training: bool = True) -> str:
    """What a resolved ``amp`` runs on ``device``, for logs and provenance (checkpoints, run pages,
    ``evaluate.json``): ``bf16 autocast``, ``fp16 autocast + GradScaler``, ``fp32 (TF32 matmul/conv)``,
    ``fp32 (TF32 conv)``, ``fp32``. TF32 is named where CUDA's flags let cuDNN or cuBLAS use it (cuDNN
    convolutions default to TF32 on GPUs of compute capability 8.0 or more).

    Args:
        device: the device the network runs on.
        amp: a resolved precision (``none``, ``bf16``, ``fp16``, ``int8``).
        training: whether it describes training (fp16 on CUDA then scales the loss: ``+ GradScaler``).
    """
    if amp == "bf16":
        return "bf16 autocast"
    if amp == "fp16":
        return "fp16 autocast + GradScaler" if training and device.type == "cuda" else "fp16 autocast"
    if amp == "int8":
        return "int8"
    if device.type != "cuda":
        return "fp32"
    tf32 = [name for name, on in (("matmul", torch.backends.cuda.matmul.allow_tf32),
                                  ("conv", torch.backends.cudnn.allow_tf32)) if on]
    if tf32 and cuda_capability(device) >= (8, 0):
        return f"fp32 (TF32 {'/'.join(tf32)})"
    return "fp32 (TF32 off)" if cuda_capability(device) >= (8, 0) else "fp32"


@contextlib.contextmanager
def tf32_disabled() -> Iterator[None]:
    """Within the block, CUDA's matmuls and cuDNN convolutions run in full fp32 (no TF32); both flags
    are restored afterwards, also when the block raises. For metric networks (FID, LPIPS), whose
    scores TF32 moves by about 1e-3."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a resolved ``amp`` (``none`` → no autocast)."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)
