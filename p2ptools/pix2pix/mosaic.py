"""Whole-scene translation: a trained generator over a georeferenced raster of any size → GeoTIFF.

Sliding windows of the model's size with ``overlap`` pixels of overlap (default a quarter of the
tile) cover the scene; every output is weighted by a 2-D Hann window that falls off towards the
tile's borders (``w(i, j) = h(i)·h(j)``, ``h(i) = ½ − ½·cos(2π(i + ½)/T)``, never exactly 0), the
weighted outputs and the weights are accumulated in float32 and divided, so neighbouring tiles
fade into each other and no seam is left where a plain stitch shows the U-Net's border effects.
The scene is mirrored by a quarter tile on every side (``symmetric`` padding, as the network's own
reflect padding would), so border pixels are seen well inside a window, like every other pixel,
rather than only at a window's weak edge; the last window of each row and column is shifted back
to end at the padded edge, so any size works, scenes smaller than a tile included.

What the raster must be and how it is read come from the run's data contract
(:mod:`p2ptools.contract`): bands, dtype, stretch percentiles, label or photo. A model that writes
label maps gives a class raster: the blended colours are decoded to the nearest palette colour
*after* blending (blending class values would invent classes), written as one band of the
palette's values with the palette as the GeoTIFF colour table (``rgb=True``: the colours instead).
A model trained on GeoTIFF tiles (``tile --format tif``) reads every band of the raster in its own
dtype, mapped to the network's range with the per-band ``low``/``high`` of the contract, and writes
the target half as it was tiled: all its bands, in its dtype (e.g. labels → 4 bands of uint16), the
blended outputs mapped back with the target's ``low``/``high`` (:mod:`p2ptools.pix2pix.bands`).

BatchNorm runs in eval mode (running statistics), so every tile is normalised alike: train-mode
batch statistics of single tiles would shift colours tile by tile and show as seams.

Memory does not grow with the scene: the scene is cut into vertical bands at most ``band_width``
pixels wide (tiles crossing a band border are computed for both bands), each band is read one
tile row at a time, and an accumulator one tile high moves down it, writing finished rows to an
uncompressed temporary GeoTIFF. The result is then copied to the final compressed, tiled GeoTIFF
(with overviews on request) and renamed into place. Nodata and transparent input pixels are written
as a dataset mask, so they stay nodata in the output.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio import shutil as rio_shutil
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from p2ptools import __version__
from p2ptools.contract import DataContract, PhotoSpec, check_scene_input, from_checkpoint
from p2ptools.errors import ConfigError, InputError, OutputError
from p2ptools.pix2pix.bands import HalfSpec, half_specs
from p2ptools.pix2pix.checkpoints import load_generator, resolve_checkpoint
from p2ptools.pix2pix.engine import make_engine
from p2ptools.pix2pix.predict import set_inference_mode
from p2ptools.prep.labels import Palette, check_values, load_palette, palette_from_dict
from p2ptools.prep.raster import (
    GDAL_CACHE_BYTES,
    SceneInfo,
    ScenePair,
    choose_bands,
    clip_window,
    colour_bands,
    compute_stretch,
    has_nodata,
    is_georeferenced,
    open_raster,
    read_labels,
    read_photo,
    read_valid,
)
from p2ptools.prep.sources import is_remote
from p2ptools.prep.tiling import axis_offsets
from p2ptools.runtime.device import select_device
from p2ptools.runtime.progress import Ticker, duration, report
from p2ptools.runtime.space import disk_full, is_disk_full

log = logging.getLogger(__name__)


def hann_window(size: int) -> np.ndarray:
    """``(size, size)`` float32 blending weights: the outer product of a half-sample-shifted Hann window."""
    h = 0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(size) + 0.5) / size)
    return np.outer(h, h).astype(np.float32)


@dataclass
class MosaicReport:
    """What a whole-scene prediction did."""

    out: Path
    checkpoint: str
    width: int
    height: int
    tiles: int
    input_kind: str
    seconds: float = 0.0

    @property
    def mpix_per_s(self) -> float:
        return self.width * self.height / 1e6 / self.seconds if self.seconds else math.nan


def _input_kind(ds: rasterio.io.DatasetReader, requested: str) -> str:
    """The heuristic for runs without a data contract: one integer band (not uint16) is labels."""
    if requested != "auto":
        return requested
    return "labels" if ds.count == 1 and np.issubdtype(np.dtype(ds.dtypes[0]), np.integer) and \
        ds.dtypes[0] != "uint16" else "rgb"


def _palette(contract: DataContract, spec: str | None) -> Palette:
    if spec:
        return load_palette(spec)
    if contract.palette:
        return palette_from_dict(contract.palette, "checkpoint")
    raise ConfigError("the raster has one integer band, read as class labels, but the checkpoint has no palette (its "
                      "dataset had no dataset.json): if it is a grayscale photo, pass --input-kind rgb; if it is a "
                      "label raster, pass --palette NAME|FILE")


def read_mirrored(read: Callable[[int, int, int, int], np.ndarray], y: int, x: int, h: int, w: int, height: int,
                  width: int) -> np.ndarray:
    """``read(y, x, h, w)`` of a window that may reach outside a ``height × width`` scene, mirrored
    at the scene's borders (numpy's ``symmetric`` padding: the edge pixel, then the scene backwards).

    The window must overlap the scene. Returns an array whose first two axes are ``(h, w)``.
    """
    y0, y1 = max(y, 0), min(y + h, height)
    x0, x1 = max(x, 0), min(x + w, width)
    arr = read(y0, x0, y1 - y0, x1 - x0)
    pads = ((y0 - y, y + h - y1), (x0 - x, x + w - x1)) + ((0, 0),) * (arr.ndim - 2)
    return np.pad(arr, pads, mode="symmetric") if any(map(any, pads)) else arr


def nearest_class(rgb: np.ndarray, palette: Palette) -> np.ndarray:
    """``(3, H, W)`` float colours → ``(H, W)`` class values: the palette colour nearest to each pixel."""
    colors = np.array([c.color for c in palette.classes], np.float32)  # (K, 3)
    values = np.array([c.value for c in palette.classes], np.uint16 if max(palette.values) > 255 else np.uint8)
    best = np.zeros(rgb.shape[1:], np.int64)
    best_d = np.full(rgb.shape[1:], np.inf, np.float32)
    for k, c in enumerate(colors):
        d = ((rgb - c[:, None, None]) ** 2).sum(axis=0)
        closer = d < best_d
        best[closer], best_d[closer] = k, d[closer]
    return values[best]


@dataclass
class _Plan:
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


def _plan(src: rasterio.io.DatasetReader, scene: Path, contract: DataContract, direction: str, model: str,
          input_kind: str, palette: str | None, rgb: bool, T: int, overlap: int, blend: str, pad: int) -> _Plan:
    """Check the raster against the run's data contract and lay out the windows.

    Raises:
        InputError: if the raster does not fit what the model was trained on.
        ConfigError: if an option contradicts the contract.
    """
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
    pal = _palette(contract, palette) if needs_palette else None
    if not 0 <= pad < T:
        raise ConfigError(f"pad must be in [0, {T}) for a {T}-px model, got {pad}")
    stride = T - overlap
    out_kind = "classes" if writes == "label" and not rgb else "rgb"
    if native and native[1].role == "photo":
        out_kind = "native"
    return _Plan(kind=kind, writes=out_kind, palette=pal, T=T, pad=pad,
                 ys=axis_offsets(src.height + 2 * pad, T, stride, "shift"),
                 xs=axis_offsets(src.width + 2 * pad, T, stride, "shift"),
                 weights=hann_window(T) if blend == "hann" else np.ones((T, T), np.float32), blend=blend,
                 in_spec=native[0] if native else None, out_spec=native[1] if native else None,
                 channels=native[1].channels if native else 3)


def _output_profile(src: rasterio.io.DatasetReader, plan: _Plan) -> dict[str, Any]:
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


def predict_scene(
    run_or_ckpt: Path,
    scene: Path,
    out: Path,
    which: str = "latest",
    overlap: int | None = None,
    blend: str = "hann",
    batch_size: int = 8,
    device: str = "auto",
    amp: str = "auto",
    input_kind: str = "auto",
    palette: str | None = None,
    bands: tuple[int, ...] | None = None,
    overviews: bool = False,
    band_width: int = 4096,
    progress: bool = True,
    rgb: bool = False,
    pad: int | None = None,
    tags: dict[str, str] | None = None,
    window_lines: bool = True,
    engine: str = "auto",
) -> MosaicReport:
    """Translate a whole raster (see the module docstring).

    The run's data contract (:mod:`p2ptools.contract`) decides what the raster must be and how it is
    read: a label raster for a label → photo model, a photo with the training photos' band count and
    dtype, stretched with the same percentiles, for a photo → label model. A model that writes
    labels gives a class raster (one band of the palette's values, the palette as colour table).

    Args:
        run_or_ckpt: run folder or checkpoint.
        scene: input GeoTIFF.
        out: output GeoTIFF path.
        which: checkpoint of a run folder.
        overlap: pixels shared by neighbouring windows (default: a quarter of the tile); 0 with
            ``blend="none"`` is a plain stitch.
        blend: ``hann`` (default) or ``none`` (each output pixel from one tile, the last written).
        batch_size: windows per forward pass.
        device: ``auto`` or a torch device string.
        amp: ``auto``, ``none``, ``bf16`` or ``fp16``.
        input_kind: ``auto`` (from the contract), ``labels`` or ``rgb``.
        palette: palette for label input when the checkpoint carries none.
        bands: photo bands (1-based) for RGB input (default: the contract's, else RGB of RGB/RGBN).
        overviews: build overviews (2, 4, 8, … average) into the output.
        band_width: widest band processed at once (bounds memory).
        progress: show a progress bar.
        rgb: for a model that writes labels, write its RGB colours instead of classes.
        pad: pixels mirrored around the scene (default a quarter of the tile; 0: none).
        tags: extra GDAL metadata items written into the output.
        window_lines: log a line at every tenth of the windows (off when many scenes share the log).

    Raises:
        InputError: for unreadable input, or input that does not fit the run's data contract.
        ConfigError: for bad options (e.g. a label raster without a palette).
    """
    import time

    start = time.perf_counter()
    dev = select_device(device)
    G, mcfg, meta = prepared_generator(run_or_ckpt, which, dev)
    contract = from_checkpoint(meta.get("dataset"))
    direction = meta["train_config"].get("direction", "AtoB")
    T = mcfg.image_size
    overlap = T // 4 if overlap is None else overlap
    if blend not in ("hann", "none"):
        raise ConfigError(f"blend must be hann or none, got {blend!r}")
    if not 0 <= overlap < T:
        raise ConfigError(f"overlap must be in [0, {T}) for a {T}-px model, got {overlap}")
    scene, out = (scene if is_remote(scene) else Path(scene)), Path(out)
    check_raster_output(scene, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES, GDAL_TIFF_INTERNAL_MASK=True), open_raster(scene) as src, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        if not is_georeferenced(src):
            log.warning("%s has no georeference (CRS and transform): the prediction is written on its pixel grid "
                        "without one", scene)
        plan = _plan(src, scene, contract, direction, meta["path"], input_kind, palette, rgb, T, overlap, blend,
                     T // 4 if pad is None else pad)
        info = _scene_info(src, scene, plan, contract.photo, bands)
        width_p = src.width + 2 * plan.pad
        bands_x = [(b0, min(b0 + band_width, width_p)) for b0 in range(0, width_p, band_width)]
        total = sum(len(plan.ys) * sum(1 for x in plan.xs if x < b1 and x + T > b0) for b0, b1 in bands_x)
        run = make_engine(G, meta, mcfg.in_channels, T, dev, engine, amp, channels_last=dev.type in ("cpu", "cuda"))
        tmp = _temp_output(out)
        try:
            profile = _output_profile(src, plan)
            with _open_output(tmp, profile, plan, tags) as dst, \
                    Ticker(total, f"predict {scene.name}", "windows", steps=10 if window_lines else 0,
                           show_bar=progress) as bar:
                for b0, b1 in bands_x:  # vertical bands of the (mirrored) scene, each top to bottom
                    _predict_band(run, src, dst, info, plan, [x for x in plan.xs if x < b1 and x + T > b0], b0, b1,
                                  batch_size, bar)
            _finish_output(tmp, out, src, plan, profile, overviews)
        except Exception as exc:
            if is_disk_full(exc):  # the output's disk, never the scene's fault
                raise disk_full(out, None) from None
            raise
        finally:
            tmp.unlink(missing_ok=True)
            for extra in out.parent.glob(f".{out.name}.*.part.tif*"):
                extra.unlink(missing_ok=True)
    result = MosaicReport(out, meta["path"], src.width, src.height, total, plan.kind)
    result.seconds = time.perf_counter() - start
    report("predicted %s (%d×%d, %d windows) in %s → %s", scene, src.width, src.height, total,
           duration(result.seconds), out)
    return result


SOFTWARE_TAG = "p2ptools"


def _scene_info(src: rasterio.io.DatasetReader, scene: Path, plan: _Plan, photo: PhotoSpec | None,
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


def _temp_output(out: Path) -> Path:
    """A temporary file beside ``out`` for the rows as they are finished (a full disk said as such)."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".tmp.tif", dir=out.parent)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(out, None) from None
        raise
    os.close(fd)
    return Path(name)


def _open_output(tmp: Path, profile: dict[str, Any], plan: _Plan, tags: dict[str, str] | None) -> Any:
    """The output raster, open for writing: p2ptools' tag (and the caller's), the palette as colour table."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a scene without georeference
        dst = rasterio.open(tmp, "w", **profile)
    dst.update_tags(TIFFTAG_SOFTWARE=f"{SOFTWARE_TAG} {__version__}", **(tags or {}))
    if plan.writes == "classes":
        assert plan.palette is not None
        dst.write_colormap(1, {c.value: (*c.color, 255) for c in plan.palette.classes})
        dst.update_tags(1, **{f"class_{c.value}": c.name for c in plan.palette.classes})
    return dst


def _finish_output(tmp: Path, out: Path, src: rasterio.io.DatasetReader, plan: _Plan, profile: dict[str, Any],
                   overviews: bool) -> None:
    """Overviews if asked, then a tiled, compressed copy renamed into place (atomic)."""
    if overviews:
        with rasterio.open(tmp, "r+") as dst:
            factors = [2**k for k in range(1, 12) if max(src.width, src.height) / 2**k >= 256]
            if factors:
                dst.build_overviews(factors, Resampling.nearest if plan.writes == "classes" else Resampling.average)
    final_tmp = out.parent / f".{out.name}.{os.getpid()}.part.tif"
    floating = np.issubdtype(np.dtype(profile["dtype"]), np.floating)
    rio_shutil.copy(tmp, final_tmp, driver="GTiff", compress="deflate", predictor=3 if floating else 2,
                    tiled=True, blockxsize=256, blockysize=256, copy_src_overviews=bool(overviews),
                    bigtiff="if_safer")
    os.replace(final_tmp, out)


def prepared_generator(run_or_ckpt: Path, which: str, dev: torch.device) -> tuple[Any, Any, dict[str, Any]]:
    """The generator of a checkpoint ready for whole scenes (eval mode, BatchNorm folded into the
    convolutions, channels-last), its model config and checkpoint metadata; loaded once per process
    and checkpoint file version, so many scenes in one worker share it."""
    path = resolve_checkpoint(run_or_ckpt, which)
    st = path.stat()
    return _prepared(str(path.resolve()), st.st_mtime_ns, st.st_size, str(dev))


@functools.lru_cache(maxsize=2)
def _prepared(path: str, mtime_ns: int, size: int, device: str) -> tuple[Any, Any, dict[str, Any]]:
    dev = torch.device(device)
    G, mcfg, meta = load_generator(Path(path), device=dev)
    set_inference_mode(G)
    if mcfg.g_norm == "instance":
        log.warning("%s: the generator uses instance normalisation, so each window is normalised by its own "
                    "statistics and neighbouring windows can differ in tone; the blending hides most of it, a "
                    "larger --overlap more", meta["path"])
    if hasattr(G, "fold_batchnorm"):
        G.fold_batchnorm()  # eval-mode BatchNorm is an affine map: fold it into the convolutions
    if dev.type in ("cpu", "cuda"):
        G = G.to(memory_format=torch.channels_last)
    return G, mcfg, meta


def scene_stretch(src: rasterio.io.DatasetReader, bands: tuple[int, ...], photo: PhotoSpec | None
                  ) -> tuple[tuple[float, float], ...] | None:
    """The 8-bit stretch of a photo to predict: the training dataset's own (``tile --stretch-scope
    dataset``), else the scene's percentiles as ``tile`` computed them (None for 8-bit photos)."""
    fixed = ((photo.dataset_stretch or {}).get("photo") if photo else None)
    if fixed and len(fixed) == len(bands) and not all(src.dtypes[b - 1] == "uint8" for b in bands):
        return tuple((float(lo), float(hi)) for lo, hi in fixed)
    return compute_stretch(src, bands, photo.stretch if photo else (2.0, 98.0))


def check_raster_output(scene: Path, out: Path) -> None:
    """A whole-scene output must be a new ``.tif``/``.tiff`` (or one p2ptools wrote), not the input.

    Raises:
        OutputError: naming the file and what to do.
    """
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise OutputError(f"{out}: whole-scene predictions are GeoTIFFs; name the output .tif or .tiff")
    if out.exists() and out.resolve() == scene.resolve():
        raise OutputError(f"{out}: is the input scene; write the prediction to another file")
    if out.exists():
        if not str((raster_tags(out) or {}).get("TIFFTAG_SOFTWARE", "")).startswith(SOFTWARE_TAG):
            raise OutputError(f"{out}: exists and was not written by p2ptools; p2ptools never replaces it: "
                              "choose another output file or move it away")


def raster_tags(path: Path) -> dict[str, str] | None:
    """The dataset metadata of a raster file, or None when it is missing or not a readable raster."""
    if not Path(path).is_file():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                return dict(ds.tags())
    except rasterio.errors.RasterioError:
        return None


def _read_window(src: rasterio.io.DatasetReader, info: SceneInfo, plan: _Plan, y: int, x: int, span: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The ``T × span`` window at padded ``(y, x)`` in the network's range, ``(T, span, C)`` float32,
    and its validity ``(T, span)``."""
    H, W, p, T = src.height, src.width, plan.pad, plan.T

    def mirrored(read: Callable[..., np.ndarray]) -> np.ndarray:
        return read_mirrored(lambda yy, xx, hh, ww: read(src, info, yy, xx, hh, ww), y - p, x - p, T, span, H, W)

    if plan.kind == "labels":
        assert plan.palette is not None
        background = plan.palette.background
        labels = mirrored(lambda *a: read_labels(*a, background))
        check_values(labels, plan.palette, str(info.pair.image))
        net = np.take(plan.palette.lut(), labels, axis=0).astype(np.float32) / 127.5 - 1.0
    elif plan.kind == "native":
        assert plan.in_spec is not None
        values = np.moveaxis(mirrored(lambda *a: np.moveaxis(read_bands(*a), 0, -1)), -1, 0)  # (bands, T, span)
        if plan.in_spec.role == "label" and info.has_nodata:  # nodata is no class: read as background
            valid = mirrored(read_valid)
            background = (plan.in_spec.palette or {}).get("background", 0)
            values = np.where(valid[None] if valid.ndim == 2 else valid, values, np.asarray(background, values.dtype))
        net = plan.in_spec.encode(values, str(info.pair.image))
    else:
        net = mirrored(read_photo).astype(np.float32) / 127.5 - 1.0
    return net, mirrored(read_valid)


def read_bands(ds: rasterio.io.DatasetReader, info: SceneInfo, y: int, x: int, height: int, width: int
               ) -> np.ndarray:
    """``(bands, H, W)`` values of ``info.bands`` in the raster's dtype for a window inside the scene."""
    win = clip_window(y, x, height, width, info.height, info.width)
    assert win is not None and (int(win.height), int(win.width)) == (height, width)
    return ds.read(list(info.bands), window=win)


def _predict_band(run, src, dst, info: SceneInfo, plan: _Plan, xs: list[int], b0: int, b1: int, batch_size: int,
                  bar) -> None:
    """Accumulate and write one vertical band ``[b0, b1)`` (padded coordinates) of the scene, top to bottom.

    Rows and columns are in the coordinates of the scene mirrored by ``plan.pad`` pixels on every
    side; only the scene itself is written.
    """
    T, p, weights, ys = plan.T, plan.pad, plan.weights, plan.ys
    x0 = xs[0]
    span = xs[-1] + T - x0  # columns read for this band's windows
    bw = b1 - b0
    C = plan.channels
    acc = np.zeros((C, T, bw), np.float32)
    wsum = np.zeros((T, bw), np.float32)
    valid_rows = np.zeros((T, bw), bool)
    height_p = src.height + 2 * p
    for r, y in enumerate(ys):
        try:
            net, valid = _read_window(src, info, plan, y, x0, span)
        except rasterio.errors.RasterioError as exc:
            raise InputError(f"{info.pair.image}: cannot read window at row {y - p}: {exc}") from exc
        for i in range(0, len(xs), batch_size):
            group = xs[i : i + batch_size]
            batch = torch.stack([torch.from_numpy(net[:, x - x0 : x - x0 + T]).permute(2, 0, 1) for x in group])
            outs = run(batch).clamp(-1, 1).cpu().numpy()  # (N, C, T, T) in [-1, 1], by the chosen engine
            for x, o in zip(group, outs, strict=True):
                lo, hi = max(x, b0), min(x + T, b1)  # the part of this window inside the band
                sl = slice(lo - x, hi - x)
                if plan.blend == "none":
                    acc[:, :, lo - b0 : hi - b0] = o[:, :, sl]
                    wsum[:, lo - b0 : hi - b0] = 1.0
                else:
                    acc[:, :, lo - b0 : hi - b0] += o[:, :, sl] * weights[:, sl]
                    wsum[:, lo - b0 : hi - b0] += weights[:, sl]
            bar.update(len(group))
        valid_rows |= valid[:, b0 - x0 : b1 - x0]
        last = r == len(ys) - 1
        done = min(T, height_p - y) if last else ys[r + 1] - y  # rows no later window touches
        _write_rows(dst, plan, acc[:, :done] / np.maximum(wsum[:done], 1e-12), valid_rows[:done], y, b0,
                    src.height, src.width)
        # move the accumulator down: rows [done, T) carry over to the next window row
        acc = np.concatenate([acc[:, done:], np.zeros((C, done, bw), np.float32)], axis=1)
        wsum = np.concatenate([wsum[done:], np.zeros((done, bw), np.float32)], axis=0)
        valid_rows = np.concatenate([valid_rows[done:], np.zeros((done, bw), bool)], axis=0)


def _write_rows(dst, plan: _Plan, colors: np.ndarray, keep: np.ndarray, y: int, b0: int, height: int,
                width: int) -> None:
    """Write finished ``(C, h, w)`` blended outputs (network range) at padded ``(y, b0)``: the part
    inside the scene, decoded to classes when the output is a class raster and to the target half's
    values for GeoTIFF-trained photo outputs; invalid pixels 0 and masked."""
    p = plan.pad
    r0, r1 = max(y, p), min(y + colors.shape[1], p + height)  # padded rows inside the scene
    c0, c1 = max(b0, p), min(b0 + colors.shape[2], p + width)
    if r1 <= r0 or c1 <= c0:
        return
    colors = colors[:, r0 - y : r1 - y, c0 - b0 : c1 - b0]
    keep = keep[r0 - y : r1 - y, c0 - b0 : c1 - b0]
    win = Window(c0 - p, r0 - p, c1 - c0, r1 - r0)
    if plan.writes == "native":
        assert plan.out_spec is not None
        block = plan.out_spec.decode(colors)
    elif plan.writes == "classes":
        assert plan.palette is not None
        block = nearest_class((colors + 1.0) * 127.5, plan.palette)[None]
    else:
        block = np.clip((colors + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    block[:, ~keep] = 0
    dst.write(block, window=win)
    dst.write_mask((keep * 255).astype(np.uint8), window=win)
