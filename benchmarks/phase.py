"""Benchmark: each transposed convolution of the paper's U-Net, as ConvTranspose2d and in the phase form.

The pix2pix U-Net 256's eight decoder layers (``ConvTranspose2d(k=4, s=2, p=1)``, BatchNorm folded, so
with bias) at the scenes' batch of 8, each as it is and as :class:`p2ptools.model.nets.phase.PhaseConvTranspose2d`
(one 2×2 convolution with 4·C_out outputs, depth-to-space, a crop), in the engines that run them:
torch fp32 and bf16 (channels-last, as whole scenes run), ONNX Runtime fp32 (each layer exported alone)
and, in the phase form only, ONNX Runtime int8 (static QDQ, per-channel weights). Milliseconds are the
fastest of ``--repeats`` calls; GFLOP/s count the transposed convolution's multiply-adds (2 × C_in ×
C_out × 16 × H × W per image) for both forms, so the columns compare times.

``--encoder`` adds the eight 4×4 stride-2 encoder convolutions (torch fp32/bf16, ONNX Runtime
fp32/int8): with them the table is the whole network's convolutions, layer by layer.

Usage: ``python benchmarks/phase.py [--repeats 5] [--encoder] [--out bench-out]``
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, print_machine  # noqa: E402
from peak import _best  # noqa: E402

from p2ptools.model.nets.phase import PhaseConvTranspose2d  # noqa: E402

BATCH = 8


def unet_layers(ngf: int = 64, num_downs: int = 8, size: int = 256) -> list[tuple[str, int, int, int]]:
    """(name, C_in, C_out, input side) of the U-Net's transposed convolutions, innermost first."""
    chans = [ngf * min(2**i, 8) for i in range(num_downs)]
    layers = []
    for k, i in enumerate(reversed(range(num_downs))):
        c_in = chans[i] if i == num_downs - 1 else chans[i] * 2
        c_out = 3 if i == 0 else chans[i - 1]
        layers.append((f"up{k}", c_in, c_out, size >> (i + 1)))
    return layers


def encoder_layers(ngf: int = 64, num_downs: int = 8, size: int = 256) -> list[tuple[str, int, int, int]]:
    """(name, C_in, C_out, input side) of the U-Net's 4×4 stride-2 convolutions, outermost first."""
    chans = [ngf * min(2**i, 8) for i in range(num_downs)]
    return [(f"down{i}", 3 if i == 0 else chans[i - 1], c, size >> i) for i, c in enumerate(chans)]


def measure_encoder_layer(c_in: int, c_out: int, side: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of one encoder convolution in torch fp32 and bf16 (channels-last) and ONNX Runtime fp32 and int8."""
    torch.manual_seed(0)
    conv = nn.Conv2d(c_in, c_out, 4, 2, 1).eval()
    x = torch.randn(BATCH, c_in, side, side)
    flop = 2.0 * BATCH * c_in * c_out * 16 * (side // 2) ** 2
    row: dict[str, float] = {"gflop": round(flop / 1e9, 2)}
    xc, mc = x.contiguous(memory_format=torch.channels_last), copy.deepcopy(conv).to(memory_format=torch.channels_last)
    with torch.no_grad():
        row["torch_fp32"] = _best(lambda: mc(xc), flop, repeats)
        with torch.autocast("cpu", torch.bfloat16):
            row["torch_bf16"] = _best(lambda: mc(xc), flop, repeats)
    with tempfile.TemporaryDirectory() as tmp:
        for int8 in (False, True):
            sess = _ort_session(conv, x, int8, Path(tmp))
            row[f"ort_{'int8' if int8 else 'fp32'}"] = _best(lambda sess=sess: sess.run(None, {"input": x.numpy()}),
                                                            flop, repeats)
    return row


def _ort_session(module: nn.Module, x: torch.Tensor, int8: bool, tmp: Path) -> object:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    path = tmp / "layer.onnx"
    torch.onnx.export(module, (x,), str(path), input_names=["input"], output_names=["output"], dynamo=False,
                      opset_version=17)
    if int8:
        data = [{"input": x.numpy()}]

        class Reader(CalibrationDataReader):
            def get_next(self) -> dict[str, np.ndarray] | None:
                return data.pop() if data else None

        quantize_static(str(path), str(tmp / "layer.int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        path = tmp / "layer.int8.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def measure_layer(c_in: int, c_out: int, side: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of one layer per engine and form."""
    torch.manual_seed(0)
    ct = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1).eval()
    ph = PhaseConvTranspose2d(ct).eval()
    x = torch.randn(BATCH, c_in, side, side)
    flop = 2.0 * BATCH * c_in * c_out * 16 * side * side
    row: dict[str, float] = {"gflop": round(flop / 1e9, 2)}
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for form, m in (("convT", ct), ("phase", ph)):
            mc = copy.deepcopy(m).to(memory_format=torch.channels_last)
            row[f"torch_fp32_{form}"] = _best(lambda mc=mc: mc(xc), flop, repeats)
            with torch.autocast("cpu", torch.bfloat16):
                row[f"torch_bf16_{form}"] = _best(lambda mc=mc: mc(xc), flop, repeats)
    xn = x.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        for form, m, int8 in (("convT", ct, False), ("phase", ph, False), ("phase", ph, True)):
            sess = _ort_session(m, x, int8, Path(tmp))
            key = f"ort_{'int8' if int8 else 'fp32'}_{form}"
            row[key] = _best(lambda sess=sess: sess.run(None, {"input": xn}), flop, repeats)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--encoder", action="store_true", help="also the encoder's convolutions (the rest of the network)")
    args = ap.parse_args()
    print_machine()
    rows = []
    for name, c_in, c_out, side in unet_layers():
        row = {"layer": name, "shape": f"{c_in}→{c_out} {side}²→{2 * side}²",
               **{k: round(v, 2) for k, v in measure_layer(c_in, c_out, side, args.repeats).items()}}
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)
    gflop = table["gflop"].sum()
    total = {"layer": "all", "shape": "", "gflop": round(gflop, 2)}
    for col in table.columns[3:]:  # time-weighted: all layers' FLOP over the sum of their times
        total[col] = round(gflop / (table["gflop"] / table[col]).sum(), 1)
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "phase_layers.csv", index=False)
    print("\nGFLOP/s per layer (the transposed convolution's FLOP for both forms; batch 8)")
    print(table.to_string(index=False))
    if args.encoder:
        enc = pd.DataFrame([{"layer": name, "shape": f"{ci}→{co} {side}²→{side // 2}²",
                             **{k: round(v, 2) for k, v in measure_encoder_layer(ci, co, side, args.repeats).items()}}
                            for name, ci, co, side in encoder_layers()])
        enc.to_csv(args.out / "encoder_layers.csv", index=False)
        print("\nGFLOP/s per encoder layer (4×4 stride-2 convolutions; batch 8)")
        print(enc.to_string(index=False))


if __name__ == "__main__":
    main()
