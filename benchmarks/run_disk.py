"""Disk used by a full paper run on facades, measured on the real networks and extrapolated.

Builds the pix2pix preset's networks, takes one real training step on a facades pair (so both Adam
states exist), writes a full checkpoint, a generator-only snapshot and a sample grid through the
training code, and extrapolates to the paper's run (400 facades pairs, 200 epochs, batch 1) with
the defaults: latest.pt + best.pt + the newest ``keep_last`` of the ``epoch_K.pt`` snapshots taken
every ``save_epoch_freq`` epochs + one sample grid per epoch + the CSV logs. The baseline is the
seed's policy: a full checkpoint after every epoch, none removed.

    python benchmarks/run_disk.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_machine  # noqa: E402

from p2ptools.config import TrainConfig, from_mapping, load_preset  # noqa: E402
from p2ptools.model.checkpoints import RunState, save_checkpoint  # noqa: E402
from p2ptools.model.config import ModelConfig
from p2ptools.training.data import AlignedDataset, to_device_batch  # noqa: E402
from p2ptools.training.train import build_models, save_samples, train_step  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=400, help="training pairs (facades: 400)")
    ap.add_argument("--log-every", type=int, default=10)
    args = ap.parse_args()
    print_machine()
    facades = SHARED / "facades"
    model_map, train_map = load_preset("pix2pix")
    mcfg = from_mapping(ModelConfig, model_map, "pix2pix")
    with tempfile.TemporaryDirectory() as tmp:
        tcfg = from_mapping(TrainConfig, {**train_map, "dataset": facades, "out": tmp, "amp": "none"}, "pix2pix")
        dev = torch.device("cpu")
        m = build_models(mcfg, tcfg, dev)
        ds = AlignedDataset(facades, "train", "BtoA", mcfg.load_size, mcfg.image_size, "flip", limit=4)
        item = ds[0]
        train_step(m, *to_device_batch({"A": item["A"][None], "B": item["B"][None]}, dev), tcfg, dev)
        full = save_checkpoint(Path(tmp) / "latest.pt", m, RunState(), mcfg, tcfg, full=True, dataset={})
        snap = save_checkpoint(Path(tmp) / "epoch_5.pt", m, RunState(), mcfg, tcfg, full=False, dataset={})
        save_samples(m.G, ds, Path(tmp) / "samples" / "epoch_001.jpg", dev)
        grid = (Path(tmp) / "samples" / "epoch_001.jpg").stat().st_size
    epochs, freq, keep = tcfg.epochs, tcfg.save_epoch_freq, tcfg.keep_last
    steps = args.images * epochs
    logs = steps // args.log_every * 90 + epochs * 60  # measured row sizes of losses.csv / val.csv
    ours = 2 * full + min(keep, epochs // freq) * snap + epochs * grid + logs
    written = full * (steps // tcfg.save_every + 1)
    baseline = (epochs + 2) * full + epochs * grid + logs  # the seed: latest + best + a full epoch_K every epoch
    mb = 1e6
    print(f"full checkpoint (latest.pt / best.pt): {full / mb:.1f} MB; snapshot epoch_K.pt: {snap / mb:.1f} MB; "
          f"sample grid: {grid / 1e3:.0f} kB")
    print(f"paper run on facades ({args.images} pairs × {epochs} epochs, save_epoch_freq {freq}, keep_last {keep}): "
          f"{ours / 1e9:.2f} GB on disk at the end (latest.pt rewritten ~{written / full:.0f} times)")
    print(f"baseline (a full epoch_K.pt every epoch, none removed): {baseline / 1e9:.1f} GB; "
          f"ratio {baseline / ours:.0f}×")


if __name__ == "__main__":
    main()
