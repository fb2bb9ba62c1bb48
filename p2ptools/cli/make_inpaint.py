"""``p2ptools make-inpaint``."""

from __future__ import annotations

from pathlib import Path

import click

from p2ptools.cli.options import (
    build_config,
    config_option,
    dask_option,
    format_option,
    jpeg_quality_option,
    max_pixels_option,
    overwrite_option,
    seed_option,
    split_option,
    workers_option,
)
from p2ptools.config import FILLS, FITS, HOLES


@click.command("make-inpaint", short_help="Build inpainting AB pairs (photo with a hole | photo).")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--size", type=click.IntRange(min=8), default=None, help="Side of A and B in pixels (default 256).")
@click.option("--fit", type=click.Choice(FITS), default=None,
              help="Make photos square by centre-cropping (default), padding, or stretching.")
@click.option("--hole", type=click.Choice(HOLES), default=None,
              help="center: one centred rectangle (default); random: one anywhere; random-multi: 2–5 of them.")
@click.option("--hole-area", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Fraction of the image the hole covers (default 1/9: a third of each side).")
@click.option("--fill", type=click.Choice(FILLS), default=None,
              help="What fills the hole (default white, the pix2pix protocol).")
@click.option("--save-masks", is_flag=True, default=None, help="Also write each hole mask to OUT/masks/<split>/.")
@split_option
@seed_option
@format_option
@jpeg_quality_option
@workers_option
@dask_option
@overwrite_option
@config_option
@max_pixels_option
def make_inpaint(src: Path, out: Path, config_file: Path | None, **options: object) -> None:
    """Turn every photo under SRC into an inpainting pair: A = photo with a hole, B = photo.

    Reads JPEG, PNG, WebP, BMP and TIFF/GeoTIFF recursively: grayscale, RGBA (composited on
    white), palette, 16-bit and EXIF-rotated photos all become 3-channel 8-bit squares. Writes
    OUT/{train,val,test}/<name>.png, OUT/manifest.csv (source, size, hole box, split) and
    OUT/dataset.json. Images with identical pixels are reported and kept in one split. Files that
    cannot be used are listed and skipped (exit 1). Rerunning the same command resumes.

    \b
    Examples:
      p2ptools make-inpaint photos/ inpaint-256
      p2ptools make-inpaint photos/ inpaint-512 --size 512 --hole random-multi --save-masks
    """
    from p2ptools.config import InpaintConfig
    from p2ptools.errors import SceneFailures
    from p2ptools.prep.inpaint import make_inpaint_dataset

    cfg = build_config(InpaintConfig, config_file, "make_inpaint", src=src, out=out, **options)
    report = make_inpaint_dataset(cfg, progress=True)
    if report.skipped:
        raise SceneFailures(report.skipped, report.summary())
    click.echo(report.summary())
