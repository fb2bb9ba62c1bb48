"""``p2ptools train``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from p2ptools.cli.options import parse_assignments

EXPECTED = "model.FIELD=VALUE or train.FIELD=VALUE"


def _parse_sets(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``model.ngf=8`` → {"model": {"ngf": 8}} (values parsed as YAML scalars)."""
    out: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for key, value in parse_assignments(values, EXPECTED).items():
        section, dot, name = key.partition(".")
        if not dot or section not in out or not name:
            raise click.BadParameter(f"{key!r}: expected {EXPECTED}", param_hint="--set")
        out[section][name] = value
    return out


@click.command(short_help="Train a pix2pix model on an aligned A|B dataset.")
@click.argument("dataset", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", "preset", default="pix2pix", show_default=True,
              help="Model preset: a YAML file or a bundled name (pix2pix, pix2pix-512, se-resunet, wgan, tiny).")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder (checkpoints, logs, samples).")
@click.option("--resume", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Continue the run in this folder exactly where it stopped (its latest.pt).")
@click.option("--epochs", type=click.IntRange(min=0), help="Epochs at the initial learning rate.")
@click.option("--epochs-decay", type=click.IntRange(min=0), help="Epochs of linear learning-rate decay to 0.")
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Learning rate.")
@click.option("--gan-loss", type=click.Choice(["vanilla", "lsgan", "wgan", "wgangp"]))
@click.option("--lambda-l1", type=click.FloatRange(min=0), help="Weight of the L1 term (paper: 100).")
@click.option("--augment", type=click.Choice(["none", "flip", "d4"]),
              help="flip: resize, random crop, horizontal flips; d4: also vertical flips and 90° rotations.")
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]))
@click.option("--workers", "num_workers", type=click.IntRange(min=0), help="DataLoader worker processes.")
@click.option("--seed", type=int)
@click.option("--device", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps …")
@click.option("--amp", type=click.Choice(["none", "bf16", "fp16"]),
              help="Mixed precision (bf16 helps on recent CPUs too).")
@click.option("--channels-last", is_flag=True, default=None, help="Channels-last memory format.")
@click.option("--patience", type=click.IntRange(min=0), help="Early stopping: epochs without a better val L1.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many steps (a short run).")
@click.option("--save-every", type=click.IntRange(min=1), help="Steps between latest.pt checkpoints.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.FIELD=VALUE",
              help="Override any preset field, e.g. --set model.ngf=32 --set train.val_images=200.")
def train(dataset: Path | None, preset: str, out: Path | None, resume: Path | None, sets: tuple[str, ...],
          **options: Any) -> None:
    """Train pix2pix on DATASET (train/ and optionally val/ folders of A|B images).

    Works on what `p2ptools tile` and `make-inpaint` write and on the standard pix2pix datasets
    (facades, maps, cityscapes) unchanged. Writes RUN_DIR/latest.pt (every --save-every steps, at
    the end and on Ctrl-C), epoch_K.pt, best.pt (best validation L1), losses.csv, val.csv, sample
    grids (input | target | output) per epoch and loss_curves.png. For several GPUs:
    torchrun --nproc_per_node N -m p2ptools train ...

    \b
    Examples:
      p2ptools train facades --model pix2pix --out runs/facades
      p2ptools train inria-256 --model pix2pix --augment d4 --amp bf16 --out runs/inria
      p2ptools train --resume runs/facades
    """
    from p2ptools.config import ModelConfig, TrainConfig, from_mapping, load_preset
    from p2ptools.train import fit, load_checkpoint

    if resume is not None:
        ckpt = load_checkpoint(resume / "latest.pt")
        mcfg = ModelConfig(**ckpt["model_config"])
        tcfg = TrainConfig(**{**ckpt["train_config"], "out": resume})
        if dataset is not None and Path(dataset).resolve() != Path(tcfg.dataset).resolve():
            raise click.UsageError(f"--resume continues the run on {tcfg.dataset}; leave DATASET out")
    else:
        if dataset is None or out is None:
            raise click.UsageError("give DATASET and --out RUN_DIR (or --resume RUN_DIR)")
        model_map, train_map = load_preset(preset)
        overrides = _parse_sets(sets)
        model_map.update(overrides["model"])
        train_map.update(overrides["train"])
        train_map.update({k: v for k, v in options.items() if v is not None})
        mcfg = from_mapping(ModelConfig, model_map, f"{preset} (model)")
        tcfg = from_mapping(TrainConfig, {**train_map, "dataset": dataset, "out": out}, f"{preset} (train)")
    result = fit(mcfg, tcfg, resume=resume is not None, progress=True)
    s = result.state
    best = f", best val L1 {s.best_val_l1:.2f} (0–255) at epoch {s.best_epoch}" if s.best_epoch >= 0 else ""
    click.echo(f"trained {mcfg.name} for {s.global_step} steps ({s.epoch} epochs, stopped by {result.stopped_by}"
               f"{best}); checkpoints in {result.run_dir}")
