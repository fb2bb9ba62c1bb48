"""``p2ptools predict``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(short_help="Run a trained generator on a folder of images.")
@click.argument("run", type=click.Path(exists=True, path_type=Path), metavar="RUN_DIR_OR_CKPT")
@click.argument("input_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="INPUT")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--checkpoint", "which", default="latest", show_default=True,
              help="Checkpoint of a run folder: latest, best or epoch_K.")
@click.option("--input-kind", type=click.Choice(["auto", "a", "ab"]), default="auto", show_default=True,
              help="a: images to translate; ab: an aligned A|B split (auto: detect).")
@click.option("--dropout", type=click.Choice(["off", "on"]), default="off", show_default=True,
              help="Keep dropout at test time (the paper's noise). Off: deterministic outputs.")
@click.option("--batch-stats", type=click.Choice(["off", "on"]), default="off", show_default=True,
              help="Normalise with each batch's statistics (the paper's test mode) instead of the running ones.")
@click.option("--side-by-side", is_flag=True, help="Also write OUT/side_by_side/<name>.png = input | output | target.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--amp", type=click.Choice(["none", "bf16", "fp16"]), default="none", show_default=True)
def predict(run: Path, input_dir: Path, out: Path, which: str, input_kind: str, dropout: str, batch_stats: str,
            side_by_side: bool, batch_size: int, device: str, amp: str) -> None:
    """Translate every image of INPUT with the generator of RUN_DIR_OR_CKPT into OUT/<name>.png.

    INPUT is a folder of A images or a split of an aligned dataset (A|B images: A is translated,
    B is the target shown with --side-by-side). Images are resized to the model's size.

    The default is eval mode (no dropout, BatchNorm running statistics): outputs are deterministic
    and images of one scene are normalised alike. --dropout on --batch-stats on gives the paper's
    test-time behaviour.
    """
    from p2ptools.errors import SceneFailures
    from p2ptools.predict import predict_folder

    report = predict_folder(run, input_dir, out, which, input_kind, dropout == "on", batch_stats == "on",
                            side_by_side, batch_size, device, amp)
    summary = f"{report.written} images from {report.checkpoint} ({report.input_kind} input) in {out}"
    if report.skipped:
        raise SceneFailures(report.skipped, summary)
    click.echo(summary)
