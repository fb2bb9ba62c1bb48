"""``p2ptools train``."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from p2ptools.cli.options import max_pixels_option, parse_assignments
from p2ptools.config import AB_DIRECTIONS, AUGMENTS, GAN_LOSSES, PRESET_NAMES, TRAIN_AMPS

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


def _preset_default(field: str) -> str:
    """Help text's default of a training option: the pix2pix preset's value, or the built-in one."""
    import dataclasses

    from p2ptools.config import TrainConfig, load_preset

    with contextlib.suppress(Exception):
        value = load_preset("pix2pix")[1].get(field)
        if value is not None:
            return f"the preset's; pix2pix: {value}"
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return f"the preset's, else {defaults[field]}"


@click.command(short_help="Train a pix2pix model on an aligned A|B dataset.")
@click.argument("dataset", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", "preset", default=None, show_default="pix2pix",
              help=f"Model preset: a YAML file or a bundled name ({', '.join(PRESET_NAMES)}). "
                   "With --resume it must be the run's own.")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder (checkpoints, logs, samples).")
@click.option("--resume", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Continue the run in this folder where it stopped (its latest.pt); options given with it "
                   "change the run (more --epochs, another --patience …) and each change is printed.")
@click.option("--epochs", type=click.IntRange(min=1), show_default=_preset_default("epochs"),
              help="Total epochs of the run.")
@click.option("--decay-epochs", type=click.IntRange(min=0),
              show_default="the preset's share of --epochs; pix2pix: half",
              help="The last epochs, over which the learning rate decays linearly to 0.")
@click.option("--batch-size", type=click.IntRange(min=1), show_default=_preset_default("batch_size"))
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), show_default=_preset_default("lr"),
              help="Learning rate.")
@click.option("--gan-loss", type=click.Choice(GAN_LOSSES),
              show_default=_preset_default("gan_loss"))
@click.option("--lambda-l1", type=click.FloatRange(min=0), show_default=_preset_default("lambda_l1"),
              help="Weight of the L1 term.")
@click.option("--augment", type=click.Choice(AUGMENTS), show_default=_preset_default("augment"),
              help="flip: resize, random crop, horizontal flips; d4: also vertical flips and 90° rotations.")
@click.option("--direction", type=click.Choice(AB_DIRECTIONS), show_default=_preset_default("direction"))
@click.option("--workers", metavar="N|auto", show_default=_preset_default("workers"),
              help="DataLoader worker processes; auto: from the usable cores and the device (up to 8 "
                   "on CUDA, none on a CPU share of two cores or fewer).")
@click.option("--seed", type=int, show_default=_preset_default("seed"))
@click.option("--device", show_default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps …")
@click.option("--amp", type=click.Choice(TRAIN_AMPS), show_default="auto",
              help="Mixed precision; auto = bf16 where the device runs it natively (CUDA, CPUs with AMX or "
                   "AVX-512 BF16), else fp32.")
@click.option("--channels-last/--no-channels-last", default=None, show_default="on with CUDA, else off",
              help="Channels-last memory format.")
@click.option("--compile", "compile", is_flag=True, default=None,
              help="torch.compile the generator and the discriminator: minutes of compiling first, then "
                   "faster steps (needs a C++ compiler on the CPU, Triton on CUDA).")
@click.option("--patience", type=click.IntRange(min=0), show_default=_preset_default("patience"),
              help="Early stopping: epochs without a better val L1 (0: never).")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many steps (a short run).")
@click.option("--save-every", type=click.IntRange(min=1), show_default=_preset_default("save_every"),
              help="Steps between latest.pt checkpoints on the CPU (on CUDA --save-minutes counts instead); also "
                   "written at the end, on Ctrl-C and SIGTERM.")
@click.option("--save-minutes", type=click.FloatRange(min=0), show_default=_preset_default("save_minutes"),
              help="latest.pt is also written after the first epoch, then at the end of each epoch that ends this "
                   "many minutes after the last one: a killed run loses at most one epoch or this long.")
@click.option("--save-epoch-freq", type=click.IntRange(min=0), show_default=_preset_default("save_epoch_freq"),
              help="Epochs between epoch_K.pt snapshots (generator only; 0: none).")
@click.option("--keep-last", type=click.IntRange(min=0), show_default=_preset_default("keep_last"),
              help="Keep only the newest K epoch_K.pt snapshots (0: all).")
@click.option("--set", "sets", multiple=True, metavar="SECTION.FIELD=VALUE",
              help="Override any preset field, e.g. --set model.ngf=32 --set train.val_images=200.")
@max_pixels_option
def train(dataset: Path | None, preset: str, out: Path | None, resume: Path | None, sets: tuple[str, ...],
          **options: Any) -> None:
    """Train pix2pix on DATASET (train/ and optionally val/ folders of A|B images).

    Works on what `p2ptools tile` and `make-inpaint` write and on the standard pix2pix datasets
    (facades, maps, cityscapes) unchanged. --epochs is the whole run: the learning rate is constant,
    then decays linearly to 0 over the last --decay-epochs (the paper: 200 = 100 + 100). Writes
    RUN_DIR/latest.pt and best.pt (full state, for --resume), epoch_K.pt snapshots (generator only,
    the newest --keep-last), losses.csv, val.csv, sample grids (input | target | output) per epoch
    and loss_curves.png, and logs one line per epoch. For several GPUs:
    torchrun --nproc_per_node N -m p2ptools train ...

    \b
    Examples:
      p2ptools train facades --model pix2pix --out runs/facades
      p2ptools train inria-256 --model pix2pix --augment d4 --out runs/inria
      p2ptools train --resume runs/facades --epochs 300
    """
    from p2ptools.config import TrainConfig, from_mapping, load_preset
    from p2ptools.model.config import ModelConfig
    from p2ptools.training.train import fit, resume_configs

    overrides = _parse_sets(sets)
    given = {k: v for k, v in options.items() if v is not None}
    if resume is not None:
        from p2ptools.runtime.lock import hold

        hold(resume)  # before reading the run: a second --resume of a running run is refused, naming it
        if dataset is not None:
            given["dataset"] = dataset
        model_given = dict(overrides["model"])
        if preset is not None:  # the preset's networks must be the run's (checked field by field)
            model_given = {**load_preset(preset)[0], **model_given}
        mcfg, tcfg, changes = resume_configs(resume, model_given, {**overrides["train"], **given},
                                             preset=preset)
        for line in changes:
            click.echo(f"resume {resume}: {line}", err=True)
    else:
        if dataset is None or out is None:
            raise click.UsageError("give DATASET and --out RUN_DIR (or --resume RUN_DIR)")
        preset = preset or "pix2pix"
        model_map, train_map = load_preset(preset)
        model_map.update(overrides["model"])
        train_map.update(overrides["train"])
        train_map.update(given)
        mcfg = from_mapping(ModelConfig, model_map, f"{preset} (model)")
        tcfg = from_mapping(TrainConfig, {**train_map, "dataset": dataset, "out": out}, f"{preset} (train)")
    result = fit(mcfg, tcfg, resume=resume is not None, progress=True)
    s = result.state
    best = f", best val L1 {s.best_val_l1:.2f} (0–255) at epoch {s.best_epoch}" if s.best_epoch >= 0 else ""
    click.echo(f"trained {mcfg.name} for {s.global_step} steps ({s.epoch} epochs, stopped by {result.stopped_by}"
               f"{best}); checkpoints in {result.run_dir}")
