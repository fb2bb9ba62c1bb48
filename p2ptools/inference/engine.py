"""One interface for running a generator: ``engine(x) → y``, both ``(N, C, H, W)`` float32 in [-1, 1].

Prediction code (folders, GeoTIFF splits, whole scenes, many scenes) asks an engine for outputs;
which runtime computes them stays behind it:

* ``torch``: the network in PyTorch, with bf16/fp16 autocast when ``--amp`` asks for it (or ``auto``
  finds native bf16); on the CPU its transposed convolutions run in the phase form
  (:mod:`p2ptools.model.nets.phase`), measured faster there (the paper's U-Net per window on a 2-core
  Sapphire Rapids Xeon: fp32 60.8 → 58.4 ms, bf16 19.5 → 16.7 ms);
* ``onnxruntime``: the network exported to ONNX (:mod:`p2ptools.model.export`, BatchNorm folded,
  transposed convolutions as they are: the phase form measured no faster in ONNX Runtime fp32)
  and run by ONNX Runtime in fp32 on the CPU; the export is cached by the generator's tensors and the
  exporter's versions in ``~/.cache/p2ptools/onnx`` (``$P2PTOOLS_CACHE/onnx``), verified against its
  SHA-256 before use, at most 8 entries and 1 GiB (:mod:`p2ptools.inference.onnx_cache`);
* ``onnxruntime-int8`` (``--amp int8``): the phase-form graph statically quantized by ONNX Runtime,
  calibrated on the run's own tiles and cached the same way (:mod:`p2ptools.inference.quantize`);
  never chosen by ``auto`` on its own, since it changes the pixels (54 dB PSNR against fp32 measured);
* ``auto``: torch on a GPU, and on a CPU whose bf16 is native (AMX, AVX-512 BF16: 1.74× torch fp32
  on a 2-core Zen 4, 2.3× on a 2-core Sapphire Rapids), else ONNX Runtime fp32 where it is installed
  (2.3× torch fp32 per window on an AVX2-only EPYC; they tie on both CPUs above), else torch fp32. It
  says what it chose. How close each comes to the CPU's peak is measured, not reckoned, in the model
  card's table (``benchmarks/predict_scene.py --engines`` measures the peak in the same run): the
  network runs at 58–64 % of the measured fp32 peak in fp32 and at 27–28 % of the bf16 and int8 peaks.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from p2ptools.errors import ConfigError
from p2ptools.runtime.progress import report

if TYPE_CHECKING:  # torch is imported where an engine is built, so the CLI's --help need not load it
    import torch
    from torch import nn

log = logging.getLogger(__name__)

class TorchEngine:
    """The generator in PyTorch, under the precision's autocast."""

    def __init__(self, G: nn.Module, dev: torch.device, amp: str, channels_last: bool = False) -> None:
        import torch

        if dev.type == "cpu":  # the phase form of the transposed convolutions: measured faster on the CPU
            from p2ptools.model.nets.phase import to_phase_form  # (fp32 4 %, bf16 17 %: the model card)

            if to_phase_form(G) and channels_last:
                G.to(memory_format=torch.channels_last)
        self.G, self.dev, self.amp = G, dev, amp
        from p2ptools.runtime.device import autocast

        self.autocast = autocast(dev, amp)
        self.channels_last = channels_last
        self.name = f"torch {amp if amp != 'none' else 'fp32'}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        x = x.to(self.dev, non_blocking=x.is_pinned())  # pinned by the scene reader on CUDA
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self.autocast:
            return self.G(x).float()  # (N, C, H, W) in [-1, 1]


class OnnxRuntimeEngine:
    """The generator exported to ONNX (BatchNorm folded) and run by ONNX Runtime on the CPU: fp32, or the
    ``graph`` given (the int8 graph of :mod:`p2ptools.inference.quantize`)."""

    def __init__(self, G: nn.Module, meta: dict[str, Any], in_channels: int, size: int, graph: bytes | None = None,
                 name: str = "onnxruntime fp32") -> None:
        import onnxruntime as ort

        graph = _onnx_graph(G, in_channels, size) if graph is None else graph
        opts = ort.SessionOptions()
        import torch

        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        self.session = ort.InferenceSession(graph, sess_options=opts, providers=["CPUExecutionProvider"])
        self.name = name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {"input": arr})[0])  # (N, C, H, W) in [-1, 1]


def _onnx_graph(G: nn.Module, in_channels: int, size: int) -> bytes:
    """The ONNX graph of ``G`` (moved to the CPU, eval mode, BatchNorm folded), from the cache of
    :mod:`p2ptools.inference.onnx_cache` (keyed by its tensors and the exporter) or exported now."""
    from p2ptools.inference.onnx_cache import cached_graph
    from p2ptools.model.export import OPSET, exporter_version, onnx_graph
    from p2ptools.model.tensors import folded_for_inference

    G = folded_for_inference(G.cpu())
    return cached_graph(G, in_channels, size, exporter_version(OPSET),
                        lambda: onnx_graph(G, in_channels, size, OPSET))


def _onnxruntime_missing() -> str | None:
    """None when ONNX Runtime can be imported, else what to install."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "ONNX Runtime is not installed (pip install 'p2ptools[onnx]')"
    return None


def _quantizer_missing() -> str | None:
    """None when ONNX Runtime and onnx (its quantizer reads and writes ONNX models) are installed: looked
    up, not imported (importing onnx took 0.8 s of every int8 start-up, where the graph is cached)."""
    from importlib.util import find_spec

    if _onnxruntime_missing() is not None or find_spec("onnx") is None \
            or find_spec("onnxruntime.quantization") is None:
        return "--amp int8 needs ONNX Runtime and onnx (pip install 'p2ptools[onnx]')"
    return None


@dataclass(frozen=True)
class EngineRequest:
    """What a prediction path asks of an engine.

    Args:
        in_channels: the generator's input channels.
        size: the window size it runs at (for exports traced at a size).
        device: where the network runs.
        amp: the ``--amp`` asked for (a name of :data:`p2ptools.runtime.precisions.PRECISIONS`).
        training_layers: dropout or BatchNorm batch statistics kept in training mode (``--dropout on``,
            ``--batch-stats on``): only an engine that runs the torch module as it is keeps them.
        channels_last: run torch in channels-last memory (whole scenes).
    """

    in_channels: int
    size: int
    device: torch.device
    amp: str = "auto"
    training_layers: bool = False
    channels_last: bool = False


#: an engine: ``(N, C, H, W)`` float32 in [-1, 1] → the same
Engine = Callable[["torch.Tensor"], "torch.Tensor"]


@dataclass(frozen=True)
class EngineSpec:
    """One engine of the registry: everything the CLI's choices, ``auto`` and the refusals read.

    Args:
        name: the ``--engine`` value.
        help: a few words for the CLI's help.
        devices: device types it runs on.
        precisions: the resolved precisions it runs (``none`` is fp32).
        training_layers: whether it keeps training-mode layers (dropout, batch statistics).
        auto: whether ``--engine auto`` may pick it (never an engine that changes the pixels).
        missing: None when it can run here, else what to install.
        build: ``(G, meta, request, precision) → engine``.
    """

    name: str
    help: str
    devices: tuple[str, ...]
    precisions: tuple[str, ...]
    training_layers: bool
    auto: bool
    missing: Callable[[], str | None]
    build: Callable[[nn.Module, dict[str, Any], EngineRequest, str], Engine]


def _torch(G: nn.Module, meta: dict[str, Any], req: EngineRequest, precision: str) -> Engine:
    return TorchEngine(G, req.device, precision, req.channels_last)


def _onnxruntime(G: nn.Module, meta: dict[str, Any], req: EngineRequest, precision: str) -> Engine:
    return OnnxRuntimeEngine(G, meta, req.in_channels, req.size)


def _onnxruntime_int8(G: nn.Module, meta: dict[str, Any], req: EngineRequest, precision: str) -> Engine:
    from p2ptools.inference.quantize import int8_graph

    graph = int8_graph(G, meta, req.in_channels, req.size)
    return OnnxRuntimeEngine(G, meta, req.in_channels, req.size, graph, "onnxruntime int8")


#: the engines, in the order ``auto`` prefers them where each can run (ONNX Runtime fp32 first: 2.3×
#: torch fp32 per window on an AVX2-only EPYC; on a GPU or with native bf16 only torch qualifies)
ENGINES: dict[str, EngineSpec] = {
    e.name: e
    for e in (
        EngineSpec("onnxruntime", "ONNX Runtime, fp32 on the CPU (pip install 'p2ptools[onnx]')", ("cpu",),
                   ("none",), training_layers=False, auto=True, missing=_onnxruntime_missing, build=_onnxruntime),
        EngineSpec("torch", "the network in PyTorch, at --amp", ("cpu", "cuda", "mps"), ("none", "bf16", "fp16"),
                   training_layers=True, auto=True, missing=lambda: None, build=_torch),
        EngineSpec("onnxruntime-int8", "ONNX Runtime, int8 on the CPU (--amp int8): statically quantized, "
                   "calibrated on 32 of the run's own tiles", ("cpu",), ("int8",), training_layers=False, auto=False,
                   missing=_quantizer_missing, build=_onnxruntime_int8),
    )
}
#: the ``--engine`` values
ENGINE_CHOICES: tuple[str, ...] = ("auto", *ENGINES)


def _precision(spec: EngineSpec | None, req: EngineRequest) -> str:
    """The precision to run: ``--amp auto`` on an engine of one precision is that one, said nowhere."""
    if spec is not None and len(spec.precisions) == 1 and req.amp in ("auto", spec.precisions[0]):
        return spec.precisions[0]
    from p2ptools.runtime.device import resolve_amp

    return resolve_amp(req.amp, req.device)


def _shown(precision: str) -> str:
    return "fp32" if precision == "none" else precision


def _instead(precision: str, device: str, training_layers: bool) -> str:
    """What to use instead: the registry's engines that run ``precision`` on ``device`` (keeping training-mode
    layers where asked), or what cannot be had."""
    able = [e.name for e in ENGINES.values() if precision in e.precisions and device in e.devices
            and (e.training_layers or not training_layers)]
    if able:
        return f"use --engine {' or --engine '.join(able)}"
    if training_layers:
        return f"{_shown(precision)} cannot keep them: use --amp none or bf16"
    where = sorted({d for e in ENGINES.values() if precision in e.precisions for d in e.devices})
    return f"{_shown(precision)} runs on {'/'.join(where)} only"


def _refusal(spec: EngineSpec, req: EngineRequest, precision: str) -> str | None:
    """Why ``spec`` cannot serve ``req`` (one line, saying what to use instead), or None."""
    if req.training_layers and not spec.training_layers:
        return (f"--dropout on and --batch-stats on run the network in training mode, which --engine {spec.name} "
                f"cannot keep: {_instead(precision, req.device.type, True)}")
    if req.device.type not in spec.devices:
        return (f"--engine {spec.name} runs on {'/'.join(spec.devices)}; the device is {req.device} "
                f"({_instead(precision, req.device.type, req.training_layers)})")
    if precision not in spec.precisions:
        able = [e.name for e in ENGINES.values() if precision in e.precisions]
        return (f"--engine {spec.name} runs {', '.join(_shown(p) for p in spec.precisions)}; --amp {req.amp} is "
                f"for --engine {' or --engine '.join(able)}")
    return spec.missing()


def _choose(req: EngineRequest) -> tuple[EngineSpec, str]:
    """``--engine auto``: the first engine of the registry that qualifies, said in one line. An engine that
    ``auto`` never picks on its own (int8) qualifies only when ``--amp`` names its one precision."""
    from p2ptools.runtime.device import resolve_amp

    precision = resolve_amp(req.amp, req.device)
    refused: list[str] = []
    for spec in ENGINES.values():
        asked = spec.precisions == (precision,) and req.amp == precision
        why_not = _refusal(spec, req, precision) if spec.auto or asked else "not chosen by auto"
        if why_not is None:
            break
        refused.append(why_not)
    else:  # torch serves every precision but an engine's own (int8): that engine's refusal is the one to say
        raise ConfigError(next((r for r in reversed(refused) if r != "not chosen by auto"), "no engine can run here"))
    if not spec.auto:
        why = f"--amp {req.amp}"
    elif req.device.type != "cpu":
        why = "a GPU"
    elif req.training_layers:
        why = "training-mode layers kept"
    elif precision != "none":
        why = f"native {precision}"
    else:  # the preferred engine is not installed, or this is it
        why = refused[0] if refused else "CPU without native bf16: ONNX Runtime fp32 is the fastest measured"
    shown = f"torch {_shown(precision)}" if spec.name == "torch" else spec.name
    report("engine: %s (--engine auto: %s)", shown, why)
    return spec, precision


def make_engine(G: nn.Module, meta: dict[str, Any], req: EngineRequest, engine: str = "auto") -> Engine:
    """The engine asked for (``auto``: the registry's first that can serve ``req``, said in one line).

    Every prediction path (folders, GeoTIFF tile splits, whole scenes, many scenes) gets its engine
    here, so the refusals below hold on all of them.

    Raises:
        ConfigError: an unknown engine, or one that cannot serve ``req`` here (training-mode layers,
            the device, the precision, a package missing), in one line.
    """
    if engine == "auto":
        spec, precision = _choose(req)
    elif engine in ENGINES:
        spec = ENGINES[engine]
        precision = _precision(spec, req)
        why = _refusal(spec, req, precision)
        if why is not None:
            raise ConfigError(why if why.startswith("--") else f"--engine {engine}: {why}")
    else:
        raise ConfigError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINE_CHOICES)}")
    return spec.build(G, meta, req, precision)


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
    import torch

    dev = torch.device(device)
    from p2ptools.model.checkpoints import load_generator
    from p2ptools.model.tensors import folded_for_inference

    G, mcfg, meta = load_generator(Path(path), device=dev)
    folded_for_inference(G)  # eval-mode BatchNorm is an affine map: folded into the convolutions
    if mcfg.g_norm == "instance":
        log.warning("%s: the generator uses instance normalisation, so each window is normalised by its own "
                    "statistics and neighbouring windows can differ in tone; the blending hides most of it, a "
                    "larger --overlap more", meta["path"])
    if dev.type in ("cpu", "cuda"):
        G = G.to(memory_format=torch.channels_last)
    return G, mcfg, meta
