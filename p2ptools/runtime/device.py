"""Devices and precision, shared by training, prediction and evaluation.

``--device auto`` picks CUDA, then Apple MPS, then the CPU. ``--amp auto`` picks bfloat16 autocast
only where the hardware runs it natively (CUDA GPUs with bf16 units; CPUs with AMX or AVX-512 BF16)
and full precision elsewhere: on a CPU with AVX2 only, bf16 autocast is emulated and was measured
at more than 30 s per pix2pix step against 1.6 s in fp32 (AMD EPYC, facades, batch 1).
"""

from __future__ import annotations

import contextlib
import logging
import platform
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


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 natively."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


_SAID: set[tuple[str, ...]] = set()


def resolve_amp(amp: str, device: torch.device) -> str:
    """The precision to use: ``auto`` becomes ``bf16`` where it is native and ``none`` elsewhere.

    An explicit ``bf16`` on a CPU without bf16 units is kept but warned about; ``fp16`` off CUDA
    falls back to ``none`` with a warning (CPU fp16 autocast is slower than fp32).

    Raises:
        ConfigError: for an unknown value.
    """
    if amp not in AMPS:
        raise ConfigError(f"amp must be one of {', '.join(AMPS)}, got {amp!r}")
    if amp == "auto":
        chosen = "bf16" if native_bf16(device) else "none"
        why = "native bf16" if chosen == "bf16" else "no native bf16"
        where = describe_cpu() if device.type == "cpu" else str(device)
        line = ("precision: %s on %s (--amp auto: %s)", "bf16 autocast" if chosen == "bf16" else "fp32", where, why)
        if line not in _SAID:  # once per process, not once per scene or model
            _SAID.add(line)
            report(*line)
        return chosen
    if amp == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        log.warning("--amp bf16 on %s: this CPU has no bf16 units, so bf16 is emulated and much slower than "
                    "fp32 (measured 30 s against 1.6 s per pix2pix step on an AVX2-only AMD EPYC); "
                    "use --amp auto or none", describe_cpu())
    if amp == "fp16" and device.type != "cuda":
        log.warning("--amp fp16 needs CUDA; running in fp32 on %s", device)
        return "none"
    return amp


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a resolved ``amp`` (``none`` → no autocast)."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)
