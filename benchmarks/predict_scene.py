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
torch bf16, ONNX Runtime fp32 and ONNX Runtime int8 (``--amp int8``, calibrated on 32 windows of the
label scene named as the checkpoint's dataset) — each a fresh ``predict`` process, the engines
interleaved ``--repeats`` times and the fastest counted, with each one's MPix/s, its ratio to torch
fp32 in the same run, the scene's effective GFLOP/s (windows × 12.1 GFLOP / wall seconds, start-up
included), the network alone per window in a fresh process, both as fractions of the CPU's peak
**measured in the same run** (:mod:`peak`: the faster of a 4096² sgemm and a large 3×3 convolution
in fp32 and bf16, and int8 where the CPU has VNNI/AMX; ``--peak-gflops`` overrides the fp32 one), the
seconds outside the network, and each raster's PSNR and georeference against torch fp32's.

``--pipeline``: the pipelined window loop (reads and mirrors on a reader thread, batches of
``--batch-size`` across rows, Hann blending and writes on a writer thread) against the serial loop
it replaced (one row at a time, no threads: ``mosaic._serial_bands``, called in the same code, so
both share the start-up), for torch fp32 and ONNX Runtime int8 on the blended scene: fresh
``predict`` processes, interleaved ``--repeats`` times, the fastest counted; MPix/s, the seconds
outside the network (wall − windows × the network's own time per window at the same batch size, in a
fresh process) and the peak memory (PSS of the process, ≈ its RSS).
Measured on a 2-core Sapphire Rapids Xeon **shared with three other jobs** (load average 2–7, so the
walls are noisy; the random-weight U-Net, 506 windows, batch 8): torch fp32 61.9 s serial against
62.0 s pipelined at load ~2; int8 23.7/24.6 s against 24.8/25.9 s at load ~2 (the network holds both
cores: the threads have no idle core to fill) but 56.3 → 46.8 s (batch 8) and 51.4 → 40.8 s (batch
32) at load ~4.3; peak memory 916 → 983 MB (torch), 996 → 1097 MB (int8). Every raster equal to the
serial loop's. The pipeline is for a GPU, where the CPU is otherwise idle while the network runs.

Usage: ``python benchmarks/predict_scene.py [--sizes 5000 20000] [--out bench-out]``
       ``python benchmarks/predict_scene.py --engines --sizes 4096 [--peak-gflops 300]``
       ``python benchmarks/predict_scene.py --pipeline --sizes 4096 [--batch-size 8]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, build_mirrored_scene, print_machine, run_measured  # noqa: E402

from p2ptools.config import TrainConfig  # noqa: E402
from p2ptools.model.checkpoints import RunState, save_checkpoint  # noqa: E402
from p2ptools.model.config import ModelConfig
from p2ptools.training.train import build_models  # noqa: E402


def make_checkpoint(out: Path, dataset: Path | None = None) -> Path:
    """The paper's U-Net with random weights in a real checkpoint; ``dataset``: the run's dataset it names
    (the int8 engine calibrates on its tiles)."""
    path = out / ("unet256-random.pt" if dataset is None else "unet256-random-calib.pt")
    if not path.exists():
        torch.manual_seed(0)
        mcfg, tcfg = ModelConfig(), TrainConfig(dataset=dataset or out, out=out)
        save_checkpoint(path, build_models(mcfg, tcfg, torch.device("cpu")), RunState(), mcfg, tcfg)
    return path


def calibration_dataset(labels: Path, out: Path, count: int = 32, size: int = 256) -> Path:
    """``out/val/NNN.png``: ``count`` A|B pairs of ``size``² windows of the label scene on a regular grid,
    the labels as the network reads them (inria: 0/255 as black/white), B = A (the targets are unused)."""
    import rasterio
    from rasterio.windows import Window

    from p2ptools.runtime.output import write_image

    if len(list((out / "val").glob("*.png"))) >= count:
        return out
    with rasterio.open(labels) as ds:
        side = int(np.ceil(np.sqrt(count)))
        step = (min(ds.width, ds.height) - size) // max(1, side - 1)
        for i in range(count):
            y, x = divmod(i, side)
            a = np.repeat(ds.read(1, window=Window(x * step, y * step, size, size))[..., None], 3, axis=2)
            write_image(out / "val" / f"{i:03d}.png", np.concatenate([a, a], axis=1))
    return out


def unet_gflop(size: int = 256) -> float:
    """GFLOP (2 × multiply-adds) of one forward pass of the paper's U-Net on a ``size``² window."""
    from torch.utils.flop_counter import FlopCounterMode

    from p2ptools.model.nets import UNetGenerator

    g = UNetGenerator().eval()
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        g(torch.zeros(1, 3, size, size))
    return fc.get_total_flops() / 1e9


def network_ms(ckpt: Path, engine: str, amp: str, batch: int = 8, repeats: int = 5) -> tuple[float, float]:
    """Milliseconds per 256² window of the network alone at the scenes' batch size, the engine as
    ``predict`` builds it (BatchNorm folded, channels-last for torch), the fastest of ``repeats``
    batches, in a fresh process of its own (another runtime's threads in this one would compete); and
    the seconds building the engine took (export, calibration and quantization where not cached)."""
    code = ("import sys, time, torch\n"
            "from pathlib import Path\n"
            "from p2ptools.inference.engine import EngineRequest, make_engine, prepared_generator\n"
            "G, mcfg, meta = prepared_generator(Path(sys.argv[1]), 'latest', torch.device('cpu'))\n"
            "req = EngineRequest(3, mcfg.image_size, torch.device('cpu'), sys.argv[3])\n"
            "t = time.perf_counter(); run = make_engine(G, meta, req, sys.argv[2]); build = time.perf_counter() - t\n"
            "x = torch.rand(int(sys.argv[4]), 3, 256, 256) * 2 - 1\n"
            "run(x)\n"
            "times = []\n"
            "for _ in range(int(sys.argv[5])):\n"
            "    t = time.perf_counter(); run(x); times.append(time.perf_counter() - t)\n"
            "print(min(times) / x.shape[0] * 1000, build)\n")
    _, _, out = run_measured([sys.executable, "-c", code, str(ckpt), engine, amp, str(batch), str(repeats)])
    ms, build = out.strip().splitlines()[-1].split()
    return float(ms), float(build)


#: (engine, --amp) of the engine table, torch fp32 first (the baseline)
ENGINE_RUNS = (("torch", "none"), ("torch", "bf16"), ("onnxruntime", "none"), ("auto", "int8"))


def _scene_runs(args: argparse.Namespace, ckpt: Path, labels: Path, size: int) -> dict[tuple[str, str], list]:
    """Each engine's ``predict`` of the scene ``args.repeats`` times, interleaved (torch fp32, bf16, ONNX
    Runtime, int8, torch fp32, …) so the machine's other work falls on all alike; torch fp32's first
    raster is kept as the reference, each other's first beside it."""
    import re

    runs: dict[tuple[str, str], list] = {key: [] for key in ENGINE_RUNS}
    for rep in range(args.repeats):
        for engine, amp in ENGINE_RUNS:
            out = args.out / f"engine{size}-{engine}-{amp}.tif"
            out.unlink(missing_ok=True)
            cmd = [sys.executable, "-m", "p2ptools", "-q", "predict", str(ckpt), str(labels), str(out),
                   "--palette", "inria", "--amp", amp, "--engine", engine]
            wall, mem, said = run_measured(cmd)
            found = re.search(r"\((\d+) windows", said)  # predict's own count
            if not found:
                sys.exit(f"predict did not say how many windows it ran: {said[-500:]}")
            runs[(engine, amp)].append((wall, mem, int(found.group(1))))
            print(f"  {size}² {engine} {amp} run {rep + 1}: {wall:.1f} s", flush=True)
    return runs


def _raster_psnr(a: Path, b: Path) -> tuple[float, bool]:
    """PSNR (dB, 8-bit) of raster ``b`` against ``a``, and whether their georeference is the same."""
    import rasterio

    with rasterio.open(a) as da, rasterio.open(b) as db:
        same = (da.crs, da.transform, da.shape) == (db.crs, db.transform, db.shape)
        mse = float(np.mean((da.read().astype(np.float64) - db.read().astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12)), same


def engines(args: argparse.Namespace) -> None:
    """The engine table against the peak measured in this run: one blended scene per engine and precision
    (fresh ``predict`` processes, interleaved, the fastest counts), the network alone in a fresh process,
    the time outside it, and each raster's PSNR against torch fp32's."""
    from peak import measure_peaks

    gflop = unet_gflop()
    measured = measure_peaks()
    for p in measured.values():
        print(f"peak {p.precision}: {p.gflops:.0f} GFLOP/s ({p.kernel})", flush=True)
    peaks = {k: p.gflops for k, p in measured.items()}
    peaks["fp32"] = args.peak_gflops or peaks["fp32"]
    rows = []
    for size in args.sizes:
        _, labels = build_mirrored_scene(SHARED / "rasterio" / "cogeo.tif", size, args.out / f"scene{size}")
        ckpt = args.checkpoint or make_checkpoint(args.out, calibration_dataset(labels, args.out / "calibration"))
        nets = {key: network_ms(ckpt, *key) for key in ENGINE_RUNS}
        runs = _scene_runs(args, ckpt, labels, size)
        ref = args.out / f"engine{size}-torch-none.tif"
        for (engine, amp), measured in runs.items():
            wall, mem, n = min(measured)
            ms, build = nets[(engine, amp)]
            precision = "fp32" if amp == "none" else amp
            peak = peaks.get(precision)
            db, same = _raster_psnr(ref, args.out / f"engine{size}-{engine}-{amp}.tif")
            rows.append(dict(
                scene=f"{size}²", engine="onnxruntime" if engine == "auto" else engine, precision=precision,
                seconds=round(wall, 1), mpix_per_s=round(size * size / 1e6 / wall, 3), windows=n,
                scene_gflops=round(n * gflop / wall), scene_of_peak=f"{n * gflop / wall / peak:.0%}" if peak else "?",
                net_ms=round(ms, 1), net_gflops=round(gflop / (ms / 1000)),
                net_of_peak=f"{gflop / (ms / 1000) / peak:.0%}" if peak else "?", build_s=round(build, 1),
                outside_network_s=round(wall - n * ms / 1000, 1), peak_mem_mb=round(mem),
                psnr_vs_fp32="reference" if (engine, amp) == ENGINE_RUNS[0] else round(db, 1), same_georef=same))
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    base = table[(table.engine == "torch") & (table.precision == "fp32")].set_index("scene")["mpix_per_s"]
    table["vs_torch_fp32"] = [round(r.mpix_per_s / base[r.scene], 2) for r in table.itertuples()]
    table.to_csv(args.out / "predict_engines.csv", index=False)
    print(f"\nnetwork: {gflop:.1f} GFLOP per 256² window; peaks measured in this run (benchmarks/peak.py): "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items())
          + ("; fp32 from --peak-gflops" if args.peak_gflops else "")
          + ". scene_gflops: windows × GFLOP / wall seconds (start-up included); net_*: the network alone at "
          "batch 8 in a fresh process; build_s: making the engine there (the first int8 build calibrates and "
          "quantizes; the scene runs read the cache); outside_network_s: the scene's seconds minus windows × net_ms")
    print(table.to_string(index=False))


#: ``predict`` with the serial window loop of before the pipeline (the baseline of ``--pipeline``)
SERIAL = ("import sys\n"
          "import p2ptools.inference.mosaic as m\n"
          "m._predict_bands = m._serial_bands\n"
          "from p2ptools.cli.main import cli\n"
          "cli(sys.argv[1:])\n")

#: (engine, --amp) of the pipeline table
PIPELINE_RUNS = (("torch", "none"), ("auto", "int8"))


def pipeline(args: argparse.Namespace) -> None:
    """Serial loop against pipelined loop, per engine (see the module docstring)."""
    import re

    rows = []
    for size in args.sizes:
        _, labels = build_mirrored_scene(SHARED / "rasterio" / "cogeo.tif", size, args.out / f"scene{size}")
        ckpt = args.checkpoint or make_checkpoint(args.out, calibration_dataset(labels, args.out / "calibration"))
        nets = {key: network_ms(ckpt, *key, batch=args.batch_size) for key in PIPELINE_RUNS}
        runs: dict[tuple[str, str, str], list] = {}
        for rep in range(args.repeats):
            for (engine, amp), loop in [(key, loop) for key in PIPELINE_RUNS for loop in ("serial", "pipelined")]:
                out = args.out / f"pipe{size}-{engine}-{amp}-{loop}.tif"
                out.unlink(missing_ok=True)
                head = [sys.executable, "-c", SERIAL] if loop == "serial" else [sys.executable, "-m", "p2ptools"]
                wall, mem, said = run_measured(head + ["-q", "predict", str(ckpt), str(labels), str(out), "--palette",
                                                       "inria", "--amp", amp, "--engine", engine, "--batch-size",
                                                       str(args.batch_size)])
                n = int(re.search(r"\((\d+) windows", said).group(1))  # type: ignore[union-attr]
                runs.setdefault((engine, amp, loop), []).append((wall, mem, n))
                print(f"  {size}² {engine} {amp} {loop} run {rep + 1}: {wall:.1f} s", flush=True)
        for (engine, amp, loop), measured in runs.items():
            wall, mem, n = min(measured)
            ms = nets[(engine, amp)][0]
            db, same = _raster_psnr(args.out / f"pipe{size}-{engine}-{amp}-serial.tif",
                                    args.out / f"pipe{size}-{engine}-{amp}-{loop}.tif")
            rows.append(dict(scene=f"{size}²", engine="onnxruntime" if engine == "auto" else engine,
                             precision="fp32" if amp == "none" else amp, loop=loop, windows=n,
                             seconds=round(wall, 1), mpix_per_s=round(size * size / 1e6 / wall, 3),
                             net_ms=round(ms, 1), outside_network_s=round(wall - n * ms / 1000, 1),
                             peak_mem_mb=round(mem), same_as_serial=db > 99 and same))
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "predict_pipeline.csv", index=False)
    print(f"\nbatch size {args.batch_size}; outside_network_s: wall seconds minus windows × net_ms (the network "
          "alone at that batch size in a fresh process); same_as_serial: the raster equals the serial loop's "
          "(PSNR > 99 dB) with the same georeference")
    print(table.to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--engines", action="store_true", help="compare engines and precisions on blended scenes")
    ap.add_argument("--pipeline", action="store_true",
                    help="the pipelined window loop against the serial one, torch fp32 and int8")
    ap.add_argument("--batch-size", type=int, default=8, help="--pipeline: predict's --batch-size")
    ap.add_argument("--repeats", type=int, default=2, help="runs per engine and scene; the fastest counts")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="--engines: a trained pix2pix checkpoint instead of random weights (its run's dataset "
                         "calibrates int8; the PSNR column then compares real outputs)")
    ap.add_argument("--peak-gflops", type=float, default=None,
                    help="the CPU's fp32 peak, for the share reached (default: measured in the run, "
                         "benchmarks/peak.py)")
    args = ap.parse_args()
    print_machine()
    if not (SHARED / "rasterio" / "cogeo.tif").exists():
        sys.exit("needs ../shared/data/rasterio/cogeo.tif")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.engines:
        engines(args)
        return
    if args.pipeline:
        pipeline(args)
        return
    ckpt = make_checkpoint(args.out)
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
