"""One interface for running a generator: ``engine(x) → y``, both ``(N, C, H, W)`` float32 in [-1, 1].

Prediction code (folders, GeoTIFF splits, whole scenes, many scenes) asks an engine for outputs;
which runtime computes them stays behind it:

* ``torch``: the network in PyTorch, with bf16/fp16 autocast when ``--amp`` asks for it (or ``auto``
  finds native bf16);
* ``onnxruntime``: the network exported to ONNX (:mod:`p2ptools.model.export`, BatchNorm folded)
  and run by ONNX Runtime in fp32 on the CPU; the export is cached by the generator's tensors and the
  exporter's versions in ``~/.cache/p2ptools/onnx`` (``$P2PTOOLS_CACHE/onnx``), verified against its
  SHA-256 before use, at most 8 entries and 1 GiB (:mod:`p2ptools.inference.onnx_cache`);
* ``auto``: torch on a GPU, and on a CPU whose bf16 is native (AMX, AVX-512 BF16: 1.74× torch fp32
  on a 2-core Zen 4, the network at 95 % of its bf16 peak), else ONNX Runtime fp32 where it is
  installed (2.3× torch fp32 per window on an AVX2-only EPYC; on the Zen 4 both fp32 engines run at
  the fp32 peak and tie), else torch fp32. It says what it chose (the model card has the table).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from p2ptools.errors import ConfigError
from p2ptools.runtime.device import autocast as device_autocast
from p2ptools.runtime.device import resolve_amp
from p2ptools.runtime.progress import report

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnxruntime")


class TorchEngine:
    """The generator in PyTorch, under the precision's autocast."""

    def __init__(self, G: nn.Module, dev: torch.device, amp: str, channels_last: bool = False) -> None:
        self.G, self.dev, self.amp = G, dev, amp
        self.autocast = device_autocast(dev, amp)
        self.channels_last = channels_last
        self.name = f"torch {amp if amp != 'none' else 'fp32'}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dev)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self.autocast:
            return self.G(x).float()  # (N, C, H, W) in [-1, 1]


class OnnxRuntimeEngine:
    """The generator exported to ONNX (BatchNorm folded) and run by ONNX Runtime in fp32 on the CPU."""

    def __init__(self, G: nn.Module, meta: dict[str, Any], in_channels: int, size: int) -> None:
        import onnxruntime as ort

        graph = _onnx_graph(G, in_channels, size)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        self.session = ort.InferenceSession(graph, sess_options=opts, providers=["CPUExecutionProvider"])
        self.name = "onnxruntime fp32"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {"input": arr})[0])  # (N, C, H, W) in [-1, 1]


def _onnx_graph(G: nn.Module, in_channels: int, size: int) -> bytes:
    """The ONNX graph of ``G`` (moved to the CPU, eval mode, BatchNorm folded), from the cache of
    :mod:`p2ptools.inference.onnx_cache` (keyed by its tensors and the exporter) or exported now."""
    from p2ptools.inference.onnx_cache import cached_graph
    from p2ptools.model.export import OPSET, exporter_version, onnx_graph

    G = G.cpu().eval()
    fold = getattr(G, "fold_batchnorm", None)
    if fold is not None and any(isinstance(m, nn.BatchNorm2d) for m in G.modules()):
        fold().eval()  # the Identity modules that replace BatchNorm are new, in train mode
    return cached_graph(G, in_channels, size, exporter_version(OPSET),
                        lambda: onnx_graph(G, in_channels, size, OPSET))


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def make_engine(G: nn.Module, meta: dict[str, Any], in_channels: int, size: int, dev: torch.device, engine: str,
                amp: str, channels_last: bool = False) -> TorchEngine | OnnxRuntimeEngine:
    """The engine asked for (``auto``: by device and precision, said in one line).

    Raises:
        ConfigError: an unknown engine, ``onnxruntime`` without the package or off the CPU, or with a
            precision other than fp32.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    # ONNX Runtime runs fp32: no torch precision to choose (nor a line about one)
    precision = "none" if engine == "onnxruntime" and amp in ("auto", "none") else resolve_amp(amp, dev)
    if engine == "auto":
        if dev.type != "cpu" or precision != "none" or not _has_onnxruntime():
            engine, why = "torch", ("a GPU" if dev.type != "cpu" else f"native {precision}" if precision != "none"
                                    else "ONNX Runtime not installed (pip install 'p2ptools[onnx]')")
        else:
            engine, why = "onnxruntime", "CPU without native bf16: ONNX Runtime fp32 is the fastest measured"
        report("engine: %s (--engine auto: %s)", engine if engine == "onnxruntime" else
               f"torch {precision if precision != 'none' else 'fp32'}", why)
    if engine == "onnxruntime":
        if dev.type != "cpu":
            raise ConfigError(f"--engine onnxruntime runs on the CPU; the device is {dev} (use --engine torch)")
        if precision != "none":
            raise ConfigError(f"--engine onnxruntime runs fp32; --amp {amp} is for --engine torch")
        if not _has_onnxruntime():
            raise ConfigError("--engine onnxruntime needs onnxruntime: pip install 'p2ptools[onnx]'")
        return OnnxRuntimeEngine(G, meta, in_channels, size)
    return TorchEngine(G, dev, precision, channels_last)


def prepared_generator(run_or_ckpt: Path, which: str, dev: torch.device) -> tuple[Any, Any, dict[str, Any]]:
    """The generator of a checkpoint ready for whole scenes (eval mode, BatchNorm folded into the
    convolutions, channels-last), its model config and checkpoint metadata; loaded once per process
    and checkpoint file version, so many scenes in one worker share it."""
    from p2ptools.model.checkpoints import resolve_checkpoint

    path = resolve_checkpoint(run_or_ckpt, which)
    st = path.stat()
    return _prepared(str(path.resolve()), st.st_mtime_ns, st.st_size, str(dev))


@functools.lru_cache(maxsize=2)
def _prepared(path: str, mtime_ns: int, size: int, device: str) -> tuple[Any, Any, dict[str, Any]]:
    dev = torch.device(device)
    from p2ptools.model.checkpoints import load_generator
    from p2ptools.model.tensors import set_inference_mode

    G, mcfg, meta = load_generator(Path(path), device=dev)
    set_inference_mode(G)
    if mcfg.g_norm == "instance":
        log.warning("%s: the generator uses instance normalisation, so each window is normalised by its own "
                    "statistics and neighbouring windows can differ in tone; the blending hides most of it, a "
                    "larger --overlap more", meta["path"])
    if hasattr(G, "fold_batchnorm"):
        G.fold_batchnorm()  # eval-mode BatchNorm is an affine map: fold it into the convolutions
    if dev.type in ("cpu", "cuda"):
        G = G.to(memory_format=torch.channels_last)
    return G, mcfg, meta
