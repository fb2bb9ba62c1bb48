"""Benchmark: eval-mode BatchNorm (running statistics) against the paper's per-image statistics.

The paper's test mode (``--batch-stats on``, batch 1) normalises every image by its own statistics;
p2ptools' default (eval mode) uses the running statistics gathered in training, so outputs do not
depend on the image's own content distribution and whole scenes are normalised alike. This script
measures what each costs on a held-out split: it trains the paper's model (U-Net + PatchGAN,
batch 1, Adam 2e-4, vanilla GAN + 100·L1, BatchNorm) through the CLI on the real maps pairs
(../shared/data/maps/train, aerial photo → map), at a reduced size for a CPU budget, then predicts
../shared/data/maps/val in both modes and scores L1 and SSIM against the val targets.

Usage: ``python benchmarks/bn_modes.py [--epochs 20] [--size 128] [--ngf 32] [--out bench-out/bn_modes]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_machine  # noqa: E402


def p2p(*args: str) -> None:
    """Run one p2ptools command (quiet), failing loudly."""
    subprocess.run([sys.executable, "-m", "p2ptools", "-q", *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--size", type=int, default=128, choices=(64, 128, 256))
    ap.add_argument("--ngf", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path("bench-out/bn_modes"))
    args = ap.parse_args()
    maps = SHARED / "maps"
    if not (maps / "train").is_dir():
        sys.exit(f"needs the maps pairs in {maps}")
    print_machine()
    downs = {64: 6, 128: 7, 256: 8}[args.size]
    run = args.out / "run"
    t0 = time.perf_counter()
    if not (run / "latest.pt").exists():
        p2p("train", str(maps), "--model", "pix2pix", "--out", str(run), "--epochs", str(args.epochs),
            "--set", f"model.ngf={args.ngf}", "--set", f"model.ndf={args.ngf}", "--set", f"model.num_downs={downs}",
            "--set", f"model.image_size={args.size}", "--set", f"model.load_size={args.size * 286 // 256}",
            "--save-epoch-freq", "0")
    t_train = time.perf_counter() - t0
    rows = []
    for mode in ("off", "on"):
        pred = args.out / f"pred_batch_stats_{mode}"
        p2p("predict", str(run), str(maps / "val"), str(pred), "--batch-stats", mode)
        rep = args.out / f"eval_batch_stats_{mode}"
        p2p("evaluate", "--real", str(maps / "val"), "--fake", str(pred), "--metrics", "l1,ssim",
            "--resize", "real", "--out", str(rep))
        s = pd.read_csv(rep / "summary.csv").set_index("metric")
        rows.append({"BatchNorm at test": "running statistics (eval, default)" if mode == "off"
                     else "per-image statistics (paper)", "val L1 (0-255)": s.loc["l1", "mean"],
                     "L1 95% CI": f'{s.loc["l1", "ci95_low"]:.2f}-{s.loc["l1", "ci95_high"]:.2f}',
                     "val SSIM": s.loc["ssim", "mean"], "n": int(s.loc["l1", "n"])})
    table = pd.DataFrame(rows)
    print(f"maps val, pix2pix ngf={args.ngf} at {args.size} px, {args.epochs} epochs (train {t_train / 60:.1f} min)")
    print(table.to_string(index=False))
    (args.out / "bn_modes.csv").write_text(table.to_csv(index=False))


if __name__ == "__main__":
    main()
