"""``p2ptools evaluate``."""

from __future__ import annotations

from pathlib import Path

import click

from p2ptools.cli.options import max_pixels_option, weights_options
from p2ptools.config import HALVES, REAL_KINDS, RESIZE_SIDES
from p2ptools.evaluation.metrics.registry import DEFAULT_METRICS, METRICS


def _metric_names(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    """``--metrics`` as names of the metrics registry (a usage error names the unknown and the known)."""
    names = tuple(m.strip() for m in value.split(",") if m.strip())
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise click.BadParameter(f"{'unknown metric(s) ' + ', '.join(unknown) if unknown else 'no metric given'}; "
                                 f"choose from {', '.join(METRICS)}", ctx, param)
    return names


_METRICS_HELP = "Comma-separated, from: " + "; ".join(
    f"{m.name} ({m.help}{', per set' if m.per == 'set' else ''}, {'↑' if m.higher_is_better else '↓'} better)"
    for m in METRICS.values()) + "."


@click.command(short_help="Score generated images against real ones: per-image and summary CSV.")
@click.option("--real", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Real targets: a folder of images or an aligned A|B split.")
@click.option("--fake", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Generated images with the same names (e.g. the output of p2ptools predict).")
@click.option("--metrics", default=",".join(DEFAULT_METRICS), show_default=True, callback=_metric_names,
              help=_METRICS_HELP)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Report folder.")
@click.option("--label", default="", help="Name of this run in the reports (default: the fake folder's name).")
@click.option("--real-side", type=click.Choice(HALVES), default=None,
              show_default="from FAKE/predict.json (A for a model trained BtoA), else B",
              help="For an A|B --real: the half holding the target.")
@click.option("--real-kind", type=click.Choice(REAL_KINDS), default="auto", show_default=True)
@click.option("--mask-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Binary masks by name: pixel metrics inside the masks only (e.g. make-inpaint --save-masks).")
@click.option("--resize", type=click.Choice(RESIZE_SIDES), default="none", show_default=True,
              help="Resize one side to the other when sizes differ.")
@weights_options
@click.option("--segmenter", type=click.Path(exists=True, path_type=Path), help="SEG_DIR of p2ptools train-fcn.")
@click.option("--labels", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Label images by name for fcn, when --real is not an A|B split.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--cache-stats", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              is_flag=False, flag_value=str(Path.home() / ".cache" / "p2ptools"),
              help="Cache the real folder's FID features (in DIR, default ~/.cache/p2ptools).")
@click.option("--compare", is_flag=True,
              help="Join the REPORTS folders into OUT/comparison.csv, a row per run (no --real/--fake then).")
@click.argument("reports", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@max_pixels_option
def evaluate(real: Path | None, fake: Path | None, metrics: tuple[str, ...], out: Path, compare: bool,
             reports: tuple[Path, ...], **options: object) -> None:
    """Score --fake against --real and write OUT/per_image.csv and OUT/summary.csv.

    \b
    Examples:
      p2ptools evaluate --real data/test --fake preds --metrics l1,psnr,ssim,fid,kid --out report
      p2ptools evaluate --real data/test --fake preds --metrics fcn --segmenter seg --out report
      p2ptools evaluate --compare report_pix2pix report_wgan --out comparison
    """
    from p2ptools.evaluation.evaluate import EvalConfig, compare_reports
    from p2ptools.evaluation.evaluate import evaluate as run_evaluate

    if compare:
        if real or fake or not reports:
            raise click.UsageError("--compare REPORT [REPORT ...] joins existing reports; leave out --real and --fake")
        table = compare_reports(list(reports), out)
        click.echo(table.to_string(index=False))
        click.echo(f"comparison: {out / 'comparison.csv'}")
        return
    if real is None or fake is None or reports:
        raise click.UsageError("give --real and --fake (or --compare REPORT ...)")
    cfg = EvalConfig(real=real, fake=fake, out=out, metrics=metrics, **options)  # type: ignore[arg-type]
    result = run_evaluate(cfg)
    if len(result.summary):  # nothing computed: no table at all (the lines below say why)
        shown = result.summary[["metric", "mean", "std", "ci95_low", "ci95_high", "n", "baseline", "identity"]]
        shown = shown.drop(columns=[c for c in ("baseline", "identity") if shown[c].isna().all()])  # none here
        click.echo(shown.rename(columns={"identity": "input itself"}).to_string(
            index=False, float_format=lambda v: f"{v:.4g}", na_rep="-"))
    click.echo(f"reports: {out / 'per_image.csv'}, {out / 'summary.csv'}" + (
        f", {out / 'fcn.csv'}" if result.fcn is not None else "") + f"; to look at: {out / 'report.html'}")
    if result.unavailable or result.errors or not len(result.summary):  # the rest was scored and written; exit 1
        lines = [f"  metric {m} not computed: {why}" for m, why in result.unavailable.items()]
        lines += [f"  {name}: {error}" for name, error in result.errors[:30]]
        if len(result.errors) > 30:
            lines.append(f"  … and {len(result.errors) - 30} more (evaluate.json lists them all)")
        done = (f"{len(result.per_image)} pair(s) scored and written" if len(result.summary) else
                f"nothing computed: no metric asked for ({', '.join(metrics)}) could run on the "
                f"{len(result.per_image)} pair(s)")
        raise click.ClickException(f"{done}; {len(result.unavailable)} metric(s) not computed, {len(result.errors)} "
                                   "pair(s) left out:\n" + "\n".join(lines))
