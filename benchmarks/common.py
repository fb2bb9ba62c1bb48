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


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run a command; return (wall seconds, peak memory of its process tree in MB (summed PSS), stdout)."""
    peak = 0
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_pss_kb(proc.pid))
            time.sleep(0.05)

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
