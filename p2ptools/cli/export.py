"""``p2ptools export``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(short_help="Export a generator to ONNX (for ONNX Runtime and other runtimes).")
@click.argument("run", metavar="RUN_DIR_OR_CKPT", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--which", default="latest", show_default=True, help="Checkpoint of a run folder: latest, best, epoch_K.")
@click.option("--opset", type=click.IntRange(min=11), default=17, show_default=True, help="ONNX opset.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Run the file with ONNX Runtime against torch and print the largest difference.")
@click.option("--overwrite", is_flag=True,
              help="Replace OUT when an earlier p2ptools export wrote it (a file of anyone else is never replaced).")
def export(run: Path, out: Path, which: str, opset: int, check: bool, overwrite: bool) -> None:
    """Write the generator of RUN_DIR_OR_CKPT (a run, a checkpoint or an official *_net_G.pth) as OUT.onnx.

    Eval mode, BatchNorm folded, dynamic batch, height and width (multiples of the printed number).
    Input "input" and output "output": (N, C, H, W) float32 in [-1, 1] (pixel / 127.5 - 1). The
    metadata carries the direction, the normalisation and the data contract. Needs the onnx extra:
    pip install 'p2ptools[onnx]'. An existing OUT is replaced only with --overwrite, and only when
    an earlier export wrote it.

    \b
    Examples:
      p2ptools export runs/facades facades.onnx
      p2ptools export checkpoints/map2sat/latest_net_G.pth map2sat.onnx
    """
    from p2ptools.model.export import export_onnx

    rep = export_onnx(run, out, which, opset, check, overwrite)
    checked = (f"; ONNX Runtime vs torch on a {tuple(rep.check_shape)} input: max |difference| {rep.max_diff:.2g}"
               if rep.max_diff is not None else "")
    click.echo(f"exported {rep.checkpoint} → {rep.path} (height and width: multiples of {rep.multiple}){checked}")
