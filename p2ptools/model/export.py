"""Export a generator to ONNX, for runtimes without p2ptools (ONNX Runtime, OpenVINO, TensorRT, browsers).

The exported graph is the generator in eval mode with BatchNorm folded into the convolutions, with
dynamic batch, height and width (multiples of the network's ``multiple``: ``2**num_downs`` for
U-Nets, 4 for ResNets). Input ``input``: ``(N, C, H, W)`` float32 in [-1, 1] (``pixel / 127.5 - 1``),
as the network sees it; output ``output``: the same layout and range. The file's metadata carries
what a user needs to feed it: the normalisation, the direction, the multiple, the data contract
(palette, bands, ranges) and the model configuration as JSON. The export checks itself: ONNX Runtime
against torch on a random input, and the largest difference is reported.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from p2ptools import __version__
from p2ptools.errors import ConfigError, OutputError
from p2ptools.runtime import door
from p2ptools.runtime.output import atomic_write_bytes

log = logging.getLogger(__name__)

NORMALISATION = "input and output: (N, C, H, W) float32 in [-1, 1]; value = pixel / 127.5 - 1 (8-bit images)"
OPSET = 17
GRAPH_FORMAT = 1  # raise when onnx_graph makes a different graph of the same network


def exporter_version(opset: int = OPSET) -> str:
    """What :func:`onnx_graph`'s output depends on besides the network: the versions of p2ptools, torch
    and onnx, the opset and :data:`GRAPH_FORMAT` (the ONNX Runtime engine's cache keys on it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        onnx_version = version("onnx")
    except PackageNotFoundError:
        onnx_version = "none"
    return (f"p2ptools {__version__}; torch {torch.__version__}; onnx {onnx_version}; opset {opset}; "
            f"graph {GRAPH_FORMAT}")


@dataclass
class ExportReport:
    """What an export wrote and how well ONNX Runtime reproduces torch."""

    path: Path
    checkpoint: str
    multiple: int
    max_diff: float | None
    check_shape: tuple[int, ...]


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ConfigError("export needs the onnx package: pip install 'p2ptools[onnx]' (onnx, onnxruntime)") from None
    return onnx


def onnx_graph(G: torch.nn.Module, in_channels: int, size: int, opset: int = OPSET) -> bytes:
    """``G`` (already in eval mode, BatchNorm folded as wanted) as an ONNX model: input ``input`` and
    output ``output`` with dynamic batch, height and width, traced on one ``size``² example."""
    axes = {0: "batch", 2: "height", 3: "width"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the exporter's notes (legacy exporter, constant folding of reflection-pad slices, instance norm
        # exported in its train form, which is the same computation without running statistics) are not
        # the user's concern: callers measure the result
        warnings.simplefilter("ignore")
        torch.onnx.export(G, (torch.zeros(1, in_channels, size, size),), buf, dynamo=False, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": axes, "output": axes}, opset_version=opset)
    return buf.getvalue()


def written_by_export(path: Path) -> bool:
    """Whether ``path`` is an ONNX file this module wrote (its metadata names p2ptools' version)."""
    onnx = _require_onnx()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not an ONNX file (any parse error): not one of ours
        return False
    return any(p.key == "p2ptools_version" for p in model.metadata_props)


def check_export_target(out: Path, overwrite: bool) -> None:
    """``out`` may be written: a new file, or (``overwrite``) one an earlier export wrote.

    Raises:
        OutputError: for a link, a folder or a file p2ptools did not write (never replaced), or an earlier
            export without ``overwrite``.
    """
    door.refuse_link(out)
    if not out.exists():
        return
    if not out.is_file():
        raise OutputError(f"{out}: is not a file; name the exported .onnx file elsewhere")
    if not written_by_export(out):
        raise OutputError(f"{out}: exists and was not written by p2ptools export; p2ptools never replaces it: "
                          "choose another name, or move it away")
    if not overwrite:
        raise OutputError(f"{out}: exists (an earlier p2ptools export); use --overwrite to replace it, or another "
                          "name")


def export_onnx(run_or_ckpt: Path, out: Path, which: str = "latest", opset: int = OPSET, check: bool = True,
                overwrite: bool = False) -> ExportReport:
    """Write the generator of a run, checkpoint or official file as ONNX.

    Args:
        run_or_ckpt: a run folder, a checkpoint, or an official ``*_net_G.pth``.
        out: the ``.onnx`` file (written atomically).
        which: the checkpoint of a run folder.
        opset: the ONNX opset.
        check: run the file with ONNX Runtime and compare with torch (needs onnxruntime).
        overwrite: replace ``out`` when an earlier export wrote it (a file of anyone else never is).

    Returns:
        The report (max |ONNX Runtime − torch| when checked).

    Raises:
        ConfigError: without the onnx package, or for an output name that is not ``.onnx``.
        InputError: for an unreadable checkpoint.
        OutputError: ``out`` exists and is not an earlier export, or is one and ``overwrite`` is off.
    """
    from p2ptools.model.checkpoints import load_generator
    from p2ptools.model.tensors import folded_for_inference

    onnx = _require_onnx()
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"{out}: name the exported file .onnx")
    check_export_target(out, overwrite)
    G, mcfg, meta = load_generator(run_or_ckpt, which, "cpu")
    folded_for_inference(G)
    multiple = int(getattr(G, "multiple", 1))
    size = max(mcfg.image_size, multiple)
    model = onnx.load_from_string(onnx_graph(G, mcfg.in_channels, size, opset))
    info = {
        "p2ptools_version": __version__, "checkpoint": meta["path"],
        "direction": meta["train_config"].get("direction", "AtoB"), "normalisation": NORMALISATION,
        "multiple": str(multiple), "image_size": str(mcfg.image_size),
        "model_config": json.dumps(asdict(mcfg)),
        "data_contract": json.dumps((meta.get("dataset") or {}).get("contract")),
        "official": json.dumps(meta.get("official")),
    }
    for key, value in info.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    model.doc_string = f"p2ptools {mcfg.name} generator; {NORMALISATION}"
    check_export_target(out, overwrite)  # again: another command may have written it meanwhile
    atomic_write_bytes(out, model.SerializeToString())
    shape = (2, mcfg.in_channels, size, size)
    diff = _check(out, G, shape) if check else None
    return ExportReport(out, meta["path"], multiple, diff, shape)


def _check(path: Path, G: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """max |ONNX Runtime − torch| on a random input of ``shape`` (fp32 both)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("checking the export needs onnxruntime: pip install 'p2ptools[onnx]', or --no-check"
                          ) from None
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = session.run(None, {"input": x})[0]
    with torch.inference_mode():
        ref = G(torch.from_numpy(x)).numpy()
    return float(np.abs(y - ref).max())
