"""Benchmark: ``p2ptools tile`` against a whole-scene OpenCV script, in the same run.

Builds 5000×5000 (Inria size) and 20000×20000 RGB scenes from real imagery — a mirrored mosaic of
rasterio's ``cogeo.tif`` aerial photo (../shared/data/rasterio) with a derived building-like mask
(see ``common.build_mirrored_scene``) — and three inputs: one 5000² scene, an Inria-like folder of
four 5000² scenes, and one 20000² scene. For each it runs, one after the other in fresh processes:

* baseline: ``baseline_tile.py`` (cv2.imread of each whole scene, loop, cv2.imwrite), one process;
* p2ptools: ``p2ptools tile SRC OUT --size 256 --edge drop --workers 2`` (same tiles, same filter).

* p2ptools "clean install": the same, with ``boto3`` hidden. rasterio imports boto3 whenever it is
  installed (0.2 s of start-up here, where awscli/moto brought it); a fresh install of p2ptools
  and its dependencies has no boto3, so this row is what a user of a clean environment gets.

Each command runs ``--repeat`` times (default 3) and the median wall time is reported, since these
machines are noisy. It reports tiles/s, MPix/s (scene pixels / wall time, process start-up
included) and the peak memory of the whole process tree (workers included; summed PSS, so pages
the forked workers share count once), checks that both wrote the same tiles with the same pixels,
and writes ``bench-out/tile.csv``.

Usage: ``python benchmarks/tile.py [--cases ...] [--workers 2] [--repeat 3] [--out bench-out]``
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


def hide_boto3(out: Path) -> Path:
    """A folder whose ``boto3`` module fails to import, for PYTHONPATH: rasterio then skips it, as in a
    clean install of p2ptools (boto3 is not among its dependencies or rasterio's)."""
    folder = out / "no-boto3"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "boto3.py").write_text('raise ImportError("hidden by benchmarks/tile.py")\n')
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=[c[0] for c in CASES], choices=[c[0] for c in CASES])
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
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
        ours_cmd = [sys.executable, "-m", "p2ptools", "-q", "tile", str(src), str(ours_out), "--size", str(args.tile),
                    "--edge", "drop", "--workers", str(args.workers)]
        runs = {
            "baseline (cv2, whole scene)": ([sys.executable, str(Path(__file__).parent / "baseline_tile.py"),
                                             str(src), str(base_out), str(args.tile)], None),
            f"p2ptools --workers {args.workers}": (ours_cmd, None),
            f"p2ptools --workers {args.workers}, clean install": (ours_cmd, {"PYTHONPATH": str(hide_boto3(args.out))}),
        }
        for impl, (cmd, env) in runs.items():
            walls, mems = [], []
            for _ in range(args.repeat):
                for d in (base_out, ours_out):
                    shutil.rmtree(d, ignore_errors=True)
                wall, mem, _ = run_measured(cmd, env)
                walls.append(wall)
                mems.append(mem)
            wall, mem = float(np.median(walls)), max(mems)
            n = len(list((base_out if impl.startswith("baseline") else ours_out).rglob("*.png")))
            if impl.startswith("baseline"):
                shutil.copytree(base_out, base_out.with_name("baseline-kept"), dirs_exist_ok=True)
            rows.append(dict(case=label, impl=impl, tiles=n, seconds=round(wall, 2),
                             tiles_per_s=round(n / wall, 1), mpix_per_s=round(mpix / wall, 2),
                             peak_mem_mb=round(mem)))
        base_kept = base_out.with_name("baseline-kept")
        ours = sorted(ours_out.glob("*/*.png"))
        if sorted(p.name for p in base_kept.glob("*.png")) != sorted(p.name for p in ours):
            sys.exit(f"{label}: the two wrote different tiles")
        for p in ours[:: max(1, len(ours) // 20)]:
            if not np.array_equal(cv2.imread(str(p)), cv2.imread(str(base_kept / p.name))):
                sys.exit(f"{label}: {p.name} differs between baseline and p2ptools")
        shutil.rmtree(base_kept)
        for r in rows[-2:]:
            r["speedup"] = round(r["tiles_per_s"] / rows[-3]["tiles_per_s"], 2)
            r["mem_ratio"] = round(r["peak_mem_mb"] / rows[-3]["peak_mem_mb"], 2)
        print(pd.DataFrame(rows[-3:]).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "tile.csv", index=False)
    print()
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
