"""``p2ptools import``."""

from __future__ import annotations

from pathlib import Path

import click

from p2ptools.config import AB_DIRECTIONS


@click.command(short_help="Make a p2ptools run of a generator trained by the official pix2pix code.")
@click.argument("official", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--direction", type=click.Choice(AB_DIRECTIONS), default=None,
              show_default="train_opt.txt's, else AtoB", help="Which half of an A|B image the model reads.")
@click.option("--palette", default=None,
              help="The label palette (name or YAML/JSON file) when the model reads label maps (label → photo).")
@click.option("--size", type=click.IntRange(min=4), default=None, show_default="the crop size it was trained at",
              help="The size images are translated at.")
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier import in RUN_DIR (a training run or files of anyone else are never replaced).")
def import_official(official: Path, run_dir: Path, direction: str | None, palette: str | None,
                    size: int | None, overwrite: bool) -> None:
    """Write OFFICIAL (a *_net_G.pth of the official pix2pix/CycleGAN code) as RUN_DIR/latest.pt.

    The architecture comes from train_opt.txt beside the file, or from its tensor shapes (unet_128,
    unet_256, resnet_6blocks, resnet_9blocks; batch or instance norm). The run carries a data
    contract (direction, size, palette), so predict (folders, whole scenes, many scenes) and
    evaluate use it like a run p2ptools trained. predict also takes OFFICIAL directly.

    \b
    Examples:
      p2ptools import checkpoints/facades_label2photo/latest_net_G.pth runs/facades-official
      p2ptools import latest_net_G.pth runs/labels --palette inria --direction AtoB
    """
    from p2ptools.model.import_run import import_official as run_import

    target = run_import(official, run_dir, direction, palette, size, overwrite)
    click.echo(f"imported {official} → {target}")
