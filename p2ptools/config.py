"""Configuration dataclasses, validated in one place and loadable from YAML mappings.

Each command's options are a dataclass here. ``validate()`` checks every field and raises
:class:`~p2ptools.errors.ConfigError` with the field's name; :func:`from_mapping` builds a config
from a YAML/recipe mapping and rejects unknown keys, so a typo in a recipe is an error, not a
silently ignored setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from p2ptools.errors import ConfigError
from p2ptools.tiling import EDGE_POLICIES

T = TypeVar("T")

DIRECTIONS: tuple[str, ...] = ("label2photo", "photo2label")
LAYOUTS: tuple[str, ...] = ("auto", "inria", "landcover", "generic")
#: Image formats of written pairs → file extension.
IMAGE_FORMATS: dict[str, str] = {"png": ".png", "jpg": ".jpg"}
#: Tiles must be a multiple of this so every U-Net depth of at least 5 accepts them.
SIZE_MULTIPLE = 32


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be between 0 and 1, got {value}")


@dataclass
class TileConfig:
    """Options of ``p2ptools tile``.

    Args:
        out: output folder.
        src: dataset root (Inria or LandCover.ai layout); None with ``images``/``masks``.
        layout: ``auto``, ``inria``, ``landcover`` or ``generic``.
        images: photo folder (generic layout).
        masks: mask folder (generic layout).
        mask_suffix: suffix stripped from mask stems before pairing (generic layout).
        size: tile size in pixels (a multiple of 32: 256 and 512 are the usual).
        stride: step between tiles; None means ``size`` (no overlap).
        edge: remainder policy: ``drop``, ``pad`` or ``shift`` (see :mod:`p2ptools.tiling`).
        min_foreground: keep tiles whose foreground fraction is > 0 and at least this.
        keep_empty: deterministic share (0–1) of the tiles without enough foreground to keep anyway.
        max_nodata: drop tiles with more than this fraction of nodata/transparent photo pixels.
        palette: built-in palette name, palette file, or ``auto`` (by layout).
        direction: ``label2photo`` (A = colorized label, B = photo) or ``photo2label``.
        fmt: ``png`` (lossless, default) or ``jpg``.
        jpeg_quality: JPEG quality 1–100.
        split: train/val/test fractions of scenes.
        seed: seed for the split and the empty-tile draw.
        bands: 1-based photo bands (1 or 3), None for automatic.
        percentiles: low/high percentiles of the per-scene 8-bit stretch.
        workers: processes.
        overwrite: start over in a folder that holds an earlier dataset.
    """

    out: Path
    src: Path | None = None
    layout: str = "auto"
    images: Path | None = None
    masks: Path | None = None
    mask_suffix: str = ""
    size: int = 256
    stride: int | None = None
    edge: str = "shift"
    min_foreground: float = 0.0
    keep_empty: float = 0.0
    max_nodata: float = 0.5
    palette: str = "auto"
    direction: str = "label2photo"
    fmt: str = "png"
    jpeg_quality: int = 95
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    bands: tuple[int, ...] | None = None
    percentiles: tuple[float, float] = (2.0, 98.0)
    workers: int = 1
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("out", "src", "images", "masks"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))
        self.validate()

    @property
    def step(self) -> int:
        """The effective stride."""
        return self.stride or self.size

    def validate(self) -> None:
        """Check every field.

        Raises:
            ConfigError: naming the first invalid field.
        """
        if self.size < SIZE_MULTIPLE or self.size % SIZE_MULTIPLE:
            raise ConfigError(f"size must be a positive multiple of {SIZE_MULTIPLE} (256, 512, …), got {self.size}")
        if self.stride is not None and self.stride <= 0:
            raise ConfigError(f"stride must be positive, got {self.stride}")
        if self.edge not in EDGE_POLICIES:
            raise ConfigError(f"edge must be one of {', '.join(EDGE_POLICIES)}, got {self.edge!r}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        for name in ("min_foreground", "keep_empty", "max_nodata"):
            _check_fraction(name, getattr(self, name))
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}")
        _check_split(self.split)
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        _check_output(self.fmt, self.jpeg_quality, self.workers)

    def output_params(self) -> dict[str, Any]:
        """The settings that determine the output's content (stored in ``dataset.json``).

        A rerun with the same settings resumes; any difference means another dataset.
        """
        return {
            "layout": self.layout,
            "src": str(Path(self.src).resolve()) if self.src else None,
            "images": str(Path(self.images).resolve()) if self.images else None,
            "masks": str(Path(self.masks).resolve()) if self.masks else None,
            "size": self.size,
            "stride": self.step,
            "edge": self.edge,
            "min_foreground": self.min_foreground,
            "keep_empty": self.keep_empty,
            "max_nodata": self.max_nodata,
            "palette": self.palette,
            "direction": self.direction,
            "format": self.fmt,
            "jpeg_quality": self.jpeg_quality if self.fmt == "jpg" else None,
            "split": list(self.split),
            "seed": self.seed,
            "bands": list(self.bands) if self.bands else None,
            "percentiles": list(self.percentiles),
        }


HOLES: tuple[str, ...] = ("center", "random", "random-multi")
FILLS: tuple[str, ...] = ("white", "black", "noise", "mean")
FITS: tuple[str, ...] = ("crop", "pad", "stretch")


def _check_split(split: tuple[float, ...]) -> None:
    if len(split) != 3 or any(f < 0 for f in split) or abs(sum(split) - 1) > 1e-6:
        raise ConfigError(f"split must be three non-negative fractions summing to 1, got {split}")


def _check_output(fmt: str, jpeg_quality: int, workers: int) -> None:
    if fmt not in IMAGE_FORMATS:
        raise ConfigError(f"format must be one of {', '.join(IMAGE_FORMATS)}, got {fmt!r}")
    if not 1 <= jpeg_quality <= 100:
        raise ConfigError(f"jpeg_quality must be 1–100, got {jpeg_quality}")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")


@dataclass
class InpaintConfig:
    """Options of ``p2ptools make-inpaint``.

    Args:
        src: folder of photos (searched recursively).
        out: output folder.
        size: side of the square pairs (A and B are each ``size × size``).
        fit: ``crop`` (centre-crop to square, default), ``pad`` or ``stretch``.
        hole: ``center`` (one centred rectangle, a third of the width by a third of the height at
            the default area), ``random`` (one rectangle of random position and aspect) or
            ``random-multi`` (2–5 rectangles sharing the area).
        hole_area: fraction of the image the hole covers (default 1/9).
        fill: ``white`` (the seed protocol), ``black``, ``noise`` or ``mean`` (the image's mean colour).
        seed: seed of random holes, noise and the split.
        save_masks: also write each pair's hole mask to ``OUT/masks/<split>/<name>.png``.
        split: train/val/test fractions of distinct images (duplicates stay together).
        fmt: ``png`` (default) or ``jpg``.
        jpeg_quality: JPEG quality 1–100.
        workers: processes.
        overwrite: start over in a folder that holds an earlier dataset.
    """

    src: Path
    out: Path
    size: int = 256
    fit: str = "crop"
    hole: str = "center"
    hole_area: float = 1.0 / 9.0
    fill: str = "white"
    seed: int = 0
    save_masks: bool = False
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    fmt: str = "png"
    jpeg_quality: int = 95
    workers: int = 1
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.src, self.out = Path(self.src), Path(self.out)
        self.validate()

    def validate(self) -> None:
        """Check every field.

        Raises:
            ConfigError: naming the first invalid field.
        """
        if self.size < 8:
            raise ConfigError(f"size must be at least 8, got {self.size}")
        if self.fit not in FITS:
            raise ConfigError(f"fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        if self.hole not in HOLES:
            raise ConfigError(f"hole must be one of {', '.join(HOLES)}, got {self.hole!r}")
        if not 0.0 < self.hole_area < 1.0:
            raise ConfigError(f"hole_area must be between 0 and 1 (exclusive), got {self.hole_area}")
        if self.fill not in FILLS:
            raise ConfigError(f"fill must be one of {', '.join(FILLS)}, got {self.fill!r}")
        _check_split(self.split)
        _check_output(self.fmt, self.jpeg_quality, self.workers)

    def output_params(self) -> dict[str, Any]:
        """The settings that determine the output's content (stored in ``dataset.json``)."""
        return {
            "src": str(self.src.resolve()),
            "size": self.size,
            "fit": self.fit,
            "hole": self.hole,
            "hole_area": self.hole_area,
            "fill": self.fill,
            "seed": self.seed,
            "save_masks": self.save_masks,
            "split": list(self.split),
            "format": self.fmt,
            "jpeg_quality": self.jpeg_quality if self.fmt == "jpg" else None,
        }


def from_mapping(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build a config dataclass from a mapping (YAML), rejecting unknown keys.

    Args:
        cls: the dataclass.
        data: the mapping; list values become tuples for tuple fields.
        source: where the mapping came from, for error messages.

    Raises:
        ConfigError: on unknown keys, missing required keys or invalid values.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of options")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from exc

