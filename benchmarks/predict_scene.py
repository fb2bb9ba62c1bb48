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
the network alone per window in a fresh process (its GFLOP/s against the CPU's fp32 or bf16 peak,
reckoned by ``common.cpu_peak_gflops`` or given with ``--peak-gflops``; 12.1 GFLOP per 256² window of
the paper's U-Net, counted by :func:`unet_gflop`), the seconds outside the network, and the ceiling
the peak puts on a blended scene's MPix/s.

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

from p2ptools.config import TrainConfig  # noqa: E402
from p2ptools.model.checkpoints import RunState, save_checkpoint  # noqa: E402
from p2ptools.model.config import ModelConfig
from p2ptools.training.train import build_models  # noqa: E402


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

    from p2ptools.model.nets import UNetGenerator

    g = UNetGenerator().eval()
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        g(torch.zeros(1, 3, size, size))
    return fc.get_total_flops() / 1e9


def network_ms(ckpt: Path, engine: str, amp: str, batch: int = 8, repeats: int = 5) -> float:
    """Milliseconds per 256² window of the network alone at the scenes' batch size, the engine as
    ``predict`` builds it (BatchNorm folded, channels-last for torch); the fastest of ``repeats``
    batches, in a fresh process of its own (another runtime's threads in this one would compete)."""
    code = ("import sys, time, torch\n"
            "from pathlib import Path\n"
            "from p2ptools.inference.engine import EngineRequest, make_engine, prepared_generator\n"
            "G, mcfg, meta = prepared_generator(Path(sys.argv[1]), 'latest', torch.device('cpu'))\n"
            "req = EngineRequest(3, mcfg.image_size, torch.device('cpu'), sys.argv[3])\n"
            "run = make_engine(G, meta, req, sys.argv[2])\n"
            "x = torch.rand(int(sys.argv[4]), 3, 256, 256) * 2 - 1\n"
            "run(x)\n"
            "times = []\n"
            "for _ in range(int(sys.argv[5])):\n"
            "    t = time.perf_counter(); run(x); times.append(time.perf_counter() - t)\n"
            "print(min(times) / x.shape[0] * 1000)\n")
    _, _, out = run_measured([sys.executable, "-c", code, str(ckpt), engine, amp, str(batch), str(repeats)])
    return float(out.strip().splitlines()[-1])


def engines(args: argparse.Namespace, ckpt: Path) -> None:
    """The engine table: one blended scene per engine and precision (a fresh ``predict`` process each),
    ratios to torch fp32 in the same run, the network alone in a fresh process, and the time outside it."""
    import re

    from common import cpu_peak_gflops

    gflop = unet_gflop()
    peak32, peak16, how = cpu_peak_gflops()
    peak32 = args.peak_gflops or peak32
    rows = []
    for size in args.sizes:
        _, labels = build_mirrored_scene(SHARED / "rasterio" / "cogeo.tif", size, args.out / f"scene{size}")
        for engine, amp in (("torch", "none"), ("torch", "bf16"), ("onnxruntime", "none")):
            ms = network_ms(ckpt, engine, amp)
            out = args.out / f"engine{size}.tif"
            cmd = [sys.executable, "-m", "p2ptools", "-q", "predict", str(ckpt), str(labels), str(out),
                   "--palette", "inria", "--amp", amp, "--engine", engine]
            measured = [run_measured(cmd) for _ in range(args.repeats)]
            wall, mem, said = min(measured)  # the fastest run: the others met the machine's other work
            found = re.search(r"\((\d+) windows", said)  # predict's own count
            if not found:
                sys.exit(f"predict did not say how many windows it ran: {said[-500:]}")
            n = int(found.group(1))
            peak = peak16 if amp == "bf16" else peak32
            net_gflops = gflop / (ms / 1000)
            rows.append(dict(scene=f"{size}²", engine=engine, precision="fp32" if amp == "none" else amp,
                             seconds=round(wall, 1), mpix_per_s=round(size * size / 1e6 / wall, 3), windows=n,
                             net_ms_per_window=round(ms, 1), net_gflops=round(net_gflops),
                             of_peak=f"{net_gflops / peak:.0%}" if peak else "?",
                             outside_network_s=round(wall - n * ms / 1000, 1), peak_mem_mb=round(mem)))
            print(rows[-1], flush=True)
            out.unlink(missing_ok=True)
    table = pd.DataFrame(rows)
    base = table[(table.engine == "torch") & (table.precision == "fp32")].set_index("scene")["mpix_per_s"]
    table["vs_torch_fp32"] = [round(r.mpix_per_s / base[r.scene], 2) for r in table.itertuples()]
    table.to_csv(args.out / "predict_engines.csv", index=False)
    print(f"\nnetwork: {gflop:.1f} GFLOP per 256² window; peak: fp32 {peak32 or '?'} GFLOP/s, bf16 {peak16 or '?'} "
          f"GFLOP/s ({how}); net_*: the network alone at batch 8 in a fresh process; outside_network_s: the "
          "scene's seconds minus windows × net_ms (start-up, reads, blending, writes)")
    if peak16 or peak32:
        best = max(peak16 or 0, peak32 or 0)
        for size in args.sizes:
            n = int(table[table.scene == f"{size}²"].windows.iloc[0])
            print(f"{size}²: {n} windows × {gflop:.1f} GFLOP at {best:.0f} GFLOP/s (the best peak, nothing else "
                  f"counted) take {n * gflop / best:.1f} s: at most {size * size / 1e6 / (n * gflop / best):.2f} "
                  "MPix/s blended")
    print(table.to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--engines", action="store_true", help="compare engines and precisions on blended scenes")
    ap.add_argument("--repeats", type=int, default=2, help="runs per engine and scene; the fastest counts")
    ap.add_argument("--peak-gflops", type=float, default=None,
                    help="the CPU's fp32 peak, for the share reached (default: reckoned from /proc/cpuinfo)")
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
