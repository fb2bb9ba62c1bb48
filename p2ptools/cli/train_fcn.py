"""``p2ptools train-fcn``."""

from __future__ import annotations

from pathlib import Path

import click

from p2ptools.cli.options import max_pixels_option
from p2ptools.config import HALVES, SEGMENTER_ARCHS


@click.command("train-fcn", short_help="Train the segmenter behind the FCN-score on real photos → labels.")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="SEG_DIR for segmenter.pt.")
@click.option("--palette", default=None,
              help="Label palette: from DATASET/dataset.json by default; a name, a YAML/JSON file, or kmeans:K.")
@click.option("--label-side", type=click.Choice(HALVES), default=None,
              help="Which half of the A|B images is the label (from dataset.json by default; facades: B).")
@click.option("--arch", type=click.Choice(SEGMENTER_ARCHS), default="unet", show_default=True)
@click.option("--backbone-weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="ImageNet ResNet-50 weights file for fcn_resnet50 (e.g. resnet50-0676ba61.pth).")
@click.option("--size", type=click.IntRange(min=16), default=256, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@max_pixels_option
def train_fcn(dataset: Path, out: Path, **options: object) -> None:
    """Train a segmenter on the real photos → labels of DATASET (train/, validated on val/).

    Its pixel accuracy on real photos is the FCN-score's "ground truth" upper bound; use it with
    p2ptools evaluate --metrics fcn --segmenter SEG_DIR.
    """
    from p2ptools.evaluation.segment import SegmenterOptions, train_segmenter

    best = train_segmenter(SegmenterOptions(dataset=dataset, out=out, **options))  # type: ignore[arg-type]
    click.echo(f"segmenter in {out / 'segmenter.pt'}: {best['on']} per-pixel acc {best['per_pixel_acc']:.3f}, "
               f"mean class IoU {best['mean_class_iou']:.3f} (epoch {best['epoch']})")
