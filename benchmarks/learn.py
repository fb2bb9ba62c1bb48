"""Benchmark: does the bundled pix2pix learn in a fixed CPU budget? (maps: aerial photo → map)

Trains the paper's model (U-Net 256 + 70×70 PatchGAN, batch 1, Adam 2e-4, bf16 autocast by
default: the fastest CPU setting of ``train_step.py``) on the real maps pairs in
../shared/data/maps/train for ``--minutes`` of wall time, and every ``--val-every`` seconds
measures the validation L1 (0–255 scale, eval mode) on ../shared/data/maps/val. The reference is
the L1 of a trivial predictor: the mean target image of the training set. Writes
``bench-out/learn.csv`` and ``bench-out/learn.png`` (the curve).

Usage: ``python benchmarks/learn.py [--minutes 10] [--val-every 60] [--amp bf16] [--preset pix2pix]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, print_machine  # noqa: E402

from p2ptools.config import TrainConfig, load_preset  # noqa: E402
from p2ptools.model.config import ModelConfig
from p2ptools.training.data import AlignedDataset, EpochSampler, to_device_batch  # noqa: E402
from p2ptools.training.train import build_models, save_samples, train_step, validate  # noqa: E402


def mean_image_l1(train: AlignedDataset, val: AlignedDataset) -> float:
    """L1 (0–255) on ``val`` of always predicting the mean training target."""
    cpu = torch.device("cpu")

    def target(ds: AlignedDataset, i: int) -> torch.Tensor:
        return to_device_batch({"A": ds[i]["A"][None], "B": ds[i]["B"][None]}, cpu)[1][0]

    mean = torch.stack([target(train, i) for i in range(len(train))]).mean(0)
    return float(np.mean([(target(val, i) - mean).abs().mean().item() * 127.5 for i in range(len(val))]))


def plot(table: pd.DataFrame, trivial: float, label: str, path: Path) -> None:
    """The validation curve, whole and zoomed on the end of training, against the trivial predictor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, zoom in zip(axes, (False, True), strict=True):
        ax.plot(table.seconds / 60, table.val_l1_255, "o-", label=label)
        ax.axhline(trivial, color="gray", ls="--", label="mean training map")
        ax.set_xlabel("training minutes (CPU, 2 cores)")
        ax.set_ylabel("val L1 (0–255)")
        if zoom:
            tail = table.val_l1_255.iloc[1:]
            ax.set_ylim(min(tail.min(), trivial) * 0.9, max(tail.max(), trivial) * 1.1)
            ax.set_title("zoomed")
        else:
            ax.set_title("maps: aerial → map, validation on maps/val")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--val-every", type=float, default=60.0, help="seconds of training between validations")
    ap.add_argument("--amp", default="bf16")
    ap.add_argument("--preset", default="pix2pix")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = ap.parse_args()
    print_machine()
    maps = SHARED / "maps"
    if not (maps / "train").is_dir():
        sys.exit(f"needs the real maps pairs in {maps} (../shared/data)")
    model, train = load_preset(args.preset)
    mcfg = ModelConfig(**model)
    tcfg = TrainConfig(**{**train, "dataset": maps, "out": args.out / "unused", "amp": args.amp, "workers": 1})
    device = torch.device("cpu")
    torch.manual_seed(0)
    train_ds = AlignedDataset(maps, "train", tcfg.direction, mcfg.load_size, mcfg.image_size, tcfg.augment, seed=0)
    val_ds = AlignedDataset(maps, "val", tcfg.direction, mcfg.load_size, mcfg.image_size, augment="none")
    val_loader = DataLoader(val_ds, batch_size=8)
    trivial = mean_image_l1(AlignedDataset(maps, "train", crop_size=mcfg.image_size, augment="none"), val_ds)
    print(f"trivial predictor (mean training map): val L1 {trivial:.2f}", flush=True)
    m = build_models(mcfg, tcfg, device)
    rows = [dict(seconds=0.0, step=0, epoch=0, **validate(m, val_loader, tcfg, device), trivial_l1_255=trivial)]
    print(rows[-1], flush=True)
    budget, trained, step, epoch, next_val = args.minutes * 60, 0.0, 0, 0, args.val_every
    while trained < budget:
        train_ds.set_epoch(epoch)
        loader = DataLoader(train_ds, batch_size=1, sampler=EpochSampler(len(train_ds), 0, epoch), num_workers=1)
        for batch in loader:
            t = time.perf_counter()
            train_step(m, *to_device_batch(batch, device), tcfg, device)
            trained += time.perf_counter() - t
            step += 1
            if trained >= next_val or trained >= budget:
                rows.append(dict(seconds=round(trained, 1), step=step, epoch=epoch,
                                 **validate(m, val_loader, tcfg, device), trivial_l1_255=trivial))
                print(rows[-1], flush=True)
                next_val += args.val_every
            if trained >= budget:
                break
        epoch += 1
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "learn.csv", index=False)
    plot(table, trivial, f"pix2pix ({args.preset}, {args.amp})", args.out / "learn.png")
    with torch.no_grad():
        save_samples(m.G, val_ds, args.out / "learn_samples.png", device, count=4)
    last = table.iloc[-1]
    print(f"\nafter {last.seconds / 60:.1f} min ({int(last.step)} steps): val L1 {last.val_l1_255:.2f} vs trivial "
          f"{trivial:.2f} (ratio {last.val_l1_255 / trivial:.2f}); start {table.val_l1_255.iloc[0]:.2f}")


if __name__ == "__main__":
    main()
