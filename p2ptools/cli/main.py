"""The ``p2ptools`` command group: logging set-up and the one place errors become messages."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from p2ptools import __version__
from p2ptools.errors import P2PError, SceneFailures


class P2PGroup(click.Group):
    """A click group that turns every :class:`P2PError` into one clean message and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SceneFailures as exc:
            if exc.summary:
                click.echo(exc.summary)
            raise click.ClickException(str(exc)) from None
        except P2PError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(130) from None


def configure_logging(verbose: int, quiet: int) -> None:
    """WARNING by default; ``-v`` INFO, ``-vv`` DEBUG, ``-q`` ERROR only."""
    level = logging.WARNING - 10 * verbose + 10 * quiet
    logging.basicConfig(
        level=max(logging.DEBUG, min(level, logging.CRITICAL)),
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.captureWarnings(True)


@click.group(cls=P2PGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="p2ptools")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", count=True, help="Less log output.")
def cli(verbose: int, quiet: int) -> None:
    """p2ptools: paired image-to-image translation (pix2pix) toolkit.

    Cut GeoTIFF scenes and masks into AB pairs (tile), build inpainting pairs (make-inpaint),
    join or split AB images (pair, unpair), train the bundled pix2pix (train), run it (predict),
    and score the results (evaluate, with train-fcn for the FCN-score); run chains them from a recipe.
    """
    configure_logging(verbose, quiet)


def _register() -> None:
    from p2ptools.cli.evaluate import evaluate
    from p2ptools.cli.make_inpaint import make_inpaint
    from p2ptools.cli.pair import pair
    from p2ptools.cli.predict import predict
    from p2ptools.cli.run import run
    from p2ptools.cli.tile import tile
    from p2ptools.cli.train import train
    from p2ptools.cli.train_fcn import train_fcn
    from p2ptools.cli.unpair import unpair

    for command in (tile, make_inpaint, pair, unpair, train, predict, train_fcn, evaluate, run):
        cli.add_command(command)


_register()
