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
blended outputs mapped back with the target's ``low``/``high`` (:mod:`p2ptools.prep.bands`).

BatchNorm runs in eval mode (running statistics), so every tile is normalised alike: train-mode
batch statistics of single tiles would shift colours tile by tile and show as seams.

Memory does not grow with the scene: the scene is cut into vertical bands at most ``band_width``
pixels wide (tiles crossing a band border are computed for both bands), each band is read one
tile row at a time, and an accumulator one tile high moves down it, writing finished rows to an
uncompressed temporary GeoTIFF. The result is then copied to the final compressed, tiled GeoTIFF
(with overviews on request) and renamed into place. Nodata and transparent input pixels are written
as a dataset mask, so they stay nodata in the output.

This module holds the loop (windows → engine → blended rows); :mod:`p2ptools.inference.scene_plan`
the data-contract checks and the plan, :mod:`p2ptools.inference.scene_io` the raster reads and writes
and the output file's life, :mod:`p2ptools.inference.engine` the generator (loaded once per process)
and what runs it.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning

from p2ptools.config import BLENDS
from p2ptools.contract import from_checkpoint
from p2ptools.errors import ConfigError, InputError
from p2ptools.inference.engine import EngineRequest, make_engine, prepared_generator
from p2ptools.inference.options import PredictOptions
from p2ptools.inference.scene_io import (
    check_raster_output,
    finish_output,
    open_output,
    read_window,
    temp_output,
    write_rows,
)
from p2ptools.inference.scene_plan import (
    PlanOptions,
    ScenePlan,
    describe_input,
    output_profile,
    plan_scene,
    scene_info,
)
from p2ptools.prep.raster import (
    GDAL_CACHE_BYTES,
    SceneInfo,
    is_georeferenced,
    open_raster,
)
from p2ptools.prep.sources import is_remote
from p2ptools.runtime import door
from p2ptools.runtime.device import select_device
from p2ptools.runtime.progress import Ticker, duration, report
from p2ptools.runtime.space import disk_full, is_disk_full

log = logging.getLogger(__name__)




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
    what: str = ""  # the input in words: "1-band photo", "label raster" … (:func:`describe_input`)

    @property
    def mpix_per_s(self) -> float:
        return self.width * self.height / 1e6 / self.seconds if self.seconds else math.nan


def predict_scene(run_or_ckpt: Path, scene: Path, out: Path, options: PredictOptions | None = None,
                  tags: dict[str, str] | None = None) -> MosaicReport:
    """Translate a whole raster (see the module docstring).

    The run's data contract (:mod:`p2ptools.contract`) decides what the raster must be and how it is
    read: a label raster for a label → photo model, a photo with the training photos' band count and
    dtype, stretched with the same percentiles, for a photo → label model. A model that writes
    labels gives a class raster (one band of the palette's values, the palette as colour table).

    Args:
        run_or_ckpt: run folder or checkpoint.
        scene: input GeoTIFF (or a remote path).
        out: output GeoTIFF path.
        options: the raster fields of :class:`PredictOptions` (overlap, blend, bands, palette, rgb,
            overviews, band_width, pad, window_lines) and the common ones (which, input_kind,
            batch_size, device, amp, engine, progress); None: the defaults.
        tags: extra GDAL metadata items written into the output.

    Raises:
        InputError: for unreadable input, or input that does not fit the run's data contract.
        ConfigError: for bad options (e.g. a label raster without a palette).
    """
    start = time.perf_counter()
    options = options or PredictOptions()
    dev = select_device(options.device)
    G, mcfg, meta = prepared_generator(run_or_ckpt, options.which, dev)
    contract = from_checkpoint(meta.get("dataset"))
    T = mcfg.image_size
    overlap = _checked_overlap(options, T)
    scene, out = (scene if is_remote(scene) else Path(scene)), Path(out)
    check_raster_output(scene, out)
    door.ensure_folder(out.parent)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES, GDAL_TIFF_INTERNAL_MASK=True), open_raster(scene) as src, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        if not is_georeferenced(src):
            log.warning("%s has no georeference (CRS and transform): the prediction is written on its pixel grid "
                        "without one", scene)
        plan = plan_scene(src, scene, contract, meta["train_config"].get("direction", "AtoB"), meta["path"], T,
                          PlanOptions(options.input_kind, options.palette, options.rgb, overlap, options.blend,
                                      T // 4 if options.pad is None else options.pad))
        info = scene_info(src, scene, plan, contract.photo, options.bands)
        what = describe_input(plan, info.bands, src.count, src.dtypes[0])
        run = make_engine(G, meta, EngineRequest(mcfg.in_channels, T, dev, options.amp,
                                                 channels_last=dev.type in ("cpu", "cuda")), options.engine)
        total = _render(_Scene(run, src, out, scene.name, info, plan, options), tags)
    result = MosaicReport(out, meta["path"], src.width, src.height, total, plan.kind, what=what)
    result.seconds = time.perf_counter() - start
    report("predicted %s (%d×%d %s, %d windows) in %s → %s", scene, src.width, src.height, result.what, total,
           duration(result.seconds), out)
    return result


def _checked_overlap(options: PredictOptions, T: int) -> int:
    """The overlap in pixels (default a quarter of the tile).

    Raises:
        ConfigError: for an unknown blend or an overlap outside ``[0, T)``.
    """
    overlap = T // 4 if options.overlap is None else options.overlap
    if options.blend not in BLENDS:
        raise ConfigError(f"blend must be one of {', '.join(BLENDS)}, got {options.blend!r}")
    if not 0 <= overlap < T:
        raise ConfigError(f"overlap must be in [0, {T}) for a {T}-px model, got {overlap}")
    return overlap


@dataclass
class _Scene:
    """One scene being translated: the engine, the open raster, the output, the plan and the options."""

    run: Any
    src: Any
    out: Path
    name: str
    info: SceneInfo
    plan: ScenePlan
    options: PredictOptions
    dst: Any = None
    bar: Any = None


def _vertical_bands(scene: _Scene) -> list[tuple[int, int, list[int]]]:
    """``(b0, b1, window columns)`` of each vertical band of the mirrored scene, at most ``band_width`` wide."""
    T, width = scene.plan.T, scene.src.width + 2 * scene.plan.pad
    step = scene.options.band_width
    return [(b0, min(b0 + step, width), [x for x in scene.plan.xs if x < min(b0 + step, width) and x + T > b0])
            for b0 in range(0, width, step)]


def _render(scene: _Scene, tags: dict[str, str] | None) -> int:
    """Translate every band into a temporary GeoTIFF, then finish it into ``scene.out``; returns the windows.

    Raises:
        DiskFullError: naming the output when its disk fills (never the scene's fault).
    """
    bands = _vertical_bands(scene)
    total = sum(len(scene.plan.ys) * len(xs) for _, _, xs in bands)
    out, opts = scene.out, scene.options
    tmp = temp_output(out)
    try:
        profile = output_profile(scene.src, scene.plan)
        with open_output(tmp, profile, scene.plan, tags) as scene.dst, \
                Ticker(total, f"predict {scene.name}", "windows",
                       steps=10 if opts.window_lines else 0, show_bar=opts.progress) as scene.bar:
            for b0, b1, xs in bands:  # vertical bands of the (mirrored) scene, each top to bottom
                _predict_band(scene, xs, b0, b1)
        finish_output(tmp, out, scene.src, scene.plan, profile, opts.overviews)
    except Exception as exc:
        if is_disk_full(exc):  # the output's disk, never the scene's fault
            raise disk_full(out, None) from None
        raise
    finally:
        door.remove(tmp)
        for extra in out.parent.glob(f".{out.name}.*.part.tif*"):
            door.remove(extra)
    return total


def _predict_band(scene: _Scene, xs: list[int], b0: int, b1: int) -> None:
    """Accumulate and write one vertical band ``[b0, b1)`` (padded coordinates) of the scene, top to bottom.

    Rows and columns are in the coordinates of the scene mirrored by ``plan.pad`` pixels on every
    side; only the scene itself is written.
    """
    run, src, info, plan, batch_size = scene.run, scene.src, scene.info, scene.plan, scene.options.batch_size
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
            net, valid = read_window(src, info, plan, y, x0, span)
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
            scene.bar.update(len(group))
        valid_rows |= valid[:, b0 - x0 : b1 - x0]
        last = r == len(ys) - 1
        done = min(T, height_p - y) if last else ys[r + 1] - y  # rows no later window touches
        write_rows(scene.dst, plan, acc[:, :done] / np.maximum(wsum[:done], 1e-12), valid_rows[:done], y, b0,
                    src.height, src.width)
        # move the accumulator down: rows [done, T) carry over to the next window row
        acc = np.concatenate([acc[:, done:], np.zeros((C, done, bw), np.float32)], axis=1)
        wsum = np.concatenate([wsum[done:], np.zeros((done, bw), np.float32)], axis=0)
        valid_rows = np.concatenate([valid_rows[done:], np.zeros((done, bw), bool)], axis=0)
