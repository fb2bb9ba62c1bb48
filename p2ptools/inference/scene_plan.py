"""Planning a whole-scene prediction: what the raster must be (the run's data contract), how it is
read (bands, stretch, labels or native bands), the windows and the output's profile."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from p2ptools.contract import DataContract, PhotoSpec, check_scene_input
from p2ptools.errors import ConfigError, InputError
from p2ptools.prep.bands import HalfSpec, half_specs
from p2ptools.prep.labels import Palette, load_palette, palette_from_dict
from p2ptools.prep.raster import (
    SceneInfo,
    ScenePair,
    choose_bands,
    colour_bands,
    compute_stretch,
    has_nodata,
    is_georeferenced,
)
from p2ptools.prep.tiling import axis_offsets

log = logging.getLogger(__name__)


def hann_window(size: int) -> np.ndarray:
    """``(size, size)`` float32 blending weights: the outer product of a half-sample-shifted Hann window."""
    h = 0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(size) + 0.5) / size)
    return np.outer(h, h).astype(np.float32)


def _input_kind(ds: rasterio.io.DatasetReader, requested: str) -> str:
    """The heuristic for runs without a data contract: one integer band (not uint16) is labels."""
    if requested != "auto":
        return requested
    return "labels" if ds.count == 1 and np.issubdtype(np.dtype(ds.dtypes[0]), np.integer) and \
        ds.dtypes[0] != "uint16" else "rgb"


def scene_palette(contract: DataContract, spec: str | None) -> Palette:
    if spec:
        return load_palette(spec)
    if contract.palette:
        return palette_from_dict(contract.palette, "checkpoint")
    raise ConfigError("the raster has one integer band, read as class labels, but the checkpoint has no palette (its "
                      "dataset had no dataset.json): if it is a grayscale photo, pass --input-kind rgb; if it is a "
                      "label raster, pass --palette NAME|FILE")


@dataclass
class ScenePlan:
    """How a scene is translated: what is read and written, and the window grid (padded coordinates)."""

    kind: str  # labels | rgb (what the model reads)
    writes: str  # classes | rgb (what the output holds)
    palette: Palette | None  # to colorize label input / decode label output
    T: int
    pad: int  # mirrored pixels around the scene
    ys: list[int]
    xs: list[int]
    weights: np.ndarray
    blend: str
    in_spec: HalfSpec | None = None  # GeoTIFF-trained models: how the raster's values enter the network
    out_spec: HalfSpec | None = None  # … and how the network's output becomes values of the target half
    channels: int = 3  # network output channels


def _native_specs(contract: DataContract, direction: str) -> tuple[HalfSpec, HalfSpec] | None:
    """``(input, output)`` half specs of a model trained on GeoTIFF tiles, else None."""
    if not contract.tif:
        return None
    specs = half_specs(contract.to_dict())
    return (specs["A"], specs["B"]) if direction == "AtoB" else (specs["B"], specs["A"])


def _check_native_photo(spec: HalfSpec, scene: Path, count: int, dtype: str, model: str) -> str:
    """``native``, after checking that a photo raster fits a model trained on GeoTIFF photo tiles.

    Raises:
        InputError: naming the raster, what it holds and what the model reads.
    """
    if (count, dtype) != (spec.channels, spec.dtype):
        raise InputError(f"{scene}: {count} band(s) of {dtype}; the model {model} was trained on photos of "
                         f"{spec.channels} band(s) of {spec.dtype} (GeoTIFF tiles)")
    return "native"


@dataclass(frozen=True)
class PlanOptions:
    """What a whole-scene prediction was asked for: how the raster is read, the windows, the output.

    Args:
        input_kind: ``auto`` (from the contract), ``labels`` or ``rgb``.
        palette: palette for label input when the checkpoint carries none.
        rgb: for a model that writes labels, write its RGB colours instead of classes.
        overlap: pixels shared by neighbouring windows.
        blend: ``hann`` or ``none``.
        pad: pixels mirrored around the scene.
    """

    input_kind: str
    palette: str | None
    rgb: bool
    overlap: int
    blend: str
    pad: int


def plan_scene(src: rasterio.io.DatasetReader, scene: Path, contract: DataContract, direction: str, model: str,
               T: int, options: PlanOptions) -> ScenePlan:
    """Check the raster against the run's data contract and lay out the windows.

    Args:
        src: the raster, open.
        scene: its path or URL, for messages.
        contract: the run's data contract.
        direction: the run's ``AtoB`` or ``BtoA``.
        model: the checkpoint, for messages.
        T: the model's tile size.
        options: what the prediction was asked for.

    Returns:
        What is read and written, and the window grid.

    Raises:
        InputError: if the raster does not fit what the model was trained on.
        ConfigError: if an option contradicts the contract.
    """
    input_kind, palette, rgb = options.input_kind, options.palette, options.rgb
    overlap, blend, pad = options.overlap, options.blend, options.pad
    count = len(colour_bands(src)) or src.count
    dtype = src.dtypes[0]
    reads, writes = contract.roles(direction)
    native = _native_specs(contract, direction)
    if native and native[0].role == "photo":
        kind = _check_native_photo(native[0], scene, count, dtype, model)
        if input_kind not in ("auto", "rgb"):
            raise ConfigError(f"--input-kind {input_kind}: the model {model} reads photo rasters")
    elif reads in ("label", "photo", "photo with hole"):
        kind = check_scene_input(contract, direction, str(scene), count, dtype, model)
        if input_kind not in ("auto", kind):
            raise ConfigError(f"--input-kind {input_kind}: the model {model} reads {reads} rasters "
                              f"({'labels' if kind == 'labels' else 'rgb'})")
    else:
        kind = _input_kind(src, input_kind)
    needs_palette = kind == "labels" or (writes == "label" and not rgb)
    pal = scene_palette(contract, palette) if needs_palette else None
    if not 0 <= pad < T:
        raise ConfigError(f"pad must be in [0, {T}) for a {T}-px model, got {pad}")
    stride = T - overlap
    out_kind = "classes" if writes == "label" and not rgb else "rgb"
    if native and native[1].role == "photo":
        out_kind = "native"
    return ScenePlan(kind=kind, writes=out_kind, palette=pal, T=T, pad=pad,
                 ys=axis_offsets(src.height + 2 * pad, T, stride, "shift"),
                 xs=axis_offsets(src.width + 2 * pad, T, stride, "shift"),
                 weights=hann_window(T) if blend == "hann" else np.ones((T, T), np.float32), blend=blend,
                 in_spec=native[0] if native else None, out_spec=native[1] if native else None,
                 channels=native[1].channels if native else 3)


def describe_input(plan: ScenePlan, bands: tuple[int, ...], count: int, dtype: str) -> str:
    """What the raster is, in words, for the logs: ``label raster``, ``1-band photo``, ``3-band photo (bands
    1,2,3 of 4)``, ``4-band uint16 photo`` (read in its own units by a model trained on GeoTIFF tiles).

    Args:
        plan: the scene's plan (what the model reads).
        bands: the bands read (1-based).
        count: the raster's band count.
        dtype: the raster's data type.
    """
    if plan.kind == "labels":
        return "label raster"
    if plan.kind == "native":
        return f"{len(bands)}-band {dtype} photo"
    part = f" (bands {','.join(map(str, bands))} of {count})" if len(bands) != count else ""
    return f"{len(bands)}-band photo{part}"


def output_profile(src: rasterio.io.DatasetReader, plan: ScenePlan) -> dict[str, Any]:
    profile: dict[str, Any] = {"driver": "GTiff", "width": src.width, "height": src.height, "tiled": True,
                               "blockxsize": 256, "blockysize": 256}
    if plan.writes == "classes":
        assert plan.palette is not None
        profile.update(count=1, dtype="uint16" if max(plan.palette.values) > 255 else "uint8", photometric="palette")
    elif plan.writes == "native":
        assert plan.out_spec is not None
        profile.update(count=plan.out_spec.channels, dtype=plan.out_spec.dtype)
        if (plan.out_spec.channels, plan.out_spec.dtype) == (3, "uint8"):
            profile.update(photometric="RGB")
    else:
        profile.update(count=3, dtype="uint8", photometric="RGB")
    if is_georeferenced(src):
        profile.update(crs=src.crs, transform=src.transform)
    return profile


def scene_info(src: rasterio.io.DatasetReader, scene: Path, plan: ScenePlan, photo: PhotoSpec | None,
                bands: tuple[int, ...] | None) -> SceneInfo:
    """What is read of the scene: its bands (by the plan and the contract), grid, stretch and nodata.

    Raises:
        ConfigError: ``--bands`` for a model that reads every band (GeoTIFF tiles).
    """
    if plan.kind == "native":
        if bands:
            raise ConfigError("--bands: a model trained on GeoTIFF tiles reads all bands of the raster, as tiled")
        chosen = colour_bands(src)
    else:
        chosen = choose_bands(src, bands or (photo.bands if photo else None)) if plan.kind == "rgb" else (1,)
    return SceneInfo(
        pair=ScenePair(scene.stem, scene, None), height=src.height, width=src.width, bands=chosen,
        crs=src.crs.to_string() if src.crs else "", transform=tuple(src.transform)[:6],  # type: ignore[arg-type]
        stretch=scene_stretch(src, chosen, photo) if plan.kind == "rgb" else None,
        has_nodata=has_nodata(src), mask_dtype=src.dtypes[0],
    )


def scene_stretch(src: rasterio.io.DatasetReader, bands: tuple[int, ...], photo: PhotoSpec | None
                  ) -> tuple[tuple[float, float], ...] | None:
    """The 8-bit stretch of a photo to predict: the training dataset's own (``tile --stretch-scope
    dataset``), else the scene's percentiles as ``tile`` computed them (None for 8-bit photos)."""
    fixed = ((photo.dataset_stretch or {}).get("photo") if photo else None)
    if fixed and len(fixed) == len(bands) and not all(src.dtypes[b - 1] == "uint8" for b in bands):
        return tuple((float(lo), float(hi)) for lo, hi in fixed)
    return compute_stretch(src, bands, photo.stretch if photo else (2.0, 98.0))
