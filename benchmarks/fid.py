"""Benchmark: FID throughput of ``p2ptools evaluate --metrics fid`` against pytorch-fid, same run.

Both score the same few hundred real 256² PNGs — maps/train aerial photos ("real") against their
maps ("fake"), from ../shared/data/maps — with the same weights file, each as a fresh process
(``python -m pytorch_fid`` with its defaults: batch 50, 2 workers; ``p2ptools evaluate``), timed
end to end, start-up included. Images/s = images scored (both sets) / wall seconds.

No pretrained weights can be downloaded here, so the script writes a weights file in the standard
format (``pt_inception-2015-12-05-6726825d.pth``: the FID Inception state dict) with random
weights whose BatchNorm statistics are calibrated on real images. Throughput does not depend on the
weights' values; the FID values are then not comparable with published ones, only with each other.
pytorch-fid finds the file in ``$TORCH_HOME/hub/checkpoints`` as it finds a downloaded one.

Usage: ``python benchmarks/fid.py [--images 300] [--out bench-out]``
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, print_machine, run_measured  # noqa: E402

from p2ptools.evaluation.metrics.fid import FID_WEIGHTS, fid_inception_v3  # noqa: E402


def make_sets(n: int, out: Path) -> tuple[Path, Path]:
    real, fake = out / "fid-real", out / "fid-fake"
    for d in (real, fake):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for p in sorted((SHARED / "maps" / "train").glob("*.jpg"))[:n]:
        img = cv2.imread(str(p))
        w = img.shape[1] // 2
        cv2.imwrite(str(real / f"{p.stem}.png"), cv2.resize(img[:, :w], (256, 256), interpolation=cv2.INTER_AREA))
        cv2.imwrite(str(fake / f"{p.stem}.png"), cv2.resize(img[:, w:], (256, 256), interpolation=cv2.INTER_AREA))
    return real, fake


def make_weights(real: Path, out: Path) -> Path:
    """Random FID-Inception weights with BatchNorm statistics from real images, in the standard format."""
    torch.manual_seed(0)
    ref = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=True)
    net = fid_inception_v3(ref.state_dict())
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    imgs = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(real.iterdir())[:16]]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x.float() / 255, size=(299, 299), mode="bilinear") * 2 - 1
    net.train()
    with torch.no_grad():
        net(x)
    d = out / "fid-weights" / "hub" / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), d / FID_WEIGHTS)
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = ap.parse_args()
    print_machine()
    if not (SHARED / "maps" / "train").is_dir():
        sys.exit(f"needs the real maps pairs in {SHARED / 'maps'} (../shared/data)")
    try:
        import pytorch_fid  # noqa: F401
    except ImportError:
        sys.exit("needs pytorch-fid (pip install pytorch-fid), the baseline")
    real, fake = make_sets(args.images, args.out)
    wdir = make_weights(real, args.out)
    env = {"TORCH_HOME": str(wdir.parents[1]), "PYTHONWARNINGS": "ignore"}
    n = 2 * args.images
    rows = []
    wall, mem, text = run_measured([sys.executable, "-m", "pytorch_fid", str(real), str(fake), "--device", "cpu",
                                    "--num-workers", "2"], env)
    theirs = float(re.search(r"FID:\s*([-\d.eE+]+)", text).group(1))
    rows.append(dict(impl="pytorch-fid 0.3 (batch 50, 2 workers)", images=n, seconds=round(wall, 2),
                     images_per_s=round(n / wall, 2), peak_mem_mb=round(mem), fid=theirs))
    rep = args.out / "fid-report"
    wall, mem, _ = run_measured([sys.executable, "-m", "p2ptools", "-q", "evaluate", "--real", str(real), "--fake",
                                 str(fake), "--metrics", "fid", "--out", str(rep), "--weights-dir", str(wdir),
                                 "--device", "cpu"], env)
    ours = float(pd.read_csv(rep / "summary.csv").set_index("metric").loc["fid", "mean"])
    rows.append(dict(impl="p2ptools evaluate --metrics fid", images=n, seconds=round(wall, 2),
                     images_per_s=round(n / wall, 2), peak_mem_mb=round(mem), fid=ours))
    table = pd.DataFrame(rows)
    table["speedup"] = (table.images_per_s / table.images_per_s.iloc[0]).round(2)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "fid.csv", index=False)
    print(table.to_string(index=False))
    print(f"\n|ΔFID| = {abs(ours - theirs):.2e} (relative {abs(ours - theirs) / max(abs(theirs), 1e-12):.1e}); "
          f"{n} images on {os.cpu_count()} CPU cores")


if __name__ == "__main__":
    main()
