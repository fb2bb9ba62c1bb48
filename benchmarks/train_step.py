"""Benchmark: one full pix2pix training step at 256², against a plain fp32 eager step, same run.

The baseline is the paper's step written out plainly (as the official code does it): G forward,
D on (A, fake.detach()) and (A, B), D step, D on (A, fake), G step — fp32, eager, default
``torch.optim.Adam``, the same networks (U-Net 256 + 70×70 PatchGAN, BatchNorm, ngf = ndf = 64).
p2ptools' ``train_step`` (fused Adam) is timed with the settings given by ``--variants``
(default: fp32, bf16 autocast, bf16 + channels-last). Images/s = batch / median step time over
``--steps`` timed steps after ``--warmup``; the implementations take turns step by step so they
share the machine's noise.

The loss trajectory check trains the baseline and the fastest variant from the same weights on
the same real maps pairs for ``--trajectory`` steps and reports the mean relative difference of
the L1 term (bf16 rounds, so small differences are expected; diverging curves are not).

Usage: ``python benchmarks/train_step.py [--batches 1 4] [--steps 5] [--device cpu]``
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, print_machine  # noqa: E402

from p2ptools.config import TrainConfig  # noqa: E402
from p2ptools.model.config import ModelConfig
from p2ptools.training.data import AlignedDataset, to_device_batch  # noqa: E402
from p2ptools.training.train import Models, build_models, train_step  # noqa: E402


def baseline_step(G, D, opt_G, opt_D, A, B, lam=100.0):
    """The paper's step, fp32 eager, written out plainly."""
    fake = G(A)
    for p in D.parameters():
        p.requires_grad_(True)
    opt_D.zero_grad()
    pf = D(torch.cat([A, fake.detach()], 1))
    pr = D(torch.cat([A, B], 1))
    loss_D = 0.5 * (F.binary_cross_entropy_with_logits(pf, torch.zeros_like(pf))
                    + F.binary_cross_entropy_with_logits(pr, torch.ones_like(pr)))
    loss_D.backward()
    opt_D.step()
    for p in D.parameters():
        p.requires_grad_(False)
    opt_G.zero_grad()
    pf = D(torch.cat([A, fake], 1))
    l1 = F.l1_loss(fake, B)
    (F.binary_cross_entropy_with_logits(pf, torch.ones_like(pf)) + lam * l1).backward()
    opt_G.step()
    return l1.item()


def fresh(mcfg: ModelConfig, tcfg: TrainConfig, device: torch.device, seed: int = 0) -> Models:
    torch.manual_seed(seed)
    return build_models(mcfg, tcfg, device)


def timed_round_robin(fns: dict[str, object], warmup: int, steps: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each function, calling them in turn so all see the same machine noise."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--trajectory", type=int, default=30)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--variants", nargs="+", default=["fp32", "bf16", "bf16+cl"])
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = ap.parse_args()
    print_machine()
    device = torch.device(args.device)
    maps = SHARED / "maps"
    if not (maps / "train").is_dir():
        sys.exit(f"needs the real maps pairs in {maps} (../shared/data)")
    mcfg = ModelConfig()  # the paper's unet_256 + 70×70 PatchGAN
    ds = AlignedDataset(maps, "train", crop_size=256, load_size=286, augment="flip", seed=0)
    rows = []
    for bs in args.batches:
        batch = [ds[i] for i in range(bs)]
        A, B = to_device_batch({k: torch.stack([b[k] for b in batch]) for k in ("A", "B")}, device)
        tcfg = TrainConfig(dataset=maps, out=args.out / "unused", batch_size=bs)
        m = fresh(mcfg, tcfg, device)
        fns: dict[str, object] = {
            "baseline fp32 eager": lambda m=m, A=A, B=B: baseline_step(m.G, m.D, m.opt_G, m.opt_D, A, B)}
        for variant in args.variants:
            cl = variant.endswith("+cl")
            amp = "bf16" if variant.startswith("bf16") else ("fp16" if variant.startswith("fp16") else "none")
            tv = TrainConfig(dataset=maps, out=args.out / "unused", batch_size=bs, amp=amp, channels_last=cl)
            mv = fresh(mcfg, tv, device)
            Av, Bv = (A.contiguous(memory_format=torch.channels_last), B.contiguous(
                memory_format=torch.channels_last)) if cl else (A, B)
            fns[f"p2ptools {variant}"] = lambda mv=mv, tv=tv, Av=Av, Bv=Bv: train_step(mv, Av, Bv, tv, device)
        med = timed_round_robin(fns, args.warmup, args.steps, device)
        base = bs / med["baseline fp32 eager"]
        for impl, t in med.items():
            rows.append(dict(batch=bs, impl=impl, sec_per_step=round(t, 3), images_per_s=round(bs / t, 2),
                             speedup=round(bs / t / base, 2)))
        print(pd.DataFrame(rows[-1 - len(args.variants):]).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    best = table[table.impl != "baseline fp32 eager"].groupby("impl").speedup.mean().idxmax().replace("p2ptools ", "")

    # loss trajectory: baseline fp32 vs the fastest variant, same init, same real pairs, batch 1
    amp = "bf16" if best.startswith("bf16") else ("fp16" if best.startswith("fp16") else "none")
    tb = TrainConfig(dataset=maps, out=args.out / "unused", batch_size=1)
    tv = TrainConfig(dataset=maps, out=args.out / "unused", batch_size=1, amp=amp, channels_last=best.endswith("+cl"))
    mb, mv = fresh(mcfg, tb, device, 1), fresh(mcfg, tv, device, 1)
    mv.G.load_state_dict(copy.deepcopy(mb.G.state_dict()))
    mv.D.load_state_dict(copy.deepcopy(mb.D.state_dict()))
    traj = []
    for i in range(args.trajectory):
        item = ds[i]
        A, B = to_device_batch({"A": item["A"][None], "B": item["B"][None]}, device)
        torch.manual_seed(100 + i)  # the same dropout masks for both
        lb = baseline_step(mb.G, mb.D, mb.opt_G, mb.opt_D, A, B)
        torch.manual_seed(100 + i)
        lv = train_step(mv, A, B, tv, device)["loss_G_L1"]
        traj.append(dict(step=i, baseline_l1=lb, variant_l1=lv))
    tr = pd.DataFrame(traj)
    rel = ((tr.variant_l1 - tr.baseline_l1).abs() / tr.baseline_l1).mean()
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "train_step.csv", index=False)
    tr.to_csv(args.out / "train_step_trajectory.csv", index=False)
    print()
    print(table.to_string(index=False))
    print(f"\ndevice {device}; loss trajectory over {args.trajectory} real maps steps, baseline fp32 vs {best}: "
          f"mean relative |ΔL1| = {rel:.4f}; first/last L1 baseline {tr.baseline_l1.iloc[0]:.4f}/"
          f"{tr.baseline_l1.iloc[-1]:.4f}, {best} {tr.variant_l1.iloc[0]:.4f}/{tr.variant_l1.iloc[-1]:.4f}")


if __name__ == "__main__":
    main()
