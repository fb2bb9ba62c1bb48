"""``p2ptools run``."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from p2ptools.cli.options import max_pixels_option, parse_assignments
from p2ptools.recipe import STAGES, bundled_recipes

_HELP = f"""Run RECIPE: a YAML file, or a bundled recipe ({", ".join(bundled_recipes())}).

    Every stage is skipped when its output is already complete, so rerunning continues a recipe.
    The facades and maps recipes download their pix2pix archive into data/ on first use (checked
    against the files p2ptools knows; P2PTOOLS_DATA_URL names a mirror).

    \b
    Examples:
      p2ptools run sample
      p2ptools run inria --set data.tile.src=/data/AerialImageDataset/train
      p2ptools run my-recipe.yaml --until train
    """


@click.command(help=_HELP, short_help="Run a recipe: data → train → predict → evaluate, resuming where it stopped.")
@click.argument("recipe")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), help="Overrides the recipe's workdir.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.FIELD=VALUE",
              help="Override a recipe field, e.g. --set train.epochs=5 --set data.tile.src=/data/inria.")
@click.option("--until", type=click.Choice(STAGES),
              help="Stop after this stage.")
@click.option("--offline", is_flag=True, default=None,
              help="Never download (a recipe's dataset archive, the metrics' weights); also P2PTOOLS_OFFLINE=1.")
@max_pixels_option
def run(recipe: str, workdir: Path | None, sets: tuple[str, ...], until: str | None, offline: bool | None) -> None:
    """Run RECIPE (the help, with the bundled recipes read from the recipes folder, is ``_HELP``)."""
    from p2ptools.recipe import load_recipe, run_recipe

    rec = load_recipe(recipe, workdir, parse_assignments(sets))
    rec.offline = offline
    words = ["p2ptools", "run", recipe, *(["--workdir", str(workdir)] if workdir else []),
             *[w for item in sets for w in ("--set", item)]]
    command = " ".join(shlex.quote(w) for w in words)
    result = run_recipe(rec, progress=True, until=until, command=command)
    click.echo(f"recipe {rec.name}: " + ", ".join(f"{k} {v}" for k, v in result.stages.items())
               + f"; work folder {rec.workdir}")
    if result.report is not None:
        click.echo(f"report: {result.report / 'summary.csv'} (per image: {result.report / 'per_image.csv'}); "
                   f"to look at: {result.report / 'report.html'}, {rec.workdir / 'run' / 'index.html'}")
    if result.incomplete:  # everything else was scored and written; the exit is 1, as evaluate's
        shown = result.incomplete[:30] + ([f"… and {len(result.incomplete) - 30} more (evaluate.json lists them)"]
                                          if len(result.incomplete) > 30 else [])
        raise click.ClickException("the report is incomplete; fix what is listed and rerun the same command:\n"
                                   + "\n".join(f"  {line}" for line in shown))
