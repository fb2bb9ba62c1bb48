"""Options and parsing callbacks shared by several commands."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from p2ptools.config import from_mapping, read_yaml_mapping
from p2ptools.runtime.formats import FORMATS

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _parse_numbers(text: str, kind: type, count: int | None, what: str) -> tuple:
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated {what}") from None
    if count is not None and len(values) != count:
        raise click.BadParameter(f"{text!r}: expected {count} comma-separated {what}")
    return values


def split_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    """Parse ``0.8,0.1,0.1`` (three fractions summing to 1)."""
    if value is None:
        return None
    parts = _parse_numbers(value, float, 3, "fractions")
    if any(p < 0 for p in parts) or abs(sum(parts) - 1) > 1e-6:
        raise click.BadParameter(f"{value!r}: three non-negative fractions that sum to 1, e.g. 0.8,0.1,0.1")
    return parts


def int_list_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """Parse ``1,2,3``."""
    return None if value is None else _parse_numbers(value, int, None, "integers")


def float_pair_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    """Parse ``2,98``."""
    return None if value is None else _parse_numbers(value, float, 2, "numbers")


def parse_assignments(values: tuple[str, ...], expected: str = "SECTION.FIELD=VALUE") -> dict[str, Any]:
    """``("a.b=3", "c=x")`` → ``{"a.b": 3, "c": "x"}``; values are parsed as YAML (numbers, lists, mappings).

    Raises:
        click.BadParameter: for an item without ``=`` or without a key, showing ``expected``.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected {expected}", param_hint="--set")
        out[key] = yaml.safe_load(raw)
    return out


def fraction_type() -> click.FloatRange:
    """A float in [0, 1]."""
    return click.FloatRange(0.0, 1.0)


workers_option = click.option(
    "--workers", "-j", type=click.IntRange(min=1), default=None,
    help="Worker processes (default 1).",
)
overwrite_option = click.option(
    "--overwrite", is_flag=True, default=None,
    help="Start over in an output folder that holds an earlier dataset (a rerun without it resumes).",
)
seed_option = click.option("--seed", type=int, default=None, help="Random seed for splits and draws (default 0).")
split_option = click.option(
    "--split", "split", default=None, callback=split_callback, metavar="TRAIN,VAL,TEST",
    help="Fractions of items per split (default 0.8,0.1,0.1).",
)
format_option = click.option(
    "--format", type=click.Choice(list(FORMATS)), default=None,
    help="Image format of the pairs: " + "; ".join(f"{f.name} ({f.help})" for f in FORMATS.values()) + ".",
)
jpeg_quality_option = click.option(
    "--jpeg-quality", type=click.IntRange(1, 100), default=None, help="JPEG quality (default 95)."
)
config_option = click.option(
    "--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
    help="YAML file of options; options given on the command line override it.",
)


def build_config(cls: type[T], config_file: Path | None, section: str, **cli_values: Any) -> T:
    """Build a config dataclass from a YAML file and command-line values.

    Options left unset on the command line (None) keep the file's value, then the dataclass
    default. ``section`` names the file's sub-mapping to use when the file has one (a recipe's
    ``tile:`` stage, say); a flat mapping is used as it is.

    Raises:
        ConfigError: on unreadable files, unknown keys or invalid values.
    """
    data: dict[str, Any] = {}
    if config_file is not None:
        loaded = read_yaml_mapping(config_file)
        data = dict(loaded.get(section, loaded)) if isinstance(loaded.get(section), dict) else dict(loaded)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    data.update({k: v for k, v in cli_values.items() if v is not None and k in names})
    return from_mapping(cls, data, str(config_file) if config_file else "options")


def weights_options(f: F) -> F:
    """``--weights-dir`` and ``--offline``, for every command that uses pretrained weights."""
    f = click.option("--offline", is_flag=True, default=None,
                     help="Never download weights (also P2PTOOLS_OFFLINE=1); missing files are named.")(f)
    return click.option("--weights-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                        help="Folder of pretrained weight files (else $P2PTOOLS_WEIGHTS, then torch hub's "
                             "cache, where missing files are downloaded; see p2ptools weights).")(f)


dask_option = click.option(
    "--dask", default=None, metavar="ADDRESS|local:N",
    help="Run on a Dask cluster: a scheduler address (tcp://host:8786, or a scheduler file .json) or local:N "
         "(a LocalCluster of N processes). Workers must see the input and output paths. Needs p2ptools[dask].",
)


def _max_pixels_callback(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    """Set ``$P2PTOOLS_MAX_PIXELS`` from ``--max-pixels`` (so worker processes inherit it), then check it."""
    from p2ptools.errors import ConfigError
    from p2ptools.prep.limits import MAX_PIXELS_ENV, max_pixels

    if value is not None:
        os.environ[MAX_PIXELS_ENV] = str(value)
    try:
        max_pixels()
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def max_pixels_option(f: F) -> F:
    """``--max-pixels N``, for every command that reads images: the largest image (width × height) read."""
    return click.option(
        "--max-pixels", type=click.IntRange(min=1), default=None, expose_value=False, callback=_max_pixels_callback,
        metavar="N",
        help="Largest image decoded whole, in pixels (width × height; default 268435456 = 16384²; also "
             "P2PTOOLS_MAX_PIXELS). A larger one is named and left out, never decoded; tiled GeoTIFF scenes are "
             "read in windows at any size.",
    )(f)
