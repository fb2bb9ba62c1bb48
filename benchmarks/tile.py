"""Benchmark: ``p2ptools tile`` against a whole-scene OpenCV script, in the same run.

Builds 5000×5000 (Inria size) and 20000×20000 RGB scenes from real imagery — a mirrored mosaic of
rasterio's ``cogeo.tif`` aerial photo (../shared/data/rasterio) with a derived building-like mask
(see ``common.build_mirrored_scene``) — and three inputs: one 5000² scene, an Inria-like folder of
four 5000² scenes, and one 20000² scene. For each it runs, one after the other in fresh processes:

* baseline: ``baseline_tile.py`` (cv2.imread of each whole scene, loop, cv2.imwrite), one process;
* p2ptools: ``p2ptools tile SRC OUT --size 256 --edge drop --workers 2`` (same tiles, same filter).

It reports tiles/s, MPix/s (scene pixels / wall time, process start-up included) and the peak
memory of the whole process tree (workers included; summed PSS, so pages the forked workers share
count once), checks that both wrote the same tiles with the same pixels, and writes
``bench-out/tile.csv``.

Usage: ``python benchmarks/tile.py [--sizes 5000 20000] [--workers 2] [--out bench-out]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, build_mirrored_scene, print_machine, run_measured  # noqa: E402

CASES = [("5000² × 1", 5000, 1), ("5000² × 4", 5000, 4), ("20000² × 1", 20000, 1)]


def make_input(out: Path, size: int, scenes: int) -> Path:
    """A folder ``images/`` + ``gt/`` holding ``scenes`` links to one built scene (distinct names)."""
    img, mask = build_mirrored_scene(SHARED / "rasterio" / "cogeo.tif", size, out / f"scene{size}")
    root = out / f"input{size}x{scenes}"
    for sub, target in (("images", img), ("gt", mask)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(scenes):
            link = root / sub / f"scene{i}.tif"
            if not link.exists():
                link.symlink_to(target.resolve())
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=[c[0] for c in CASES], choices=[c[0] for c in CASES])
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = ap.parse_args()
    print_machine()
    if not (SHARED / "rasterio" / "cogeo.tif").exists():
        sys.exit(f"needs the real photo {SHARED / 'rasterio' / 'cogeo.tif'} (../shared/data)")
    rows = []
    for label, size, scenes in [c for c in CASES if c[0] in args.cases]:
        src = make_input(args.out, size, scenes)
        base_out, ours_out = args.out / "baseline-tiles", args.out / "p2ptools-tiles"
        for d in (base_out, ours_out):
            shutil.rmtree(d, ignore_errors=True)
        mpix = scenes * size * size / 1e6
        runs = {
            "baseline (cv2, whole scene)": [sys.executable, str(Path(__file__).parent / "baseline_tile.py"),
                                            str(src), str(base_out), str(args.tile)],
            f"p2ptools --workers {args.workers}": [sys.executable, "-m", "p2ptools", "-q", "tile", str(src),
                                                   str(ours_out), "--size", str(args.tile), "--edge", "drop",
                                                   "--workers", str(args.workers)],
        }
        for impl, cmd in runs.items():
            wall, mem, _ = run_measured(cmd)
            n = len(list((base_out if impl.startswith("baseline") else ours_out).rglob("*.png")))
            rows.append(dict(case=label, impl=impl, tiles=n, seconds=round(wall, 2),
                             tiles_per_s=round(n / wall, 1), mpix_per_s=round(mpix / wall, 2),
                             peak_mem_mb=round(mem)))
        ours = sorted(ours_out.glob("*/*.png"))
        if sorted(p.name for p in base_out.glob("*.png")) != sorted(p.name for p in ours):
            sys.exit(f"{label}: the two wrote different tiles")
        for p in ours[:: max(1, len(ours) // 20)]:
            if not np.array_equal(cv2.imread(str(p)), cv2.imread(str(base_out / p.name))):
                sys.exit(f"{label}: {p.name} differs between baseline and p2ptools")
        rows[-1]["speedup"] = round(rows[-1]["tiles_per_s"] / rows[-2]["tiles_per_s"], 2)
        rows[-1]["mem_ratio"] = round(rows[-1]["peak_mem_mb"] / rows[-2]["peak_mem_mb"], 2)
        print(pd.DataFrame(rows[-2:]).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "tile.csv", index=False)
    print()
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
