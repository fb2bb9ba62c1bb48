"""Benchmark: whole-scene prediction with the paper's U-Net 256 on CPU, against a naive stitch.

Input: label GeoTIFFs of 5000² and 20000² (the derived building masks of ``tile.py``'s mirrored
mosaic of rasterio's real ``cogeo.tif`` photo). Model: the ``pix2pix`` preset's generator (54 M
parameters) with random weights in a real checkpoint — speed does not depend on the weights.
Each run is a fresh ``p2ptools predict`` process; the table gives MPix/s (scene pixels / wall
seconds, start-up included) and the peak memory of the process (PSS).

* blended: 64-px overlap (a quarter of the tile), Hann weights — the default;
* naive stitch: no overlap, each pixel from one tile (``--blend none --overlap 0``), the baseline.

Both in fp32 and with ``--amp bf16``. The 20000² scene is run blended in bf16 only, to show that
memory stays flat while the scene grows 16×.

``--engines``: the same blended scene per engine and precision instead — torch fp32 (the baseline),
torch bf16, ONNX Runtime fp32 — with each one's MPix/s, its ratio to torch fp32 in the same run, and
the GFLOP/s the network reaches (12.1 GFLOP per 256² window of the paper's U-Net, counted by
:func:`unet_gflop`) against the CPU's peak when given (``--peak-gflops``).

Usage: ``python benchmarks/predict_scene.py [--sizes 5000 20000] [--out bench-out]``
       ``python benchmarks/predict_scene.py --engines --sizes 4096 [--peak-gflops 300]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, build_mirrored_scene, print_machine, run_measured  # noqa: E402

from p2ptools.config import ModelConfig, TrainConfig  # noqa: E402
from p2ptools.pix2pix.checkpoints import RunState, save_checkpoint  # noqa: E402
from p2ptools.pix2pix.train import build_models  # noqa: E402


def make_checkpoint(out: Path) -> Path:
    path = out / "unet256-random.pt"
    if not path.exists():
        torch.manual_seed(0)
        mcfg, tcfg = ModelConfig(), TrainConfig(dataset=out, out=out)
        save_checkpoint(path, build_models(mcfg, tcfg, torch.device("cpu")), RunState(), mcfg, tcfg)
    return path


def unet_gflop(size: int = 256) -> float:
    """GFLOP (2 × multiply-adds) of one forward pass of the paper's U-Net on a ``size``² window."""
    from torch.utils.flop_counter import FlopCounterMode

    from p2ptools.pix2pix.nets import UNetGenerator

    g = UNetGenerator().eval()
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        g(torch.zeros(1, 3, size, size))
    return fc.get_total_flops() / 1e9


def windows(size: int, tile: int = 256, overlap: int = 64) -> int:
    """Windows a blended scene of ``size``² takes (the scene mirrored by a quarter tile on each side)."""
    padded, step = size + 2 * (tile // 4), tile - overlap
    per_axis = -(-(padded - tile) // step) + 1
    return per_axis * per_axis


def engines(args: argparse.Namespace, ckpt: Path) -> None:
    """The engine table: one blended scene per engine and precision, ratios to torch fp32."""
    gflop = unet_gflop()
    rows = []
    for size in args.sizes:
        _, labels = build_mirrored_scene(SHARED / "rasterio" / "cogeo.tif", size, args.out / f"scene{size}")
        for engine, amp in (("torch", "none"), ("torch", "bf16"), ("onnxruntime", "none")):
            out = args.out / f"engine{size}.tif"
            cmd = [sys.executable, "-m", "p2ptools", "-q", "predict", str(ckpt), str(labels), str(out),
                   "--palette", "inria", "--amp", amp, "--engine", engine]
            run_measured(cmd) if engine == "onnxruntime" else None  # the first run exports the ONNX file (cached)
            wall, mem, _ = run_measured(cmd)
            n = windows(size)
            rows.append(dict(scene=f"{size}²", engine=engine, precision="fp32" if amp == "none" else amp,
                             seconds=round(wall, 1), mpix_per_s=round(size * size / 1e6 / wall, 3),
                             network_gflops=round(n * gflop / wall, 1), peak_mem_mb=round(mem)))
            if args.peak_gflops:
                rows[-1]["of_peak"] = f"{rows[-1]['network_gflops'] / args.peak_gflops:.0%}"
            print(rows[-1], flush=True)
            out.unlink(missing_ok=True)
    table = pd.DataFrame(rows)
    base = table[(table.engine == "torch") & (table.precision == "fp32")].set_index("scene")["mpix_per_s"]
    table["vs_torch_fp32"] = [round(r.mpix_per_s / base[r.scene], 2) for r in table.itertuples()]
    table.to_csv(args.out / "predict_engines.csv", index=False)
    print(f"\nnetwork: {gflop:.1f} GFLOP per 256² window; whole-run GFLOP/s (reads, blending and writes included)")
    print(table.to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--engines", action="store_true", help="compare engines and precisions on blended scenes")
    ap.add_argument("--peak-gflops", type=float, default=None, help="the CPU's fp32 peak, for the share reached")
    args = ap.parse_args()
    print_machine()
    if not (SHARED / "rasterio" / "cogeo.tif").exists():
        sys.exit("needs ../shared/data/rasterio/cogeo.tif")
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = make_checkpoint(args.out)
    if args.engines:
        engines(args, ckpt)
        return
    rows = []
    for size in args.sizes:
        _, labels = build_mirrored_scene(SHARED / "rasterio" / "cogeo.tif", size, args.out / f"scene{size}")
        variants = [("blended", "none"), ("blended", "bf16"), ("naive stitch", "none"), ("naive stitch", "bf16")]
        if size > 5000:
            variants = [("blended", "bf16")]
        for mode, amp in variants:
            out = args.out / f"mosaic{size}.tif"
            cmd = [sys.executable, "-m", "p2ptools", "-q", "predict", str(ckpt), str(labels), str(out),
                   "--palette", "inria", "--amp", amp]
            if mode == "naive stitch":
                cmd += ["--blend", "none", "--overlap", "0"]
            wall, mem, _ = run_measured(cmd)
            rows.append(dict(scene=f"{size}²", mode=mode, amp=amp, seconds=round(wall, 1),
                             mpix_per_s=round(size * size / 1e6 / wall, 2), peak_mem_mb=round(mem)))
            print(rows[-1], flush=True)
            out.unlink(missing_ok=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "predict_scene.csv", index=False)
    print()
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
