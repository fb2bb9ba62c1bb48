"""The prepared GPU check: training steps, the loader, whole scenes and FID, one table.

Run it where a GPU is lent (``python benchmarks/gpu.py``: under 10 minutes on one H100/H200); CI runs
``python benchmarks/gpu.py --dry-run``, the same code paths on the CPU at tiny sizes, so the script
cannot rot between the rare runs on a GPU. Every figure is measured in this run; nothing is reckoned.

Rows:

* **train**: one full pix2pix step (``p2ptools.training.train.train_step``: G forward, D step, G
  step) of the paper's U-Net 256 + 70×70 PatchGAN at batch 1 and 64, in fp32, bf16 and fp16
  autocast: samples/s (median of the timed steps, the device synchronised) and the GPU's
  utilisation sampled by ``nvidia-smi`` while the steps ran. Dry run: ngf 8 at 64 px, batch 1 and 4.
* **loader**: the training DataLoader (the one ``fit`` builds) over A|B PNG pairs, samples/s with
  0, 2, 4 and 8 workers (dry run: 0 and 1), the batches copied to the device as training does.
* **scene**: a whole label GeoTIFF of 4096² and 20000² (dry run: 256² and 640²) through
  ``predict_scene`` with the paper's generator (random weights in a real checkpoint: speed does not
  depend on the weights), ``--amp auto``: MPix/s (start-up included) and the peak GPU memory.
* **fid**: FID features of 2,000 images of 256² (dry run: 16 of 64²) through the FID Inception-v3
  (the real weights when they are on disk, else random ones: the speed is the same), images/s.
* **ddp**: where two GPUs exist, a 2-process ``torchrun`` training run (dry run: 2 CPU processes,
  gloo): steps/s.

Usage: ``python benchmarks/gpu.py [--dry-run] [--out DIR] [--device cuda]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_machine  # noqa: E402

from p2ptools.config import TrainConfig  # noqa: E402
from p2ptools.model.checkpoints import RunState, save_checkpoint  # noqa: E402
from p2ptools.model.config import ModelConfig  # noqa: E402
from p2ptools.runtime.device import resolve_amp, select_device  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    """What one run measures: the paper's sizes on a GPU, tiny ones in a dry run."""

    ngf: int
    image: int
    num_downs: int
    batches: tuple[int, ...]
    steps: int
    workers: tuple[int, ...]
    loader_images: int
    scenes: tuple[int, ...]
    fid_images: int
    fid_size: int


FULL = Sizes(64, 256, 8, (1, 64), 10, (0, 2, 4, 8), 512, (4096, 20000), 2000, 256)
DRY = Sizes(8, 64, 6, (1, 4), 2, (0, 1), 16, (256, 640), 16, 64)


class GPUUtilisation:
    """The GPU's utilisation (%) sampled by ``nvidia-smi`` every 0.2 s while the block runs; None off CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.index = device.index if device.index is not None else torch.cuda.current_device() \
            if device.type == "cuda" else None
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _sample(self) -> None:
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", str(self.index)]
        while not self.stop.wait(0.2):
            try:
                self.samples.append(float(subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout))
            except (OSError, ValueError, subprocess.SubprocessError):
                return

    def __enter__(self) -> GPUUtilisation:
        if self.index is not None and shutil.which("nvidia-smi"):
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device, steps: int, warmup: int = 2) -> list[float]:
    """Seconds of each of ``steps`` calls of ``fn`` after ``warmup`` calls, the device synchronised."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


def bench_train(sizes: Sizes, device: torch.device, work: Path) -> list[dict[str, Any]]:
    """Samples/s of one training step per precision and batch."""
    from p2ptools.training.train import build_models, train_step

    rows = []
    mcfg = ModelConfig(ngf=sizes.ngf, ndf=sizes.ngf, num_downs=sizes.num_downs, image_size=sizes.image,
                       load_size=sizes.image)
    for amp in ("none", "bf16", "fp16"):
        for batch in sizes.batches:
            tcfg = TrainConfig(dataset=work, out=work, amp=amp, batch_size=batch, device=str(device))
            ran = resolve_amp(amp, device)
            m = build_models(mcfg, tcfg, device)
            A = torch.rand(batch, 3, sizes.image, sizes.image, device=device) * 2 - 1
            B = torch.rand(batch, 3, sizes.image, sizes.image, device=device) * 2 - 1
            with GPUUtilisation(device) as util:
                times = _timed(lambda m=m, A=A, B=B, tcfg=tcfg: train_step(m, A, B, tcfg, device), device,
                               sizes.steps)
            rows.append({"what": "train step", "setting": f"{amp} (ran {ran}), batch {batch}",
                         "samples/s": batch / statistics.median(times), "gpu util %": util.mean})
            del m, A, B
    return rows


def make_pairs(folder: Path, count: int, size: int) -> Path:
    """``folder/train/NNNN.png``: ``count`` A|B pairs (``size`` × 2·``size``) of smooth random images."""
    import cv2

    split = folder / "train"
    split.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        small = rng.integers(0, 256, (size // 8, size // 4, 3), dtype=np.uint8)
        cv2.imwrite(str(split / f"{i:04d}.png"), cv2.resize(small, (2 * size, size), interpolation=cv2.INTER_CUBIC))
    return folder


def _device_batches(ds: Any, tcfg: TrainConfig, device: torch.device) -> Any:
    """One epoch of the training loader's batches, on ``device`` as the training loop gets them."""
    from p2ptools.training.data import EpochSampler, to_device_batch
    from p2ptools.training.train import _loader

    sampler = EpochSampler(len(ds), tcfg.seed, tagged=True)
    for batch in _loader(ds, tcfg, device, sampler):
        yield to_device_batch(batch, device)


def bench_loader(sizes: Sizes, device: torch.device, work: Path) -> list[dict[str, Any]]:
    """Samples/s of the training loader per worker count (the batches copied to the device)."""
    from p2ptools.training.data import AlignedDataset

    data = make_pairs(work / "pairs", sizes.loader_images, sizes.image)
    rows = []
    for workers in sizes.workers:
        ds = AlignedDataset(data, "train", load_size=sizes.image + sizes.image // 8, crop_size=sizes.image)
        tcfg = TrainConfig(dataset=data, out=work / "run", batch_size=1, workers=workers, device=str(device))
        t = time.perf_counter()
        n = sum(int(A.shape[0]) for A, _ in _device_batches(ds, tcfg, device))
        _sync(device)
        rows.append({"what": "loader", "setting": f"{workers} workers", "samples/s": n / (time.perf_counter() - t)})
    return rows


def label_scene(path: Path, size: int) -> Path:
    """A ``size``² one-band 0/255 label GeoTIFF of random 32-px blocks, written in row blocks."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(1)
    profile = dict(driver="GTiff", height=size, width=size, count=1, dtype="uint8", crs="EPSG:32618",
                   transform=from_origin(500000, 4000000 + size * 0.3, 0.3, 0.3), tiled=True, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        for y in range(0, size, 1024):
            h = min(1024, size - y)
            blocks = rng.integers(0, 2, (math.ceil(h / 32), math.ceil(size / 32)), dtype=np.uint8) * 255
            rows = np.repeat(np.repeat(blocks, 32, 0), 32, 1)[:h, :size]
            dst.write(rows, 1, window=rasterio.windows.Window(0, y, size, h))
    return path


def bench_scenes(sizes: Sizes, device: torch.device, work: Path) -> list[dict[str, Any]]:
    """MPix/s and peak GPU memory of whole label scenes through ``predict_scene``."""
    from p2ptools.inference.mosaic import predict_scene
    from p2ptools.inference.options import PredictOptions
    from p2ptools.training.train import build_models

    torch.manual_seed(0)
    mcfg = ModelConfig(ngf=sizes.ngf, ndf=sizes.ngf, num_downs=sizes.num_downs, image_size=sizes.image,
                       load_size=sizes.image)
    tcfg = TrainConfig(dataset=work, out=work)
    ckpt = work / "generator.pt"
    save_checkpoint(ckpt, build_models(mcfg, tcfg, torch.device("cpu")), RunState(), mcfg, tcfg)
    rows = []
    batch = 64 if device.type == "cuda" else 8
    for size in sizes.scenes:
        scene = label_scene(work / f"labels{size}.tif", size)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        rep = predict_scene(ckpt, scene, work / f"out{size}.tif",
                            PredictOptions(device=str(device), batch_size=batch, palette="inria", progress=False,
                                           window_lines=False))
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        rows.append({"what": "scene", "setting": f"{size}², {rep.tiles} windows, batch {batch}",
                     "MPix/s": rep.mpix_per_s, "peak GPU GiB": peak})
        (work / f"out{size}.tif").unlink()
        scene.unlink()
    return rows


def bench_fid(sizes: Sizes, device: torch.device) -> list[dict[str, Any]]:
    """Images/s of the FID features (uint8 images copied to the device, resized there to 299²)."""
    from p2ptools.evaluation.metrics.fid import FIDFeatures, fid_from_activations, fid_inception_v3, get_activations
    from p2ptools.evaluation.weights import WeightsNotFound, find_weights, load_state_dict

    try:
        state, weights = load_state_dict(find_weights("pt_inception-2015-12-05-6726825d.pth", None, True)), "real"
    except WeightsNotFound:
        state, weights = None, "random"
    net = FIDFeatures(fid_inception_v3(state)).optimize().to(device)
    rng = np.random.default_rng(2)
    chunk = 250 if device.type == "cuda" else 8

    def batches() -> Any:
        for i in range(0, sizes.fid_images, chunk):
            n = min(chunk, sizes.fid_images - i)
            yield torch.from_numpy(rng.integers(0, 256, (n, 3, sizes.fid_size, sizes.fid_size), dtype=np.uint8))

    t = time.perf_counter()
    real = get_activations(batches(), net, device)
    fake = get_activations(batches(), net, device)
    seconds = time.perf_counter() - t
    fid = fid_from_activations(real, fake)
    return [{"what": "fid", "setting": f"2 × {sizes.fid_images} images of {sizes.fid_size}², {weights} weights",
             "images/s": 2 * sizes.fid_images / seconds, "FID": fid if weights == "real" else None}]


def bench_ddp(sizes: Sizes, device: torch.device, work: Path) -> list[dict[str, Any]]:
    """Steps/s of a 2-process torchrun training run (2 GPUs, or 2 CPU processes in a dry run)."""
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and gpus < 2:
        return [{"what": "ddp", "setting": f"skipped: {gpus} GPU visible, 2 needed"}]
    data = make_pairs(work / "ddp", 8 if device.type == "cpu" else 256, sizes.image)
    steps = 4 if device.type == "cpu" else 50
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
           "p2ptools", "train", str(data), "--out", str(work / "ddp-run"), "--set", f"model.ngf={sizes.ngf}",
           "--set", f"model.ndf={sizes.ngf}", "--set", f"model.image_size={sizes.image}",
           "--set", f"model.load_size={sizes.image}", "--set", f"model.num_downs={sizes.num_downs}",
           "--epochs", "1000", "--max-steps", str(steps),
           "--batch-size", "1", "--workers", "0", "--device", "cpu" if device.type == "cpu" else "cuda"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"torchrun failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return [{"what": "ddp", "setting": f"2 processes, {steps} steps (start-up included)", "steps/s": steps / seconds}]


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of the rows (every column any row has)."""
    cols = list(dict.fromkeys(k for r in rows for k in r if k != "section s")) + ["section s"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="the same code paths on the CPU at tiny sizes (CI)")
    ap.add_argument("--device", default=None, help="default: cuda, or cpu in a dry run")
    ap.add_argument("--out", type=Path, default=None, help="also write gpu.md and gpu.json here")
    ap.add_argument("--only", nargs="*", default=None, choices=["train", "loader", "scene", "fid", "ddp"])
    args = ap.parse_args()
    device = select_device(args.device or ("cpu" if args.dry_run else "cuda"))
    sizes = DRY if args.dry_run else FULL
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print_machine()
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}, compute capability "
              f"{'.'.join(map(str, torch.cuda.get_device_capability(device)))}, torch {torch.__version__}", flush=True)
    rows: list[dict[str, Any]] = []
    failed = 0
    with tempfile.TemporaryDirectory(prefix="p2p-gpu-") as tmp:
        work = Path(tmp)
        benches: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "train": lambda: bench_train(sizes, device, work), "loader": lambda: bench_loader(sizes, device, work),
            "scene": lambda: bench_scenes(sizes, device, work), "fid": lambda: bench_fid(sizes, device),
            "ddp": lambda: bench_ddp(sizes, device, work)}
        for name, bench in benches.items():
            if args.only and name not in args.only:
                continue
            t = time.perf_counter()
            try:
                got = bench()
            except Exception as exc:  # noqa: BLE001 - one failed row, the others still run
                failed += 1
                got = [{"what": name, "setting": f"FAILED: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}]
            rows += [{**r, "section s": time.perf_counter() - t} for r in got]
            print(f"{name}: done in {time.perf_counter() - t:.1f} s", flush=True)
    text = table(rows)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu.md").write_text(text + "\n")
        (args.out / "gpu.json").write_text(json.dumps(rows, indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
