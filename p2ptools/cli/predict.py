"""``p2ptools predict``."""

from __future__ import annotations

from pathlib import Path

import click

from p2ptools.cli.options import dask_option, max_pixels_option
from p2ptools.config import AMPS, BLENDS, INPUT_KINDS, SWITCHES
from p2ptools.inference.engine import ENGINE_CHOICES, ENGINES
from p2ptools.runtime.precisions import PRECISIONS


def _input_path(ctx: click.Context, param: click.Parameter, value: str) -> Path:
    """INPUT, an existing path; ``sample`` is the built-in demo's scene when nothing here has that name."""
    from p2ptools.recipe import resolve_sample_input

    return click.Path(exists=True, path_type=Path).convert(resolve_sample_input(Path(value)), param, ctx)


@click.command(short_help="Run a trained generator on a folder of images or a whole raster.")
@click.argument("run", type=click.Path(exists=True, path_type=Path), metavar="RUN_DIR_OR_CKPT")
@click.argument("input_dir", callback=_input_path, metavar="INPUT")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--checkpoint", "which", default="latest", show_default=True,
              help="Checkpoint of a run folder: latest, best or epoch_K.")
@click.option("--input-kind", type=click.Choice(INPUT_KINDS), default="auto",
              show_default=True,
              help="Folder: a (images) or ab (an aligned split). Raster: labels (class values, colorized with the "
                   "run's palette) or rgb. auto: detect.")
@click.option("--overlap", type=click.IntRange(min=0), default=None,
              help="Raster: pixels shared by neighbouring windows (default a quarter of the tile).")
@click.option("--blend", type=click.Choice(BLENDS), default="hann", show_default=True,
              help="Raster: Hann-weighted blending of overlapping windows, or none (plain stitch).")
@click.option("--palette", default=None, help="Raster of labels: palette when the run's checkpoint has none.")
@click.option("--bands", default=None, metavar="R,G,B", help="Raster: 1-based bands of an RGB/RGBN input.")
@click.option("--overviews", is_flag=True, help="Raster: build overviews into the output GeoTIFF.")
@click.option("--rgb", is_flag=True,
              help="Raster, model that writes label maps: write its RGB colours instead of a class raster.")
@click.option("--dropout", type=click.Choice(SWITCHES), default="off", show_default=True,
              help="Keep dropout at test time (the paper's noise). Off: deterministic outputs.")
@click.option("--batch-stats", type=click.Choice(SWITCHES), default="off", show_default=True,
              help="Normalise with each batch's statistics (the paper's test mode) instead of the running ones.")
@click.option("--side-by-side", is_flag=True, help="Also write OUT/side_by_side/<name>.png = input | output | target.")
@click.option("--scenes", is_flag=True,
              help="INPUT is a folder of whole rasters (not of images): each → OUT/<name>.tif. A list file "
                   "(.txt) INPUT always is.")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Many scenes: scenes translated at once by local processes (each takes a share of the threads).")
@dask_option
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--amp", type=click.Choice(AMPS), default="auto", show_default=True,
              help="Precision: " + "; ".join(f"{p.name}: {p.help}" for p in PRECISIONS.values()) + ".")
@click.option("--engine", type=click.Choice(ENGINE_CHOICES), default="auto", show_default=True,
              help="What runs the network: " + "; ".join(f"{e.name}: {e.help}" for e in ENGINES.values())
                   + "; auto: the first of these that can run here (torch on a GPU, with native bf16 or with "
                   "training-mode layers kept), saying what it chose.")
@max_pixels_option
def predict(run: Path, input_dir: Path, out: Path, which: str, input_kind: str, dropout: str, batch_stats: str,
            side_by_side: bool, batch_size: int, device: str, amp: str, overlap: int | None, blend: str,
            palette: str | None, bands: str | None, overviews: bool, rgb: bool, scenes: bool, workers: int,
            dask: str | None, engine: str) -> None:
    """Translate INPUT with the generator of RUN_DIR_OR_CKPT.

    INPUT is a folder of A images or a split of an aligned dataset (A|B images: A is translated,
    B is the target shown with --side-by-side): writes OUT/<name>.png at each input's own size
    (translated at the model's size and resized back, which it says).

    INPUT may also be a whole GeoTIFF of any size (OUT is then a .tif): class labels or a
    photo, checked against the run's data contract (bands, dtype, stretch, label or photo),
    translated with overlapping windows blended by Hann weights (no seams), borders mirrored,
    written with the input's CRS, transform and size, tiled and compressed, nodata kept as a
    mask. A photo → label model writes a class raster with the palette as colour table (--rgb:
    colours). A model trained on GeoTIFF tiles (tile --format tif) reads all bands of the raster
    in their dtype and writes the target's bands and dtype (e.g. 4 bands of uint16).

    INPUT sample (when no file or folder here has that name) is the built-in demo's grey scene,
    the one tile --sample cuts: p2ptools predict RUN sample colour.tif.

    Many scenes: INPUT a list file (.txt, one path or URL per line) or a folder with --scenes;
    OUT is then a folder of <scene>.tif. --workers N or --dask ADDRESS|local:N translate scenes
    in parallel; reruns keep the outputs made with the same checkpoint and options; a scene that
    fails is reported at the end and the others go on.

    The default is eval mode (no dropout, BatchNorm running statistics): outputs are deterministic
    and images of one scene are normalised alike. --dropout on --batch-stats on gives the paper's
    test-time behaviour.
    """
    from p2ptools.errors import SceneFailures
    from p2ptools.inference.options import PredictOptions
    from p2ptools.prep.sources import is_list_file

    whole = input_dir.is_file() or scenes
    if whole and (dropout == "on" or batch_stats == "on" or side_by_side):  # windows of a scene are normalised alike
        raise click.UsageError("--dropout, --batch-stats and --side-by-side are for folders of images")
    many_scenes = scenes or is_list_file(input_dir)
    if not many_scenes and (workers > 1 or dask):
        raise click.UsageError("--workers and --dask are for many scenes (a list file, or a folder with --scenes)")
    if not input_dir.is_file() and not scenes and input_kind in ("labels", "rgb"):
        raise click.UsageError("--input-kind labels/rgb are for a raster INPUT; use a or ab for a folder")
    options = PredictOptions(which, input_kind, batch_size, device, amp, engine, dropout=dropout == "on",
                             batch_stats=batch_stats == "on", side_by_side=side_by_side, overlap=overlap, blend=blend,
                             palette=palette, bands=tuple(int(b) for b in bands.split(",")) if bands else None,
                             overviews=overviews, rgb=rgb)
    if many_scenes:
        from p2ptools.inference.scenes import predict_scenes

        many = predict_scenes(run, input_dir, out, options, workers, dask)
        summary = (f"{many.count('written')} scene(s) translated, {many.count('existing')} already there, "
                   f"into {out} from {many.checkpoint}")
        if many.failures:
            raise SceneFailures(many.failures, summary)
        click.echo(summary)
    elif input_dir.is_file():
        from p2ptools.inference.mosaic import predict_scene
        from p2ptools.runtime.lock import file_lock

        with file_lock(out):
            rep = predict_scene(run, input_dir, out, options)
        click.echo(f"{rep.width}×{rep.height} {rep.what} → {out} ({rep.tiles} windows, "
                   f"{rep.mpix_per_s:.2f} MPix/s) from {rep.checkpoint}")
    else:
        from p2ptools.inference.predict import predict_folder

        report = predict_folder(run, input_dir, out, options)
        summary = f"{report.written} images from {report.checkpoint} ({report.input_kind} input) in {out}"
        if report.skipped:
            raise SceneFailures(report.skipped, summary)
        click.echo(summary)
