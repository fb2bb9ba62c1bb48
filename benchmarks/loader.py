"""The training loader before and after issue #29, in the same run: samples/s per worker count.

BEFORE is the old path, rebuilt here: samples cross from the workers as float32 in [-1, 1] (made by
``to_tensor`` in the worker), and a new DataLoader (new worker processes) is started every epoch.
AFTER is p2ptools' loader (:func:`p2ptools.training.train._loader`): uint8 samples, one loader for
the run with persistent workers, the epoch carried by the sampler; the consumer makes the batch
[-1, 1] floats (:func:`p2ptools.training.data.to_device_batch`; here on the CPU, in the timed loop,
which counts against AFTER). Both read the facades training pairs (512×256 JPEGs) at 256 px with
flip augmentation (resize to 286, random crop, horizontal flip), batch 1 as the paper; every epoch
is timed from the loop's start, so starting workers counts. The best of ``--rounds`` rounds counts
(the two paths alternate within a round). Skips when ../shared/data/facades is absent.

    python3 benchmarks/loader.py [--epochs 3] [--images 400] [--workers 0 1 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_machine  # noqa: E402

from p2ptools.config import TrainConfig  # noqa: E402
from p2ptools.model.tensors import to_tensor  # noqa: E402
from p2ptools.prep.dataset import read_ab  # noqa: E402
from p2ptools.training.data import AlignedDataset, EpochSampler, paired_transform, to_device_batch  # noqa: E402
from p2ptools.training.train import _loader  # noqa: E402

CPU = torch.device("cpu")


class FloatSamples(AlignedDataset):
    """The old samples, as the old ``__getitem__`` made them: float32 in [-1, 1] by ``to_tensor`` in
    the worker."""

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        a, b = read_ab(self.files[i], self.direction)
        a, b = paired_transform(a, b, self.load_size, self.crop_size, self.augment, rng)
        return {"A": to_tensor(a), "B": to_tensor(b), "name": self.files[i].stem}


def before(ds: FloatSamples, workers: int, epochs: int, batch: int) -> float:
    """Samples/s of the old loop: a DataLoader per epoch, non-persistent workers, float32 samples."""
    t, n = time.perf_counter(), 0
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        loader = DataLoader(ds, batch_size=batch, sampler=EpochSampler(len(ds), 0, epoch), num_workers=workers,
                            pin_memory=False, generator=torch.Generator().manual_seed(epoch), persistent_workers=False)
        for b in loader:
            n += b["A"].shape[0]
        del loader
    return n / (time.perf_counter() - t)


def after(ds: AlignedDataset, tcfg: TrainConfig, epochs: int) -> float:
    """Samples/s of p2ptools' loop: one loader for the run, persistent workers, uint8 samples."""
    t, n = time.perf_counter(), 0
    sampler = EpochSampler(len(ds), tcfg.seed, tagged=True)
    loader = _loader(ds, tcfg, CPU, sampler)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for b in loader:
            A, _ = to_device_batch(b, CPU)
            n += A.shape[0]
    del loader
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--images", type=int, default=400, help="facades training pairs used (400: all)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    facades = SHARED / "facades"
    if not (facades / "train").is_dir():
        print(f"skipped: needs the facades pairs in {facades} (../shared/data)")
        return
    print_machine()
    torch.set_num_threads(1)  # the consumer only collects batches; the workers do the work
    kw = dict(load_size=286, crop_size=256, augment="flip", seed=0, limit=args.images)
    old_ds, new_ds = FloatSamples(facades, "train", **kw), AlignedDataset(facades, "train", **kw)
    per_old = sum(t.nbytes for t in (old_ds[0]["A"], old_ds[0]["B"]))
    per_new = sum(t.nbytes for t in (new_ds[0]["A"], new_ds[0]["B"]))
    print(f"{len(new_ds)} facades pairs at 256 px, flip, batch {args.batch_size}, {args.epochs} epochs; bytes per "
          f"sample through the worker queue: before {per_old:,} (float32), after {per_new:,} (uint8), "
          f"{per_old / per_new:.0f}x fewer", flush=True)
    best: dict[int, list[float]] = {w: [0.0, 0.0] for w in args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for w in args.workers:
                tcfg = TrainConfig(dataset=facades, out=Path(tmp), batch_size=args.batch_size, workers=w)
                best[w][0] = max(best[w][0], before(old_ds, w, args.epochs, args.batch_size))
                best[w][1] = max(best[w][1], after(new_ds, tcfg, args.epochs))
    print("| workers | before: float32, workers per epoch (samples/s) | after: uint8, persistent (samples/s) "
          "| after/before |")
    print("|---|---|---|---|")
    for w, (b, a) in best.items():
        print(f"| {w} | {b:.0f} | {a:.0f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
