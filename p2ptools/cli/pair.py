"""``p2ptools pair``."""

from __future__ import annotations

from pathlib import Path

import click

from p2ptools.cli.options import (
    format_option,
    jpeg_quality_option,
    max_pixels_option,
    overwrite_option,
    workers_option,
)


@click.command(short_help="Join two folders of same-named images into A|B images.")
@click.argument("a_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("b_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--resize", "resize_b", is_flag=True, help="Resize B images to the size of their A image.")
@format_option
@jpeg_quality_option
@workers_option
@overwrite_option
@max_pixels_option
def pair(a_dir: Path, b_dir: Path, out: Path, resize_b: bool, format: str | None, jpeg_quality: int | None,
         workers: int | None, overwrite: bool | None) -> None:
    """Join same-named images of A_DIR and B_DIR side by side into OUT (A left, B right).

    Names are matched by file stem, per split when both folders have train/, val/, test/
    subfolders (what pix2pix's combine_A_and_B.py expects). Unmatched names and size mismatches
    are listed and nothing is written; --resize resizes B to A instead.
    """
    from p2ptools.errors import SceneFailures
    from p2ptools.prep.pairs import PairOptions, pair_folders

    options = PairOptions(a_dir=a_dir, b_dir=b_dir, out=out, resize_b=resize_b, format=format or "png",
                          jpeg_quality=jpeg_quality or 95, workers=workers or 1, overwrite=bool(overwrite))
    report = pair_folders(options)
    summary = f"{report.written + report.existing} A|B images in {out} (written now: {report.written})"
    if report.skipped:
        raise SceneFailures(report.skipped, summary)
    click.echo(summary)
