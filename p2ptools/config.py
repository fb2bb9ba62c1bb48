"""Configuration dataclasses, validated in one place and loadable from YAML mappings.

Each command's options are a dataclass here. ``validate()`` checks every field and raises
:class:`~p2ptools.errors.ConfigError` with the field's name; :func:`from_mapping` builds a config
from a YAML/recipe mapping and rejects unknown keys, so a typo in a recipe is an error, not a
silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from p2ptools.errors import ConfigError
from p2ptools.runtime.formats import IMAGE_FORMATS
from p2ptools.runtime.precisions import AMPS, TRAIN_AMPS  # noqa: F401  (AMPS: predict --amp, re-exported)

T = TypeVar("T")
log = logging.getLogger(__name__)

DIRECTIONS: tuple[str, ...] = ("label2photo", "photo2label")
LAYOUTS: tuple[str, ...] = ("auto", "inria", "landcover", "generic")
#: what happens to the last row and column of tiles when the scene is not a whole number of tiles
EDGE_POLICIES: tuple[str, ...] = ("drop", "pad", "shift")
#: normalisation layers of the networks (each built by ``model.nets.blocks.norm_layer``)
NORMS: tuple[str, ...] = ("batch", "instance", "none")
#: which half of an A|B image a model reads (pix2pix's ``--direction``). Exactly these: the official code
#: compares ``opt.direction == 'AtoB'``, so any other spelling there silently means BtoA; here it is refused.
AB_DIRECTIONS: tuple[str, ...] = ("AtoB", "BtoA")
#: the two halves of an A|B image
HALVES: tuple[str, ...] = ("A", "B")
#: what ``evaluate --real`` holds: auto-detected, target images, or A|B pairs
REAL_KINDS: tuple[str, ...] = ("auto", "image", "ab")
#: ``evaluate --resize``: which side is resized to the other when sizes differ
RESIZE_SIDES: tuple[str, ...] = ("none", "real", "fake")
#: ``predict --input-kind``: what a folder's images are
INPUT_KINDS: tuple[str, ...] = ("auto", "a", "ab", "labels", "rgb")
#: how overlapping windows of a whole scene are merged
BLENDS: tuple[str, ...] = ("hann", "none")
#: a test-time layer kept in training mode or not (``--dropout``, ``--batch-stats``)
SWITCHES: tuple[str, ...] = ("off", "on")
#: segmenters ``train-fcn`` trains for the FCN-score
SEGMENTER_ARCHS: tuple[str, ...] = ("unet", "fcn_resnet50")
#: optimizers of the training loop
OPTIMIZERS: tuple[str, ...] = ("adam", "rmsprop")
SPLIT_BY: tuple[str, ...] = ("auto", "scene", "block")
#: Image formats of written pairs → file extension.
#: tile also writes georeferenced GeoTIFF pairs (OUT/<split>/A/… and B/…)
TILE_FORMATS: dict[str, str] = {**IMAGE_FORMATS, "tif": ".tif"}
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
        targets: target photo folder (or list file) for photo → photo pairs: A = ``images``, B = the
            target photo of the same name, resampled onto the photo's grid; no masks then.
        mask_suffix: suffix stripped from mask stems before pairing (generic layout).
        size: tile size in pixels (a multiple of 32: 256 and 512 are the usual).
        stride: step between tiles; None means ``size`` (no overlap).
        edge: remainder policy: ``drop``, ``pad`` or ``shift`` (see :mod:`p2ptools.prep.tiling`).
        min_foreground: keep tiles whose foreground fraction is > 0 and at least this.
        keep_empty: deterministic share (0–1) of the tiles without enough foreground to keep anyway.
        max_nodata: drop tiles with more than this fraction of nodata/transparent photo pixels.
        palette: built-in palette name, palette file, or ``auto`` (by layout).
        direction: ``label2photo`` (A = colorized label, B = photo) or ``photo2label``.
        format: ``png`` (lossless, default) or ``jpg``.
        jpeg_quality: JPEG quality 1–100.
        split: train/val/test fractions of scenes (or of blocks with ``split_by: block``).
        split_by: ``scene`` (every tile of a scene in one split), ``block`` (scenes cut into
            ``block_size`` squares, each drawn into a split: for one or a few large scenes) or
            ``auto`` (block for a single scene, which would fill one split only; else scene).
        block_size: side of the blocks in pixels (default 4 tiles).
        block_buffer: pixels between kept tiles of two splits; tiles closer to a block of
            another split are dropped (reason ``split_buffer``). Default one tile.
        seed: seed for the split and the empty-tile draw.
        bands: 1-based photo bands (1 or 3), None for automatic.
        stretch: low/high percentiles of the 8-bit stretch of non-8-bit photos.
        stretch_scope: ``scene`` (each scene stretched by its own percentiles) or ``dataset`` (one
            stretch from all scenes pooled, stored in the data contract and used by ``predict``).
        label_field: attribute of vector labels holding the class (a value or a palette class
            name); None: every feature is the palette's first non-background class.
        all_touched: burn vector labels into every pixel they touch (not only covered centres).
        http_retries: retries of a failed range request to a remote scene (GDAL_HTTP_MAX_RETRY).
        http_timeout: seconds before a remote request times out (GDAL_HTTP_TIMEOUT).
        workers: processes.
        dask: run on this Dask cluster instead (a scheduler address, or ``local:N``).
        overwrite: start over in a folder that holds an earlier dataset.
    """

    out: Path
    src: Path | None = None
    layout: str = "auto"
    images: Path | None = None
    masks: Path | None = None
    targets: Path | None = None
    mask_suffix: str = ""
    size: int = 256
    stride: int | None = None
    edge: str = "shift"
    min_foreground: float = 0.0
    keep_empty: float = 0.0
    max_nodata: float = 0.5
    palette: str = "auto"
    direction: str = "label2photo"
    format: str = "png"
    jpeg_quality: int = 95
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_by: str = "auto"
    block_size: int | None = None
    block_buffer: int | None = None
    seed: int = 0
    bands: tuple[int, ...] | None = None
    stretch: tuple[float, float] = (2.0, 98.0)
    stretch_scope: str = "scene"
    label_field: str | None = None
    all_touched: bool = False
    http_retries: int = 3
    http_timeout: int = 30
    workers: int = 1
    dask: str | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("out", "src", "images", "masks", "targets"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))
        self.validate()

    @property
    def step(self) -> int:
        """The effective stride."""
        return self.stride or self.size

    @property
    def block(self) -> int:
        """The effective block size of a block split."""
        return self.block_size or 4 * self.size

    @property
    def buffer(self) -> int:
        """The effective buffer between blocks of two splits."""
        return self.size if self.block_buffer is None else self.block_buffer

    def validate(self) -> None:
        """Check every field.

        Raises:
            ConfigError: naming the first invalid field.
        """
        if self.targets is not None and (self.masks is not None or self.images is None):
            raise ConfigError("--targets pairs --images with target photos: give --images DIR --targets DIR, "
                              "and no --masks")
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
        if self.split_by not in SPLIT_BY:
            raise ConfigError(f"split_by must be one of {', '.join(SPLIT_BY)}, got {self.split_by!r}")
        if self.block_size is not None and self.block_size < self.size:
            raise ConfigError(f"block_size ({self.block_size}) must be at least the tile size ({self.size})")
        if self.block_buffer is not None and self.block_buffer < 0:
            raise ConfigError(f"block_buffer must not be negative, got {self.block_buffer}")
        lo, hi = self.stretch
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"stretch must be two percentiles 0 <= low < high <= 100, got {self.stretch}")
        if self.stretch_scope not in STRETCH_SCOPES:
            raise ConfigError(f"stretch_scope must be one of {', '.join(STRETCH_SCOPES)}, got {self.stretch_scope!r}")
        _check_output(self.format, self.jpeg_quality, self.workers, TILE_FORMATS)

    def output_params(self) -> dict[str, Any]:
        """The settings that determine the output's content (stored in ``dataset.json``).

        A rerun with the same settings resumes; any difference means another dataset.
        """
        return {
            "layout": self.layout,
            "src": str(Path(self.src).resolve()) if self.src else None,
            "images": str(Path(self.images).resolve()) if self.images else None,
            "masks": str(Path(self.masks).resolve()) if self.masks else None,
            **({"targets": str(Path(self.targets).resolve())} if self.targets else {}),
            "size": self.size,
            "stride": self.step,
            "edge": self.edge,
            "min_foreground": self.min_foreground,
            "keep_empty": self.keep_empty,
            "max_nodata": self.max_nodata,
            "palette": self.palette,
            "direction": self.direction,
            "format": self.format,
            "jpeg_quality": self.jpeg_quality if self.format == "jpg" else None,
            "split": list(self.split),
            "split_by": self.split_by,
            **({"block_size": self.block, "block_buffer": self.buffer} if self.split_by == "block" else {}),
            "seed": self.seed,
            "bands": list(self.bands) if self.bands else None,
            "stretch": list(self.stretch),
            **({"stretch_scope": self.stretch_scope} if self.stretch_scope != "scene" else {}),
            **({"label_field": self.label_field} if self.label_field else {}),
            **({"all_touched": True} if self.all_touched else {}),
        }


STRETCH_SCOPES: tuple[str, ...] = ("scene", "dataset")
HOLES: tuple[str, ...] = ("center", "random", "random-multi")
FILLS: tuple[str, ...] = ("white", "black", "noise", "mean")
FITS: tuple[str, ...] = ("crop", "pad", "stretch")


def _check_split(split: tuple[float, ...]) -> None:
    if len(split) != 3 or any(f < 0 for f in split) or abs(sum(split) - 1) > 1e-6:
        raise ConfigError(f"split must be three non-negative fractions summing to 1, got {split}")


def _check_output(fmt: str, jpeg_quality: int, workers: int, formats: dict[str, str] = IMAGE_FORMATS) -> None:
    if fmt not in formats:
        raise ConfigError(f"format must be one of {', '.join(formats)}, got {fmt!r}")
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
        format: ``png`` (default) or ``jpg``.
        jpeg_quality: JPEG quality 1–100.
        workers: processes.
        dask: run on this Dask cluster instead (a scheduler address, or ``local:N``).
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
    format: str = "png"
    jpeg_quality: int = 95
    workers: int = 1
    dask: str | None = None
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
        _check_output(self.format, self.jpeg_quality, self.workers)

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
            "format": self.format,
            "jpeg_quality": self.jpeg_quality if self.format == "jpg" else None,
        }


#: Renamed options: old name → what to write instead (an error names it).
RENAMED: dict[str, str] = {
    "epochs_decay": "epochs is now the total number of epochs; give decay_epochs (the last epochs that decay "
                    "the learning rate), e.g. epochs: 200 and decay_epochs: 100 for the paper's 100 + 100",
    "num_workers": "use workers (the command line's --workers)",
    "fmt": "use format (the command line's --format)",
    "percentiles": "use stretch (the command line's --stretch)",
}


def _coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    """Convert a YAML/CLI value to a field's annotated type (``"2e-4"`` → 0.0002, list → tuple)."""
    import types
    import typing

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(name, value, args[0], source) if len(args) == 1 else value
    if value is None:
        return value
    try:
        if hint is bool:
            if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                return value.lower() in ("true", "yes", "on", "1")
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if hint is float and not isinstance(value, bool):
            return float(value)
        if hint is int and not isinstance(value, bool):
            if isinstance(value, int):
                return value
            f = float(value)
            if f != int(f):
                raise ValueError(value)
            return int(f)
        if hint is Path:
            return Path(value)
        if origin is tuple:
            items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
            args = typing.get_args(hint)
            inner = args[0] if args else Any
            return tuple(_coerce(name, v, inner, source) if inner is not Any else v for v in items)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int("1e400") is int(inf)
        kind = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{source}: {name} must be {kind}, got {value!r}") from None
    return value


def option_names(mapping: dict[str, Any] | None) -> dict[str, Any]:
    """``mapping`` with its keys spelt as the config fields are (``jpeg-quality`` → ``jpeg_quality``)."""
    return {str(k).replace("-", "_"): v for k, v in (mapping or {}).items()}


def from_mapping(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build a config dataclass from a mapping (YAML, recipe, command line), rejecting unknown keys.

    Keys may use dashes or underscores (``jpeg-quality`` = ``jpeg_quality``); values are coerced to
    the fields' annotated types, so every YAML number form (``2e-4``, ``1e2``) works.

    Args:
        cls: the dataclass.
        data: the mapping.
        source: where the mapping came from, for error messages.

    Raises:
        ConfigError: on unknown keys, missing required keys or invalid values.
    """
    import typing

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of options")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    data = option_names(data)
    for old, advice in RENAMED.items():
        if old in data and old not in fields:
            raise ConfigError(f"{source}: {old} was renamed: {advice}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        valid = ", ".join(sorted(n.replace("_", "-") for n in fields))
        raise ConfigError(f"{source}: unknown option(s) {', '.join(unknown)}; valid: {valid}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(k, v, hints.get(k, Any), source) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


GAN_LOSSES: tuple[str, ...] = ("vanilla", "lsgan", "wgan", "wgangp")
#: the worker counts chosen for the machine (``--workers auto``); any count ≥ 0 is taken as well
AUTO_WORKERS: tuple[str, ...] = ("auto",)


def parse_workers(value: Any) -> int | str:
    """A training ``workers`` value: ``auto`` or a count ≥ 0 (``"4"``, ``4`` or ``4.0`` → 4).

    Raises:
        ConfigError: for anything else, in one line.
    """
    if isinstance(value, str) and value.strip().lower() in AUTO_WORKERS:
        return "auto"
    number = value.strip() if isinstance(value, str) else value
    try:
        count = int(number) if not isinstance(number, bool | float) else None
    except (TypeError, ValueError):
        count = None
    if isinstance(number, float) and number.is_integer():
        count = int(number)
    if count is None or count < 0:
        raise ConfigError(f"workers must be auto or a count of processes (0 or more), got {value!r}")
    return count
AUGMENTS: tuple[str, ...] = ("none", "flip", "d4")


@dataclass
class TrainConfig:
    """Options of ``p2ptools train``.

    Args:
        dataset: a folder with ``train/`` (and optionally ``val/``) of A|B images.
        out: the run folder (checkpoints, logs, samples).
        epochs: total epochs of the run (the paper: 200).
        decay_epochs: the last ``decay_epochs`` epochs decay the learning rate linearly to 0;
            None means ``round(epochs * decay_fraction)``.
        decay_fraction: the share of ``epochs`` that decays when ``decay_epochs`` is not given
            (the paper's 100 + 100: 0.5).
        batch_size: images per step (the paper: 1 for facades and maps).
        lr: learning rate (Adam 2e-4; the WGAN preset uses RMSProp 5e-5).
        beta1: Adam β1.
        beta2: Adam β2.
        optimizer: ``adam`` or ``rmsprop``.
        gan_loss: ``vanilla`` (BCE with logits, the paper), ``lsgan``, ``wgan`` (weight clipping),
            ``wgangp`` (gradient penalty).
        lambda_l1: weight of the L1 term.
        n_critic: discriminator steps per generator step (WGAN: 5).
        clip_value: WGAN weight clipping bound.
        lambda_gp: WGAN-GP penalty weight.
        augment: ``flip`` (resize to load_size, random crop, horizontal flip), ``d4`` (also vertical
            flips and 90° rotations: for aerial tiles) or ``none`` (resize only).
        direction: ``AtoB`` or ``BtoA``.
        workers: DataLoader worker processes, or ``auto`` (from the usable cores and the device:
            :func:`p2ptools.training.accel.resolve_workers`).
        seed: seed of weights, data order, augmentation and dropout.
        device: ``auto`` (CUDA, then MPS, then CPU) or a torch device string.
        amp: ``auto`` (bf16 where the device runs it natively, else fp32), ``none``, ``bf16`` or
            ``fp16`` (CUDA).
        channels_last: use the channels-last memory format; None (auto): on CUDA only.
        compile: ``torch.compile`` the generator and the discriminator (opt-in: minutes of
            compiling at the start, then faster steps).
        save_every: steps between ``latest.pt`` checkpoints on the CPU (also written at the end and on
            Ctrl-C); on CUDA, where steps are fast and the file large, ``save_minutes`` counts instead.
        save_minutes: ``latest.pt`` is also written at the end of the first epoch, then at the end
            of every epoch that finishes this many minutes after the last one was written (on CUDA
            also within an epoch, checked every ``log_every`` steps): a run killed at any moment
            (SIGKILL, out of memory, a preempted job) loses at most one epoch or this much time,
            whichever is longer.
        save_epoch_freq: epochs between ``epoch_K.pt`` snapshots (generator only; 0: none).
        keep_last: keep only the newest ``keep_last`` snapshots (0: keep all).
        patience: stop after this many epochs without a better validation L1 (0: never).
        max_steps: stop after this many steps in all (None: run all epochs).
        val_images: validate on at most this many ``val/`` images.
        log_every: steps between rows of ``losses.csv``; the losses are read from the device (and
            checked for NaN) this often, so a divergence stops training within ``log_every`` steps.
    """

    dataset: Path
    out: Path
    epochs: int = 200
    decay_epochs: int | None = None
    decay_fraction: float = 0.5
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    optimizer: str = "adam"
    gan_loss: str = "vanilla"
    lambda_l1: float = 100.0
    n_critic: int = 1
    clip_value: float = 0.01
    lambda_gp: float = 10.0
    augment: str = "flip"
    direction: str = "AtoB"
    workers: int | str = "auto"
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    save_every: int = 500
    save_minutes: float = 10.0
    save_epoch_freq: int = 5
    keep_last: int = 5
    patience: int = 0
    max_steps: int | None = None
    val_images: int = 64
    log_every: int = 10

    def __post_init__(self) -> None:
        self.dataset, self.out = Path(self.dataset), Path(self.out)
        self.validate()

    def validate(self) -> None:
        """Check every field (``workers`` given as a number in a string becomes the int).

        Raises:
            ConfigError: naming the first invalid field.
        """
        choices = {"optimizer": OPTIMIZERS, "gan_loss": GAN_LOSSES, "augment": AUGMENTS,
                   "direction": AB_DIRECTIONS, "amp": TRAIN_AMPS}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}")
        self.workers = parse_workers(self.workers)
        for name in ("patience", "save_epoch_freq", "keep_last"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("epochs", "batch_size", "n_critic", "save_every", "val_images", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.decay_epochs is not None and not 0 <= self.decay_epochs <= self.epochs:
            raise ConfigError(f"decay_epochs must be between 0 and epochs ({self.epochs}), got {self.decay_epochs}; "
                              "epochs is the total, and the last decay_epochs of them decay the learning rate")
        _check_fraction("decay_fraction", self.decay_fraction)
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not self.save_minutes >= 0:
            raise ConfigError(f"save_minutes must not be negative, got {self.save_minutes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be at least 1, got {self.max_steps}")

    @property
    def n_decay(self) -> int:
        """Epochs of learning-rate decay at the end of the run."""
        return self.decay_epochs if self.decay_epochs is not None else round(self.epochs * self.decay_fraction)

    @property
    def n_constant(self) -> int:
        """Epochs at the initial learning rate (the official code's ``n_epochs``)."""
        return self.epochs - self.n_decay


def check_types(cfg: Any) -> None:
    """Each field of a (flat) config dataclass holds its annotated type (a checkpoint or a Python
    caller may give anything); ``float`` fields also take ints.

    Raises:
        ConfigError: naming the first field of the wrong type.
    """
    import typing

    accepted: dict[Any, tuple[type, ...]] = {str: (str,), int: (int,), float: (int, float), bool: (bool,)}
    for name, hint in typing.get_type_hints(type(cfg)).items():
        value = getattr(cfg, name)
        kinds = accepted.get(hint)
        if kinds and (not isinstance(value, kinds) or (hint is not bool and isinstance(value, bool))):
            raise ConfigError(f"{name} must be {hint.__name__}, got {value!r}")


def _preset_names() -> tuple[str, ...]:
    """The bundled presets: the YAML files of :func:`presets_dir`, the paper's first."""
    try:
        names = sorted(p.stem for p in presets_dir().glob("*.yaml"))
    except OSError:  # pragma: no cover
        names = []
    return tuple(sorted(names, key=lambda n: (n != "pix2pix", n)))


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping (an empty file is an empty mapping).

    Raises:
        ConfigError: naming the file, if it cannot be read or parsed or is not a mapping.
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping")
    return data


def bundled_dir(name: str) -> Path:
    """A bundled folder: ``p2ptools/_<name>`` in an installed wheel, ``<name>/`` beside the package in a
    clone or an editable install."""
    here = Path(__file__).resolve().parent
    installed = here / f"_{name}"
    return installed if installed.is_dir() else here.parent / name


def presets_dir() -> Path:
    """The bundled model presets (the repository's ``models/``)."""
    return bundled_dir("models")


PRESET_NAMES: tuple[str, ...] = _preset_names()


def load_preset(spec: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a model preset: a YAML file with ``model:`` and ``train:`` mappings.

    Args:
        spec: a path, or the name of a bundled preset (:data:`PRESET_NAMES`: the YAML files of
            :func:`presets_dir`) looked up there.

    Returns:
        The ``model`` and ``train`` mappings (not yet validated).

    Raises:
        ConfigError: if the file is missing or malformed.
    """
    path = Path(spec)
    if not path.is_file():
        bundled = presets_dir() / f"{spec}.yaml"
        if not bundled.is_file():
            raise ConfigError(f"model preset {spec!r} is neither a file nor a bundled preset "
                              f"({', '.join(PRESET_NAMES)} in {presets_dir()})")
        path = bundled
    data = read_yaml_mapping(path)
    if not isinstance(data, dict) or not set(data) <= {"model", "train"}:
        raise ConfigError(f"{path}: a preset has a 'model:' and an optional 'train:' mapping")
    return dict(data.get("model") or {}), dict(data.get("train") or {})
