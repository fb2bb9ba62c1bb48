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

import contextlib
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
from p2ptools.inference.options import DEFAULT_OVERLAP, PredictOptions
from p2ptools.inference.pipeline import Consumer, ahead
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
    """The overlap in pixels (default :data:`~p2ptools.inference.options.DEFAULT_OVERLAP` of the tile, chosen by
    the measured seam error: see there).

    Raises:
        ConfigError: for an unknown blend or an overlap outside ``[0, T)``.
    """
    overlap = round(T * DEFAULT_OVERLAP) if options.overlap is None else options.overlap
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
            _predict_bands(scene, bands)
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


def _predict_bands(scene: _Scene, bands: list[tuple[int, int, list[int]]]) -> None:
    """Translate every band ``(b0, b1, xs)``: windows read ahead on a reader thread, run in batches of
    ``--batch-size`` that span rows and bands, blended and written on a writer thread.

    The network (ONNX Runtime and torch release the GIL) runs on this thread while the reader reads
    and mirrors the next windows and stacks them into batches, and the writer accumulates the weighted
    outputs and writes finished rows. Each queue holds at most :data:`QUEUE_BATCHES` batches, and the
    writer's accumulator is one window high and one band wide, so memory stays bounded whatever the
    scene. The writer sees the windows in the order of :func:`_serial_bands` (band by band, row by row,
    left to right) and adds them the same way, so the raster is the same, bit for bit.
    """
    stop = threading.Event()
    batches = ahead(_batches(scene, bands), QUEUE_BATCHES, stop, "p2ptools-scene-reader")
    with contextlib.closing(batches), Consumer(_Blender(scene, bands), QUEUE_BATCHES, stop,
                                               "p2ptools-scene-writer") as writer:
        for items, batch in batches:
            writer.put((items, scene.run(batch)))  # (N, C, T, T) in [-1, 1], by the chosen engine
            scene.bar.update(len(items))


#: batches queued between the reader, the network and the writer (each way)
QUEUE_BATCHES = 2


@dataclass
class _Row:
    """One row of windows of one band, as the reader read it: where it is, and its validity."""

    band: int
    r: int  # the row's index in ``plan.ys``
    valid: np.ndarray  # (T, b1 - b0): input pixels that are not nodata


def _rows(scene: _Scene, bands: list[tuple[int, int, list[int]]]) -> Iterator[tuple[_Row, int, np.ndarray]]:
    """``(row, x, window)`` of every window, band by band, top to bottom, left to right; ``window`` is
    ``(T, T, C)`` float32 in the network's range.

    Raises:
        InputError: for a window that cannot be read.
    """
    src, info, plan = scene.src, scene.info, scene.plan
    T = plan.T
    for band, (b0, b1, xs) in enumerate(bands):
        x0 = xs[0]
        span = xs[-1] + T - x0  # columns read for this band's windows
        for r, y in enumerate(plan.ys):
            try:
                net, valid = read_window(src, info, plan, y, x0, span)
            except rasterio.errors.RasterioError as exc:
                raise InputError(f"{info.pair.image}: cannot read window at row {y - plan.pad}: {exc}") from exc
            row = _Row(band, r, valid[:, b0 - x0 : b1 - x0])
            for x in xs:
                yield row, x, net[:, x - x0 : x - x0 + T]


def _batches(scene: _Scene, bands: list[tuple[int, int, list[int]]]
             ) -> Iterator[tuple[list[tuple[_Row, int]], torch.Tensor]]:
    """``(items, batch)``: ``--batch-size`` windows at a time across rows and bands, ``(N, C, T, T)``, in
    channels-last memory where the engine runs so (numpy stacks them: one thread, no copy left for the
    engine to make)."""
    size = scene.options.batch_size
    items: list[tuple[_Row, int]] = []
    windows: list[np.ndarray] = []
    for row, x, window in _rows(scene, bands):
        items.append((row, x))
        windows.append(window)
        if len(items) == size:
            yield items, _stacked(windows, scene.run)
            items, windows = [], []
    if items:
        yield items, _stacked(windows, scene.run)


def _stacked(windows: list[np.ndarray], run: Any) -> torch.Tensor:
    """``(T, T, C)`` windows as one ``(N, C, T, T)`` batch: channels-last memory for an engine that runs so."""
    if getattr(run, "channels_last", False):
        batch = torch.from_numpy(np.stack(windows)).permute(0, 3, 1, 2)
    else:
        batch = torch.from_numpy(np.stack([w.transpose(2, 0, 1) for w in windows]))
    if getattr(getattr(run, "dev", None), "type", None) == "cuda":
        batch = batch.pin_memory()  # on the reader thread: the engine's copy to the GPU need not wait
    return batch


class _Blender:
    """What the writer thread does with each ``(items, outputs)`` batch: add the outputs to the band's
    :class:`_Strip`, which writes its rows as they are finished."""

    def __init__(self, scene: _Scene, bands: list[tuple[int, int, list[int]]]) -> None:
        self.scene, self.bands = scene, bands
        self.strip: _Strip | None = None

    def __call__(self, batch: tuple[list[tuple[_Row, int]], torch.Tensor]) -> None:
        items, outs = batch
        for (row, x), o in zip(items, _to_blend(outs), strict=True):
            if self.strip is None or self.strip.band != row.band:
                self.strip = _Strip(self.scene, row.band, self.bands[row.band])
            self.strip.add(row, x, o)


def _to_blend(outs: torch.Tensor) -> Any:
    """A batch of outputs clamped to [-1, 1], where they are blended: a device tensor on a GPU, numpy on the CPU."""
    if outs.device.type != "cpu":
        return _on_device(outs)
    return np.clip(outs.numpy(), -1, 1)


def _on_device(outs: torch.Tensor) -> torch.Tensor:
    """Outputs clamped where they are, for the torch accumulator; a new tensor (the engine's are inference
    tensors, which may not be changed in place outside inference mode)."""
    return outs.float().clamp(-1, 1)


@dataclass
class _Strip:
    """The accumulator of one band: weighted outputs, weights and validity, one window high, moving down
    the band as rows are finished. numpy on the CPU; torch on the outputs' device on a GPU (the weights
    copied there once), finished rows copied back."""

    scene: _Scene
    band: int
    where: tuple[int, int, list[int]]  # (b0, b1, xs)
    acc: Any = None
    wsum: Any = None
    valid: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    done: int = 0  # windows of the current row added

    def add(self, row: _Row, x: int, o: Any) -> None:
        """Add one window's output ``(C, T, T)`` at padded column ``x`` of row ``row``; write the row's
        finished pixels once its last window is in."""
        plan, (b0, b1, xs) = self.scene.plan, self.where
        T = plan.T
        if self.acc is None:
            self._start(o, T, b1 - b0)
        lo, hi = max(x, b0), min(x + T, b1)  # the part of this window inside the band
        sl = slice(lo - x, hi - x)
        if plan.blend == "none":
            self.acc[:, :, lo - b0 : hi - b0] = o[:, :, sl]
            self.wsum[:, lo - b0 : hi - b0] = 1.0
        else:
            self.acc[:, :, lo - b0 : hi - b0] += o[:, :, sl] * self.weights[:, sl]
            self.wsum[:, lo - b0 : hi - b0] += self.weights[:, sl]
        self.done += 1
        if self.done == len(xs):
            self._finish_row(row)

    def _start(self, o: Any, T: int, bw: int) -> None:
        C, weights = self.scene.plan.channels, self.scene.plan.weights
        if isinstance(o, np.ndarray):
            self.zeros: Callable[..., Any] = lambda *shape: np.zeros(shape, np.float32)
            self.cat: Callable[..., Any] = np.concatenate
            self.weights = weights
        else:
            self.zeros = lambda *shape: torch.zeros(shape, dtype=torch.float32, device=o.device)
            self.cat = lambda parts, axis: torch.cat(parts, dim=axis)
            self.weights = torch.from_numpy(weights).to(o.device)
        self.acc, self.wsum, self.valid = self.zeros(C, T, bw), self.zeros(T, bw), np.zeros((T, bw), bool)

    def _finish_row(self, row: _Row) -> None:
        """Write the rows no later window touches, and move the accumulator down past them."""
        plan, src, (b0, _, _) = self.scene.plan, self.scene.src, self.where
        T, ys, r = plan.T, plan.ys, row.r
        self.valid |= row.valid
        last = r == len(ys) - 1
        done = min(T, src.height + 2 * plan.pad - ys[r]) if last else ys[r + 1] - ys[r]
        if isinstance(self.acc, np.ndarray):
            colors = self.acc[:, :done] / np.maximum(self.wsum[:done], 1e-12)
        else:
            colors = (self.acc[:, :done] / self.wsum[:done].clamp(min=1e-12)).cpu().numpy()
        write_rows(self.scene.dst, plan, colors, self.valid[:done], ys[r], b0, src.height, src.width)
        C, bw = self.acc.shape[0], self.acc.shape[2]
        self.acc = self.cat([self.acc[:, done:], self.zeros(C, done, bw)], 1)
        self.wsum = self.cat([self.wsum[done:], self.zeros(done, bw)], 0)
        self.valid = np.concatenate([self.valid[done:], np.zeros((done, bw), bool)], axis=0)
        self.done = 0


def _serial_bands(scene: _Scene, bands: list[tuple[int, int, list[int]]]) -> None:
    """The reference loop (p2ptools ≤ 0.x): one band at a time, one row at a time, batches within a row,
    no threads. Kept for the tests (the pipelined :func:`_predict_bands` must give the same raster)
    and the benchmark's baseline (``benchmarks/predict_scene.py --pipeline``)."""
    for b0, b1, xs in bands:
        _serial_band(scene, xs, b0, b1)


def _serial_band(scene: _Scene, xs: list[int], b0: int, b1: int) -> None:
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
