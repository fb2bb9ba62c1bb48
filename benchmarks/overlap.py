"""Benchmark: the seam error and the cost of each whole-scene overlap, to choose the default.

A trained checkpoint predicts a real scene (Hann blending kept) with overlaps of 0, 1/8, 1/4, 3/8 and
1/2 of the tile, in one process, with one engine (torch fp32 on the CPU by default, so rasters differ
only by the overlap). For each overlap it reports the windows (the cost: the network's time is
windows × its per-window time), the wall seconds, and two seam errors:

* ``mad_vs_half``: the mean absolute difference (0–255 levels, all bands) of the raster against the
  raster with the largest overlap (1/2, every pixel blended from four windows, their centres weighing
  most). A window's output depends on its context, most near its borders (zero padding of the
  U-Net's convolutions, less context); the more overlap, the less a pixel's blend leans on a window's
  border, so the difference to the 1/2 raster is how much border error an overlap leaves in.
* ``seam_ratio``: the mean absolute step across the raster's own window borders (``|x[c] − x[c−1]|``
  at the columns and rows where windows of that run start or end) over the same step everywhere:
  ~1 means no seam is visible at the window borders, above 1 a seam.

The default is the smallest overlap whose ``mad_vs_half`` is within ``--tolerance`` levels (default
0.5: less than half an 8-bit step on average) and whose ``seam_ratio`` is within 5 % of the best.

Usage: ``python benchmarks/overlap.py --checkpoint RUN [--scene SCENE.tif] [--out bench-out/overlap]``
(the model card's table: the paper's U-Net 256 after one epoch on the NAIP sample tiled at 256 px,
predicting the NAIP 2018 pan scene, 934×724).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, print_machine  # noqa: E402

from p2ptools.inference.mosaic import predict_scene  # noqa: E402
from p2ptools.inference.options import PredictOptions  # noqa: E402
from p2ptools.prep.tiling import axis_offsets  # noqa: E402

#: the overlaps tried, as fractions of the tile
FRACTIONS = (0.0, 0.125, 0.25, 0.375, 0.5)


def seam_ratio(img: np.ndarray, cols: list[int], rows: list[int]) -> float:
    """Mean |step| across the given window-border columns and rows over the mean |step| everywhere."""
    img = img.astype(np.float64)
    dx = np.abs(np.diff(img, axis=2)).mean(axis=(0, 1))  # dx[c - 1] = |x[c] − x[c − 1]|
    dy = np.abs(np.diff(img, axis=1)).mean(axis=(0, 2))
    border = np.concatenate([dx[[c - 1 for c in cols]], dy[[r - 1 for r in rows]]])
    return float(border.mean() / np.concatenate([dx, dy]).mean())


def window_borders(size: int, T: int, overlap: int, pad: int) -> list[int]:
    """Scene columns (or rows) where a window of the run starts or ends, inside the scene."""
    edges = {e for x in axis_offsets(size + 2 * pad, T, T - overlap, "shift") for e in (x - pad, x - pad + T)}
    return sorted(e for e in edges if 1 <= e < size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True, help="a trained run or checkpoint")
    ap.add_argument("--scene", type=Path, default=ROOT / "p2ptools" / "sample_data" / "naip" / "pan" / "naip.tif")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "overlap")
    ap.add_argument("--engine", default="torch")
    ap.add_argument("--amp", default="none")
    ap.add_argument("--tolerance", type=float, default=0.5, help="mad_vs_half allowed, in 8-bit levels")
    args = ap.parse_args()
    print_machine()
    args.out.mkdir(parents=True, exist_ok=True)
    rasters, rows = {}, []
    for frac in FRACTIONS:
        out = args.out / f"overlap{frac:.3f}.tif"
        out.unlink(missing_ok=True)
        t = time.perf_counter()
        rep = predict_scene(args.checkpoint, args.scene, out, PredictOptions(
            overlap=_pixels(args, frac), progress=False, window_lines=False, engine=args.engine, amp=args.amp))
        wall = time.perf_counter() - t
        with rasterio.open(out) as ds:
            rasters[frac] = ds.read()
        rows.append(dict(overlap=f"{frac:g} ({_pixels(args, frac)} px)", windows=rep.tiles, seconds=round(wall, 1)))
        print(rows[-1], flush=True)
    T = _tile(args)
    ref = rasters[FRACTIONS[-1]].astype(np.float64)
    h, w = ref.shape[1:]
    for row, frac in zip(rows, FRACTIONS, strict=True):
        ov = _pixels(args, frac)
        img = rasters[frac]
        row["mad_vs_half"] = round(float(np.abs(img.astype(np.float64) - ref).mean()), 3)
        row["p99_vs_half"] = float(np.percentile(np.abs(img.astype(np.float64) - ref), 99))
        row["seam_ratio"] = round(seam_ratio(img, window_borders(w, T, ov, T // 4), window_borders(h, T, ov, T // 4)),
                                  3)
    table = pd.DataFrame(rows)
    best = table.seam_ratio.min()
    ok = table[(table.mad_vs_half <= args.tolerance) & (table.seam_ratio <= best * 1.05)]
    table.to_csv(args.out / "overlap.csv", index=False)
    print()
    print(table.to_string(index=False))
    print(f"\nchosen: overlap {ok.iloc[0].overlap} (the smallest within {args.tolerance} levels of the 1/2 raster and "
          f"5 % of the best seam ratio {best:.3f})" if len(ok) else "\nno overlap within the tolerance")


def _tile(args: argparse.Namespace) -> int:
    import torch

    from p2ptools.inference.engine import prepared_generator

    return prepared_generator(args.checkpoint, "latest", torch.device("cpu"))[1].image_size


def _pixels(args: argparse.Namespace, frac: float) -> int:
    return int(round(_tile(args) * frac))


if __name__ == "__main__":
    main()
