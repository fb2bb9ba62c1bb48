"""The int8 engine's graph: the generator in the phase form, BatchNorm folded, exported to ONNX and
quantized statically by ONNX Runtime, calibrated on the run's own tiles.

* **Graph.** A copy of the generator in eval mode with BatchNorm folded and every ``ConvTranspose2d(k=4,
  s=2, p=1)`` in the phase form (:mod:`p2ptools.model.nets.phase`: a plain 2×2 convolution, which
  ONNX Runtime runs as a fused int8 QLinearConv), exported by :func:`p2ptools.model.export.onnx_graph`.
* **Quantization.** ``onnxruntime.quantization.quantize_static``: weights int8 per output channel
  (symmetric), activations uint8 per tensor (asymmetric), min/max calibration, :data:`QUANT_FORMAT`.
* **Calibration.** The first :data:`CALIBRATION_TILES` (32) input halves of the run's dataset
  (``train_config.dataset`` in the checkpoint): its ``val/`` tiles sorted by name, topped up from
  ``train/`` sorted by name when ``val/`` has fewer; resized to the model's size as prediction reads
  them. One log line says which and how many. No tiles (the dataset moved or is gone): refused in one
  line, since an int8 graph calibrated on something else would not be the run's.
* **Cache.** The ONNX Runtime engine's cache (:mod:`p2ptools.inference.onnx_cache`): the key is the
  phase-form generator's tensors and modules, and an exporter string that adds the quantization
  settings, ONNX Runtime's version, this module's source and the calibration tiles' SHA-256. A second
  run of the same network on the same tiles reads the int8 graph instead of calibrating again.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from p2ptools.errors import ConfigError, P2PError
from p2ptools.runtime.progress import report

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

#: how many tiles calibrate the activations' ranges
CALIBRATION_TILES = 32
#: tiles per calibration batch
CALIBRATION_BATCH = 8
#: ``QDQ`` (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into QLinearConv) or ``QOperator``
QUANT_FORMAT = "QDQ"


def _split_inputs(root: Path, split: str, meta: dict[str, Any], size: int, count: int) -> list[np.ndarray]:
    """Up to ``count`` input halves of ``root/split`` sorted by name, ``(C, size, size)`` float32 in [-1, 1]."""
    from p2ptools.model.tensors import resize_square, to_tensor
    from p2ptools.prep.bands import half_specs, is_tif_split, read_tif, tif_pairs
    from p2ptools.prep.dataset import has_images, list_split, read_ab

    folder = root / split
    direction = meta["train_config"].get("direction", "AtoB")
    if is_tif_split(folder):
        specs = half_specs((meta.get("dataset") or {}).get("contract") or {})
        src = "A" if direction == "AtoB" else "B"
        out = []
        for a, b in tif_pairs(folder)[:count]:
            path = a if src == "A" else b
            x = resize_square(specs[src].encode(read_tif(path)[0], str(path)), size)
            out.append(np.ascontiguousarray(np.atleast_3d(x).transpose(2, 0, 1), dtype=np.float32))
        return out
    if not has_images(folder):
        return []
    return [to_tensor(resize_square(read_ab(p, direction)[0], size)).numpy()
            for p in list_split(root, split)[:count]]


def calibration_tiles(meta: dict[str, Any], size: int, count: int = CALIBRATION_TILES) -> tuple[np.ndarray, str]:
    """The calibration inputs ``(N, C, size, size)`` float32 and a line saying which they are.

    Raises:
        ConfigError: the run's dataset has no val/ or train/ tiles here.
    """
    root = Path(str(meta["train_config"].get("dataset", "")))
    taken: list[tuple[str, int]] = []
    tiles: list[np.ndarray] = []
    try:
        for split in ("val", "train"):
            got = _split_inputs(root, split, meta, size, count - len(tiles))
            if got:
                taken.append((split, len(got)))
                tiles += got
            if len(tiles) >= count:
                break
    except P2PError as exc:
        raise ConfigError(f"--amp int8 calibrates on the run's own tiles, and {root} cannot be read: {exc}") from exc
    if not tiles:
        raise ConfigError(f"--amp int8 calibrates on the run's own tiles: {root} (the run's dataset) has no val/ or "
                          "train/ tiles here; put the dataset back there, or use --amp none")
    x = np.stack(tiles)
    digest = hashlib.sha256(x.tobytes()).hexdigest()
    said = (f"int8: calibrating on {len(tiles)} tiles of {root}: "
            + " and ".join(f"the first {n} of {s}/" for s, n in taken)
            + f", sorted by name, at {size} px (SHA-256 {digest[:12]})")
    return x, said


def _quantize(graph: bytes, tiles: np.ndarray) -> bytes:
    """``graph`` statically quantized on ``tiles`` (see the module)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [{"input": tiles[i : i + CALIBRATION_BATCH]} for i in range(0, len(tiles), CALIBRATION_BATCH)]

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return batches.pop(0) if batches else None

    with tempfile.TemporaryDirectory(prefix="p2ptools-int8-") as tmp:
        prepared, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        try:  # ONNX shape inference and ONNX Runtime's graph optimisations (the symbolic one cannot follow
            # the dynamic sizes through DepthToSpace), then the quantizer
            quant_pre_process(onnx.load_from_string(graph), prepared, skip_symbolic_shape=True)
            quantize_static(prepared, out, Reader(), quant_format=QuantFormat[QUANT_FORMAT],
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        except Exception as exc:  # the quantizer raises bare Exceptions: one line, not a traceback
            raise ConfigError(f"--amp int8: ONNX Runtime could not quantize this network ({exc}); use --amp none"
                              ) from exc
        return out.read_bytes()


def quantizer_version() -> str:
    """What the int8 graph depends on besides the network and the tiles: the exporter, ONNX Runtime,
    the settings and this module's source."""
    import onnxruntime

    from p2ptools.model.export import OPSET, exporter_version

    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return (f"{exporter_version(OPSET)}; int8 {QUANT_FORMAT} per-channel s8 weights, u8 activations, minmax; "
            f"onnxruntime {onnxruntime.__version__}; quantize.py {source}")


def phase_form_generator(G: nn.Module) -> nn.Module:
    """A copy of ``G`` on the CPU in eval mode, BatchNorm folded, transposed convolutions in the phase form."""
    from p2ptools.model.nets.phase import to_phase_form
    from p2ptools.model.tensors import folded_for_inference

    net = folded_for_inference(copy.deepcopy(G).cpu())
    to_phase_form(net)
    return net.eval()


def int8_graph(G: nn.Module, meta: dict[str, Any], in_channels: int, size: int) -> bytes:
    """The int8 ONNX graph of ``G`` calibrated on its run's tiles, from the cache or made now.

    Raises:
        ConfigError: no calibration tiles (see :func:`calibration_tiles`).
    """
    from p2ptools.inference.onnx_cache import cached_graph
    from p2ptools.model.export import onnx_graph

    tiles, said = calibration_tiles(meta, size)
    report("%s", said)
    net = phase_form_generator(G)
    digest = hashlib.sha256(tiles.tobytes()).hexdigest()
    return cached_graph(net, in_channels, size, f"{quantizer_version()}; calibration {digest}",
                        lambda: _quantize(onnx_graph(net, in_channels, size), tiles))
