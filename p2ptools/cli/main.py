"""The ``p2ptools`` command group: logging set-up and the one place errors become messages."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import click

from p2ptools import __version__
from p2ptools.errors import P2PError, SceneFailures
from p2ptools.runtime.progress import LOGGER_NAME as PROGRESS_LOGGER
from p2ptools.runtime.progress import TqdmHandler


def _sigterm_as_interrupt() -> None:
    """SIGTERM (a cluster's preemption, ``kill``) ends a command like Ctrl-C: work saved, workers ended."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


#: command name → module of p2ptools.cli that defines it (imported only when the command runs, so
#: `p2ptools tile` does not pay for torch-side modules, and the other way round)
COMMANDS: dict[str, str] = {
    "tile": "tile", "make-inpaint": "make_inpaint", "pair": "pair", "unpair": "unpair", "train": "train",
    "predict": "predict", "train-fcn": "train_fcn", "evaluate": "evaluate", "run": "run", "weights": "weights",
    "import": "import_official", "export": "export",
}


class P2PGroup(click.Group):
    """A click group that imports a command's module when it is used, and turns every
    :class:`P2PError` into one clean message and exit 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(super().list_commands(ctx)))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS and name not in self.commands:
            import importlib

            module = importlib.import_module(f"p2ptools.cli.{COMMANDS[name]}")
            self.add_command(getattr(module, COMMANDS[name]), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        _sigterm_as_interrupt()
        try:
            return super().invoke(ctx)
        except SceneFailures as exc:
            if exc.summary:
                click.echo(exc.summary)
            raise click.ClickException(str(exc)) from None
        except P2PError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a full disk reached by a write that is not p2ptools' own (a log, a library)
            from p2ptools.runtime.space import disk_full, is_disk_full

            if not is_disk_full(exc):
                raise
            raise click.ClickException(str(disk_full(Path(exc.filename or "output"), None))) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(130) from None
        except (MemoryError, RuntimeError) as exc:  # an allocator refusal is the machine's size, not a bug
            if not _out_of_memory(exc):
                raise
            raise click.ClickException(
                "out of memory: " + (" ".join(str(exc).split())[:200] or type(exc).__name__)
                + "; the network, batch or image is too large for this machine: use a smaller model (--set "
                "model.ngf=…, --model tiny), --batch-size or image size, or another device") from None


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator refusal (CPU or GPU), as torch and numpy raise them."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return any(s in text for s in ("can't allocate memory", "out of memory", "Unable to allocate"))


class _ProgressFormatter(logging.Formatter):
    """Progress lines as they are; other records prefixed with their level."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == PROGRESS_LOGGER and record.levelno == logging.INFO:
            return record.getMessage()
        return f"{record.levelname}: {record.getMessage()}"


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """A Python warning as one line (no source file and line): ``NotGeoreferencedWarning: …``."""
    return f"{category.__name__}: {' '.join(str(message).split())}"


def show_any_name() -> None:
    """Let stdout and stderr print any file name: a byte of a name that is not UTF-8 (a lone surrogate, as
    Python reads it) is written as an escape (``\\udce9``) instead of failing the command after its work."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def configure_logging(verbose: int, quiet: int) -> None:
    """Warnings and progress lines (one per epoch, metric, scene …) by default; ``-v`` INFO,
    ``-vv`` DEBUG; ``-q`` drops the progress lines, ``-qq`` the warnings too."""
    level = logging.WARNING - 10 * verbose + 10 * max(quiet - 1, 0)
    handler = TqdmHandler(sys.stderr)
    handler.setFormatter(_ProgressFormatter())
    logging.basicConfig(level=max(logging.DEBUG, min(level, logging.CRITICAL)), handlers=[handler], force=True)
    logging.getLogger(PROGRESS_LOGGER).setLevel(logging.INFO if quiet == 0 else logging.WARNING)
    logging.captureWarnings(True)
    warnings.formatwarning = _one_line_warning


@click.group(cls=P2PGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="p2ptools")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", count=True, help="No progress lines (-qq: errors only).")
def cli(verbose: int, quiet: int) -> None:
    """p2ptools: paired image-to-image translation (pix2pix) toolkit.

    Cut GeoTIFF scenes and masks into AB pairs (tile), build inpainting pairs (make-inpaint),
    join or split AB images (pair, unpair), train the bundled pix2pix (train), run it (predict),
    and score the results (evaluate, with train-fcn for the FCN-score); run chains them from a recipe.
    """
    show_any_name()
    configure_logging(verbose, quiet)
