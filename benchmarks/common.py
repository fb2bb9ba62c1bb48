"""Helpers shared by the benchmarks: peak memory of a process tree, and large scenes from real imagery."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _tree_pss_kb(pid: int) -> int:
    """Proportional set size of a process and all its descendants, in kB (Linux /proc).

    PSS divides each shared page among the processes that map it, so forked workers that share
    the parent's libraries are not counted twice; for a single process it is close to its RSS.
    """
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    stack += [int(c) for c in fh.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run_measured(cmd: list[str], env: dict[str, str] | None = None, every: float = 1.0) -> tuple[float, float, str]:
    """Run a command; return (wall seconds, peak memory of its process tree in MB (summed PSS), stdout).

    Memory is sampled every ``every`` seconds: reading ``smaps_rollup`` walks the page tables of a
    1 GB process, and at 20 samples a second that took a third of a 2-core machine away from the
    command (a 4096² scene: 34.9 s measured against 25.5 s unobserved).
    """
    peak = 0
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_pss_kb(proc.pid))
            done.wait(every)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    t.join()
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
    return wall, peak / 1024.0, out


def reflect_index(n: int, period: int) -> np.ndarray:
    """Indices 0..n-1 folded into 0..period-1 by mirroring (…, 0, 1, …, p-1, p-1, …, 0, 0, 1, …)."""
    i = np.arange(n) % (2 * period)
    return np.where(i < period, i, 2 * period - 1 - i)


def build_mirrored_scene(src_tif: Path, size: int, out_dir: Path, block_rows: int = 1024) -> tuple[Path, Path]:
    """A ``size × size`` RGB GeoTIFF mosaic of a real photo (mirrored) and a derived 0/255 mask.

    The mask is derived, not real: bright pixels of the photo (roofs, roads) after a 5×5 opening,
    with one 1280-px block in four emptied so the empty-tile filter has work. Scenes are written
    in row blocks, uncompressed and stripped, like the Inria and LandCover.ai GeoTIFFs.
    """
    import cv2
    import rasterio
    from rasterio.transform import from_origin

    out_dir.mkdir(parents=True, exist_ok=True)
    img_path, mask_path = out_dir / "images" / f"scene{size}.tif", out_dir / "gt" / f"scene{size}.tif"
    if img_path.exists() and mask_path.exists():
        return img_path, mask_path
    img_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(src_tif) as ds:
        rgb = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
        crs, res = ds.crs, ds.res[0]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    bright = (gray > np.percentile(gray, 80)).astype(np.uint8) * 255
    bright = cv2.morphologyEx(bright, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    period = rgb.shape[0]
    cols = reflect_index(size, period)
    transform = from_origin(0.0, size * res, res, res)
    common = dict(driver="GTiff", height=size, width=size, crs=crs, transform=transform)
    tmp_i, tmp_m = img_path.with_suffix(".tmp"), mask_path.with_suffix(".tmp")
    with rasterio.open(tmp_i, "w", count=3, dtype="uint8", **common) as di, \
            rasterio.open(tmp_m, "w", count=1, dtype="uint8", **common) as dm:
        for y in range(0, size, block_rows):
            rows = reflect_index(size, period)[y : y + block_rows]
            block = rgb[rows][:, cols]
            m = bright[rows][:, cols].copy()
            yy = (np.arange(y, y + len(rows)) // 1280)[:, None]
            xx = (np.arange(size) // 1280)[None, :]
            m[((3 * yy + xx) % 4) == 0] = 0
            win = rasterio.windows.Window(0, y, size, len(rows))
            di.write(np.moveaxis(block, -1, 0), window=win)
            dm.write(m, 1, window=win)
    os.replace(tmp_i, img_path)
    os.replace(tmp_m, mask_path)
    return img_path, mask_path


def print_machine() -> None:
    """Print the CPU model, torch's CPU capability and whether bf16 is native: every figure depends on them."""
    from p2ptools.runtime.device import describe_cpu

    print(f"machine: {describe_cpu()}; {os.cpu_count()} cores", flush=True)


def cpu_peak_gflops() -> tuple[float | None, float | None, str]:
    """The CPU's fp32 and bf16 peak (GFLOP/s, all cores, at the clock /proc/cpuinfo reports) and how it
    was reckoned; (None, None, why) where the microarchitecture is not one this table knows.

    fp32 FLOP per cycle and core: 2 FMA pipes × vector lanes × 2. AMD Zen 2–4 (family 23/25): two
    256-bit pipes (Zen 4 runs AVX-512 on them, two passes), 32; Zen 5 (family 26): two 512-bit, 64;
    Intel with AVX-512: 64 (two 512-bit FMA ports on server parts); AVX2 without AVX-512: 32. bf16
    doubles it where ``avx512_bf16`` (VDPBF16PS) is present. The clock is the reported one; a boost
    above it shows as more than 100 %.
    """
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, None, "no /proc/cpuinfo"

    def field(name: str) -> str:
        for line in info.splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
        return ""

    flags, vendor = set(field("flags").split()), field("vendor_id")
    family, mhz = int(field("cpu family") or 0), float(field("cpu MHz") or 0)
    if not mhz:
        return None, None, "no clock in /proc/cpuinfo"
    if vendor == "AuthenticAMD" and family in (23, 25):
        per_cycle, why = 32, f"AMD family {family} (Zen 2–4): 2 × 256-bit FMA"
    elif vendor == "AuthenticAMD" and family == 26:
        per_cycle, why = 64, "AMD family 26 (Zen 5): 2 × 512-bit FMA"
    elif vendor == "GenuineIntel" and "avx512f" in flags:
        per_cycle, why = 64, "Intel AVX-512: 2 × 512-bit FMA"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, why = 32, "AVX2: 2 × 256-bit FMA"
    else:
        return None, None, "unknown microarchitecture"
    cores = os.cpu_count() or 1
    fp32 = cores * per_cycle * mhz / 1000
    bf16 = 2 * fp32 if "avx512_bf16" in flags else None
    return fp32, bf16, f"{cores} cores × {per_cycle} FLOP/cycle ({why}) × {mhz / 1000:.2f} GHz"
