"""Whole-scene translation: a trained generator over a georeferenced raster of any size → GeoTIFF.

Sliding windows of the model's size with ``overlap`` pixels of overlap (default a quarter of the
tile) cover the scene; every output is weighted by a 2-D Hann window that falls off towards the
tile's borders (``w(i, j) = h(i)·h(j)``, ``h(i) = ½ − ½·cos(2π(i + ½)/T)``, never exactly 0), the
weighted outputs and the weights are accumulated in float32 and divided, so neighbouring tiles
fade into each other and no seam is left where a plain stitch shows the U-Net's border effects.
The last window of each row and column is shifted back to end at the scene edge, so any size works;
scenes smaller than a tile are padded.

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

import logging
import math
import os
import tempfile
import warnings
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
from p2ptools.pix2pix.checkpoints import load_generator
from p2ptools.pix2pix.data import to_tensor
from p2ptools.runtime.device import autocast as device_autocast
from p2ptools.runtime.device import resolve_amp, select_device
from p2ptools.errors import ConfigError, InputError, OutputError
from p2ptools.prep.labels import Palette, check_values, load_palette, palette_from_dict
from p2ptools.pix2pix.predict import set_inference_mode
from p2ptools.runtime.progress import Ticker, duration, report
from p2ptools.prep.raster import (
    GDAL_CACHE_BYTES,
    SceneInfo,
    ScenePair,
    choose_bands,
    compute_stretch,
    has_nodata,
    is_georeferenced,
    open_raster,
    read_labels,
    read_photo,
    read_valid,
)
from p2ptools.prep.tiling import axis_offsets

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
    if requested != "auto":
        return requested
    return "labels" if ds.count == 1 and np.issubdtype(np.dtype(ds.dtypes[0]), np.integer) and \
        ds.dtypes[0] != "uint16" else "rgb"


def _palette(meta: dict[str, Any], spec: str | None) -> Palette:
    if spec:
        return load_palette(spec)
    dataset = meta.get("dataset") or {}
    if dataset.get("palette"):
        return palette_from_dict(dataset["palette"], "checkpoint")
    raise ConfigError("a label raster needs the run's palette: the checkpoint has none (its dataset had no "
                      "dataset.json); pass --palette NAME|FILE")


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
) -> MosaicReport:
    """Translate a whole raster (see the module docstring).

    Args:
        run_or_ckpt: run folder or checkpoint.
        scene: input GeoTIFF: class labels (one integer band, colorized with the run's palette) or
            a photo/map (RGB of RGB/RGBN; non-8-bit data get the per-scene percentile stretch).
        out: output GeoTIFF path.
        which: checkpoint of a run folder.
        overlap: pixels shared by neighbouring windows (default: a quarter of the tile); 0 with
            ``blend="none"`` is a plain stitch.
        blend: ``hann`` (default) or ``none`` (each output pixel from one tile, the last written).
        batch_size: windows per forward pass.
        device: ``auto`` or a torch device string.
        amp: ``none``, ``bf16`` (fast on CPUs with bf16 units) or ``fp16`` (CUDA).
        input_kind: ``auto``, ``labels`` or ``rgb``.
        palette: palette for label input when the checkpoint carries none.
        bands: photo bands (1-based) for RGB input.
        overviews: build overviews (2, 4, 8, … average) into the output.
        band_width: widest band processed at once (bounds memory).
        progress: show a progress bar.

    Raises:
        InputError: for unreadable input.
        ConfigError: for bad options (e.g. a label raster without a palette).
    """
    import time

    start = time.perf_counter()
    dev = select_device(device)
    G, mcfg, meta = load_generator(run_or_ckpt, which, dev)
    set_inference_mode(G)
    if hasattr(G, "fold_batchnorm"):
        G.fold_batchnorm()  # eval-mode BatchNorm is an affine map: fold it into the convolutions
    if dev.type in ("cpu", "cuda"):
        G = G.to(memory_format=torch.channels_last)
    T = mcfg.image_size
    overlap = T // 4 if overlap is None else overlap
    if blend not in ("hann", "none"):
        raise ConfigError(f"blend must be hann or none, got {blend!r}")
    if not 0 <= overlap < T:
        raise ConfigError(f"overlap must be in [0, {T}) for a {T}-px model, got {overlap}")
    stride = T - overlap
    weights = hann_window(T) if blend == "hann" else np.ones((T, T), np.float32)
    scene, out = Path(scene), Path(out)
    check_raster_output(scene, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES, GDAL_TIFF_INTERNAL_MASK=True), open_raster(scene) as src, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        if not is_georeferenced(src):
            log.warning("%s has no georeference (CRS and transform): the prediction is written on its pixel grid "
                        "without one", scene)
        kind = _input_kind(src, input_kind)
        pal = _palette(meta, palette) if kind == "labels" else None
        chosen = choose_bands(src, bands) if kind == "rgb" else (1,)
        info = SceneInfo(
            pair=ScenePair(scene.stem, scene, None), height=src.height, width=src.width, bands=chosen,
            crs=src.crs.to_string() if src.crs else "", transform=tuple(src.transform)[:6],  # type: ignore[arg-type]
            stretch=compute_stretch(src, chosen, (2.0, 98.0)) if kind == "rgb" else None,
            has_nodata=has_nodata(src),
            mask_dtype=src.dtypes[0],
        )
        lut = None
        if pal is not None:
            lut = np.zeros((max(pal.values) + 1, 3), np.uint8)
            for c in pal.classes:
                lut[c.value] = c.color
        ys = axis_offsets(src.height, T, stride, "shift")
        xs = axis_offsets(src.width, T, stride, "shift")
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": 3, "dtype": "uint8",
                   "tiled": True, "blockxsize": 256, "blockysize": 256, "photometric": "RGB"}
        if is_georeferenced(src):
            profile.update(crs=src.crs, transform=src.transform)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".tmp.tif", dir=out.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        bands_x = [(b0, min(b0 + band_width, src.width)) for b0 in range(0, src.width, band_width)]
        total = sum(len(ys) * sum(1 for x in xs if x < b1 and x + T > b0) for b0, b1 in bands_x)
        autocast = device_autocast(dev, resolve_amp(amp, dev))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a scene without georeference
                dst = rasterio.open(tmp, "w", **profile)
            dst.update_tags(TIFFTAG_SOFTWARE=f"{SOFTWARE_TAG} {__version__}")
            with dst, Ticker(total, f"predict {Path(scene).name}", "windows", show_bar=progress) as bar:
                for b0, b1 in bands_x:
                    band_xs = [x for x in xs if x < b1 and x + T > b0]
                    _predict_band(G, src, dst, info, kind, lut, pal, ys, band_xs, b0, b1, T, weights, blend,
                                  batch_size, dev, autocast, bar)
                dst.close()
            if overviews:
                with rasterio.open(tmp, "r+") as dst:
                    factors = [2**k for k in range(1, 12) if max(src.width, src.height) / 2**k >= 256]
                    if factors:
                        dst.build_overviews(factors, Resampling.average)
            final_tmp = out.parent / f".{out.name}.{os.getpid()}.part.tif"
            rio_shutil.copy(tmp, final_tmp, driver="GTiff", compress="deflate", predictor=2, tiled=True,
                                 blockxsize=256, blockysize=256, copy_src_overviews=bool(overviews),
                                 bigtiff="if_safer")
            os.replace(final_tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
            for extra in out.parent.glob(f".{out.name}.*.part.tif*"):
                extra.unlink(missing_ok=True)
    result = MosaicReport(out, meta["path"], src.width, src.height, total, kind)
    result.seconds = time.perf_counter() - start
    report("predicted %s (%d×%d, %d windows) in %s → %s", scene, src.width, src.height, total,
           duration(result.seconds), out)
    return result


SOFTWARE_TAG = "p2ptools"


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
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                ds = rasterio.open(out)
            with ds:
                ours = str(ds.tags().get("TIFFTAG_SOFTWARE", "")).startswith(SOFTWARE_TAG)
        except rasterio.errors.RasterioError:
            ours = False
        if not ours:
            raise OutputError(f"{out}: exists and was not written by p2ptools; p2ptools never replaces it: "
                              "choose another output file or move it away")


def _predict_band(G, src, dst, info: SceneInfo, kind: str, lut, pal, ys: list[int], xs: list[int], b0: int,
                  b1: int, T: int, weights: np.ndarray, blend: str, batch_size: int, dev: torch.device,
                  autocast, bar) -> None:
    """Accumulate and write one vertical band ``[b0, b1)`` of the scene, top to bottom."""
    x0 = xs[0]
    span = xs[-1] + T - x0  # columns read for this band's windows
    bw = b1 - b0
    acc = np.zeros((3, T, bw), np.float32)
    wsum = np.zeros((T, bw), np.float32)
    valid_rows = np.zeros((T, bw), bool)
    for r, y in enumerate(ys):
        try:
            if kind == "labels":
                labels = read_labels(src, info, y, x0, T, span, fill=pal.background)
                check_values(labels, pal, str(info.pair.image))
                rgb = np.take(lut, labels, axis=0)
            else:
                rgb = read_photo(src, info, y, x0, T, span)
            valid = read_valid(src, info, y, x0, T, span)
        except rasterio.errors.RasterioError as exc:
            raise InputError(f"{info.pair.image}: cannot read window at row {y}: {exc}") from exc
        for i in range(0, len(xs), batch_size):
            group = xs[i : i + batch_size]
            batch = torch.stack([to_tensor(rgb[:, x - x0 : x - x0 + T]) for x in group]).to(dev)
            with torch.inference_mode(), autocast:
                outs = G(batch.contiguous(memory_format=torch.channels_last)).float()
            outs = ((outs.clamp(-1, 1) + 1) * 127.5).cpu().numpy()  # (N, 3, T, T) in 0..255
            for x, o in zip(group, outs, strict=True):
                lo, hi = max(x, b0), min(x + T, b1)  # the part of this window inside the band
                sl = slice(lo - x, hi - x)
                if blend == "none":
                    acc[:, :, lo - b0 : hi - b0] = o[:, :, sl]
                    wsum[:, lo - b0 : hi - b0] = 1.0
                else:
                    acc[:, :, lo - b0 : hi - b0] += o[:, :, sl] * weights[:, sl]
                    wsum[:, lo - b0 : hi - b0] += weights[:, sl]
            bar.update(len(group))
        valid_rows |= valid[:, b0 - x0 : b1 - x0]
        last = r == len(ys) - 1
        done = min(T, src.height - y) if last else ys[r + 1] - y  # rows no later window touches
        block = np.clip(acc[:, :done] / np.maximum(wsum[:done], 1e-12) + 0.5, 0, 255).astype(np.uint8)
        keep = valid_rows[:done]
        block[:, ~keep] = 0
        win = Window(b0, y, bw, done)
        dst.write(block, window=win)
        dst.write_mask((keep * 255).astype(np.uint8), window=win)
        # move the accumulator down: rows [done, T) carry over to the next window row
        acc = np.concatenate([acc[:, done:], np.zeros((3, done, bw), np.float32)], axis=1)
        wsum = np.concatenate([wsum[done:], np.zeros((done, bw), np.float32)], axis=0)
        valid_rows = np.concatenate([valid_rows[done:], np.zeros((done, bw), bool)], axis=0)
