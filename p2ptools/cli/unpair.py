"""``p2ptools unpair``."""

from __future__ import annotations

from pathlib import Path

import click

from p2ptools.cli.options import jpeg_quality_option, max_pixels_option, overwrite_option, workers_option


@click.command(short_help="Split A|B images back into A/ and B/ folders.")
@click.argument("ab_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@jpeg_quality_option
@workers_option
@overwrite_option
@max_pixels_option
def unpair(ab_dir: Path, out: Path, jpeg_quality: int | None, workers: int | None, overwrite: bool | None) -> None:
    """Split every A|B image under AB_DIR into OUT/A/<path> and OUT/B/<path>.

    Sub-folders such as train/ and val/ are kept. PNG stays PNG (pixel-exact); JPEG stays JPEG.
    """
    from p2ptools.errors import SceneFailures
    from p2ptools.prep.pairs import unpair_folder

    report = unpair_folder(ab_dir, out, jpeg_quality or 95, workers or 1, bool(overwrite))
    summary = f"{report.written + report.existing} images split into {out / 'A'} and {out / 'B'}"
    if report.skipped:
        raise SceneFailures(report.skipped, summary)
    click.echo(summary)
