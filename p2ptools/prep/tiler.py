"""``p2ptools tile``: GeoTIFF scenes + label masks → AB tile pairs, a manifest and dataset.json.

The work is cut into chunks (one tile row of a scene, at most ``CHUNK_TILES`` tiles wide) that
are read with one windowed read each, so memory depends on the tile size, not on the scene, and
several processes can work on one large scene at once. A scene is recorded as finished (its
manifest rows under ``OUT/.p2ptools/scenes/``) only when all its chunks are done; a rerun skips
finished scenes and tiles already on disk. A scene that fails is reported and its tiles removed,
while the other scenes go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
from rasterio.errors import RasterioError

from p2ptools.config import TileConfig
from p2ptools.contract import DataContract, PhotoSpec
from p2ptools.errors import ConfigError, DiskFullError, P2PError, PaletteError, RasterReadError, SceneFailures
from p2ptools.prep.labels import Palette, load_palette, palette_from_dict, unknown_values
from p2ptools.prep.raster import (
    GDAL_CACHE_BYTES,
    SceneInfo,
    ScenePair,
    describe_error,
    discover_pairs,
    inspect_scene,
    open_raster,
    read_labels,
    read_photo,
    read_valid,
    window_geo,
)
from p2ptools.prep.sources import gdal_http_env
from p2ptools.prep.splits import (
    BUFFER,
    SPLITS,
    BlockGrid,
    assign_blocks,
    assign_splits,
    block_tile_split,
    empty_splits,
    official_tile_split,
    read_split_lists,
)
from p2ptools.prep.tiling import TileWindow, compose_ab, decide_tile, keep_fraction_draw, tile_grid
from p2ptools.prep.vector import VectorMask, VectorSpec, is_vector, vector_spec
from p2ptools.runtime.output import (
    MANIFEST_FILE,
    STATE_DIR,
    atomic_write_text,
    csv_text,
    inputs_digest,
    prepare_output,
    read_csv_rows,
    read_dataset_json,
    record_plan,
    remove_inside,
    write_dataset_json,
    write_geotiff,
    write_image,
)
from p2ptools.runtime.parallel import imap_unordered
from p2ptools.runtime.progress import bar as progress_bar
from p2ptools.runtime.progress import report
from p2ptools.runtime.space import disk_full, is_disk_full

log = logging.getLogger(__name__)

#: The tile size the official LandCover.ai split lists are made of.
OFFICIAL_TILE = 512

#: Tiles per chunk (one windowed read): bounds memory to ``size² × CHUNK_TILES`` pixels.
CHUNK_TILES = 16
DEFAULT_PALETTES = {"inria": "inria", "landcover": "landcover", "generic": "inria"}
KEPT_REASONS = ("kept", "kept_empty")


@dataclass
class TileReport:
    """What a tiling run did.

    Args:
        out: the output folder.
        layout: the input layout used.
        scenes: names of the scenes finished (now or in an earlier run).
        failures: (file, reason) for each scene that failed.
        kept: kept tiles per split.
        dropped: dropped tiles per reason.
        written: tiles written in this run.
        existing: kept tiles found already written (resumed).
        resumed: whether an earlier run was continued.
    """

    out: Path
    layout: str
    scenes: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    written: int = 0
    existing: int = 0
    resumed: bool = False

    def summary(self) -> str:
        """A few human-readable lines."""
        kept = ", ".join(f"{s} {self.kept.get(s, 0)}" for s in SPLITS)
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) or "none"
        lines = [
            f"{sum(self.kept.values())} pairs in {self.out} ({kept}) "
            f"from {len(self.scenes)} scene(s), layout {self.layout}",
            f"dropped tiles: {dropped}; written now: {self.written}, already there: {self.existing}",
            f"manifest: {self.out / MANIFEST_FILE}",
        ]
        return "\n".join(lines)


class NoPairs(SceneFailures):
    """A tiling kept no tile at all (the summary says how many were dropped, and why)."""

    def __init__(self, message: str, summary: str) -> None:
        P2PError.__init__(self, message)
        self.failures: list[tuple[str, str]] = []
        self.summary = summary


@dataclass(frozen=True)
class ChunkTask:
    """One windowed read's worth of tiles of one scene (picklable for worker processes)."""

    info: SceneInfo
    tiles: tuple[TileWindow, ...]
    splits: tuple[str | None, ...]
    palette: dict[str, Any]
    out: str
    size: int
    min_foreground: float
    keep_empty: float
    max_nodata: float
    label_is_a: bool
    fmt: str
    jpeg_quality: int
    seed: int
    vector: VectorSpec | None = None
    tif_bands: tuple[int, ...] | None = None  # photo bands of GeoTIFF tiles (None: all but alpha)
    target_info: SceneInfo | None = None  # photo → photo pairs: the target, described on the photo's grid


@dataclass
class ChunkResult:
    """Manifest rows of a chunk, or the error that stopped it."""

    scene: str
    tiles: int
    rows: list[dict[str, Any]]
    written: int = 0
    existing: int = 0
    error: str | None = None


def _dataset_stretch(cfg: TileConfig, infos: dict[str, SceneInfo], targets: dict[str, SceneInfo],
                     done_infos: dict[str, SceneInfo], done_targets: dict[str, SceneInfo],
                     earlier: dict[str, Any]) -> dict[str, Any]:
    """``--stretch-scope dataset``: one stretch for all photos (and one for all target photos),
    computed from every readable scene found (those an earlier run tiled included, so an
    interrupted run resumes with the same stretch), or taken from ``earlier`` (the stretches the
    earlier run's contract holds). ``infos`` and ``targets`` (the scenes to tile) are updated in place.

    Returns:
        the stretches (``photo``, ``target``: per band ``[low, high]``) for the contract.
    """
    from p2ptools.prep.raster import dataset_stretch

    stretches: dict[str, Any] = {}
    for key, group, done in (("photo", infos, done_infos), ("target", targets, done_targets)):
        if not group and not done:
            continue
        stretch = tuple(tuple(s) for s in earlier[key]) if earlier.get(key) else \
            dataset_stretch([*group.values(), *done.values()], cfg.stretch)
        if stretch is None:
            continue
        stretches[key] = [list(s) for s in stretch]
        log.info("dataset stretch of the %ss (percentiles %s): %s", key, list(cfg.stretch), stretches[key])
        for name, info in group.items():
            if info.stretch is not None:
                group[name] = dataclasses.replace(info, stretch=stretch)  # type: ignore[arg-type]
    return stretches


def _contract(cfg: TileConfig, meta: dict[str, Any], palette: Palette, infos: dict[str, SceneInfo],
              before: dict[str, Any] | None, done: list[ScenePair],
              dataset_stretch: dict[str, Any] | None = None) -> DataContract:
    """The dataset's data contract: halves, size, palette, and how each scene's photo became 8-bit RGB
    (scenes ``done`` by an earlier run keep their record, or are inspected again when it was lost;
    ``dataset_stretch``: the stretches of ``--stretch-scope dataset``)."""
    scenes = dict((before or {}).get("scenes") or {})
    for pair in done:
        if pair.name not in scenes and pair.name not in infos:
            with contextlib.suppress(P2PError):
                info = inspect_scene(pair, cfg.bands, cfg.stretch,
                                     vector_spec(palette, cfg.label_field, cfg.all_touched), palette.background)
                if dataset_stretch and info.stretch is not None:
                    info = dataclasses.replace(info, stretch=tuple(tuple(s) for s in dataset_stretch["photo"]))
                infos = {**infos, pair.name: info}
    for name, info in infos.items():
        scenes[name] = {"bands": list(info.bands), "dtype": info.photo_dtype,
                        "stretch": [list(s) for s in info.stretch] if info.stretch else None}
    channels = {len(s["bands"]) for s in scenes.values()}
    photo = PhotoSpec(bands=tuple(cfg.bands) if cfg.bands else None,
                      channels=channels.pop() if len(channels) == 1 else 0,  # 0: mixed, not checked
                      dtypes=tuple(sorted({s["dtype"] for s in scenes.values()})),
                      stretch=(float(cfg.stretch[0]), float(cfg.stretch[1])),
                      stretch_scope="dataset" if cfg.stretch_scope == "dataset" else "per scene",
                      dataset_stretch=dataset_stretch or None)
    labels = "label" in (meta["A"], meta["B"])  # photo → photo: no label palette
    return DataContract(kind="tiles", a=meta["A"], b=meta["B"], size=cfg.size,
                        palette=palette.to_dict() if labels else None, photo=photo, scenes=dict(sorted(scenes.items())))


def _tif_record(out: Path, rows: list[dict[str, str]], roles: tuple[str, str], infos: dict[str, SceneInfo],
                before: dict[str, Any] | None) -> dict[str, Any] | None:
    """The GeoTIFF part of the contract, per half: a label's dtype, or a photo's dtype, bands, nodata
    and the per-band range that training maps to [-1, 1] (from up to 64 kept tiles, training first)."""
    from p2ptools.prep.bands import NORM_PERCENTILES, photo_statistics

    kept = [r for r in rows if r["kept"] == "True"]
    kept.sort(key=lambda r: r["split"] != "train")
    if not kept:
        return before
    record: dict[str, Any] = {"percentiles": list(NORM_PERCENTILES)}
    for half, role in zip(("A", "B"), roles, strict=True):
        files = [out / r["file"].replace("/A/", f"/{half}/") for r in kept]
        sample = files[:: max(1, len(files) // 64)][:64]
        with open_raster(sample[0]) as ds:
            dtype, nodata, bands = ds.dtypes[0], ds.nodata, ds.count
        if role == "label":
            record[half] = {"role": "label", "dtype": dtype}
        else:
            low, high = photo_statistics(sample, dtype, nodata)
            record[half] = {"role": "photo", "dtype": dtype, "bands": bands, "nodata": nodata, "low": low,
                            "high": high, "tiles_sampled": len(sample)}
    return record


def resolve_palette(spec: str, layout: str) -> Palette:
    """The palette named by ``spec``, or the layout's default for ``auto``."""
    return load_palette(DEFAULT_PALETTES[layout] if spec == "auto" else spec)


def tile_path(out: Path, split: str, scene: str, tile: TileWindow, fmt: str) -> Path:
    """``OUT/<split>/<scene>_<row>_<col>.<ext>`` (for ``tif``: the A tile, ``OUT/<split>/A/…``)."""
    return tile_paths(out, split, scene, tile, fmt)[0]


def tile_paths(out: Path, split: str, scene: str, tile: TileWindow, fmt: str) -> list[Path]:
    """Every file of a tile pair: the A|B image, or the A and B GeoTIFFs for ``tif``."""
    name = f"{scene}_{tile.row}_{tile.col}.{fmt}"
    return [out / split / "A" / name, out / split / "B" / name] if fmt == "tif" else [out / split / name]


def class_counts(labels: np.ndarray, values: tuple[int, ...] = ()) -> dict[int, int]:
    """Pixel count of each value in a label array.

    With the palette's ``values`` (a few classes), each is counted with one vectorised comparison,
    several times faster than a histogram; only when other values are present (a palette error)
    is the full histogram taken to name them.
    """
    if values and len(values) <= 8:
        counts = {int(v): int(np.count_nonzero(labels == v)) for v in values}
        if sum(counts.values()) == labels.size:
            return {v: c for v, c in counts.items() if c}
    if labels.dtype == np.uint8:
        counts = np.bincount(labels.ravel(), minlength=256)
        return {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
    values, counts = np.unique(labels, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def _chunks(tiles: list[TileWindow]) -> Iterator[list[TileWindow]]:
    """The tiles of each tile row in equal runs of at most ``CHUNK_TILES`` (19 → 10 + 9, not 16 + 3)."""
    rows: dict[int, list[TileWindow]] = {}
    for t in tiles:
        rows.setdefault(t.row, []).append(t)
    for row in rows.values():
        n = -(-len(row) // CHUNK_TILES)  # chunks in this row
        bounds = [round(i * len(row) / n) for i in range(n + 1)]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            yield row[lo:hi]


class _OpenDatasets:
    """Datasets this process keeps open across the chunks of a scene (at most ``limit``)."""

    def __init__(self, limit: int = 4) -> None:
        self.limit = limit
        self._open: OrderedDict[Path, Any] = OrderedDict()

    def get(self, path: Path) -> rasterio.io.DatasetReader:
        return self._keep(path, lambda: open_raster(path))

    def get_vector(self, info: SceneInfo, spec: VectorSpec | None, background: int) -> VectorMask:
        """The vector labels of a scene, read and reprojected once per process."""
        assert info.pair.mask is not None and spec is not None
        return self._keep(info.pair.mask, lambda: VectorMask(info.pair.mask, spec, info.crs, info.transform,
                                                             info.height, info.width, background, info.mask_dtype))

    def get_aligned(self, info: SceneInfo) -> Any:
        """The target photo of a photo → photo scene, resampled onto the photo's grid (once per process)."""
        from p2ptools.prep.targets import AlignedTarget

        assert info.pair.mask is not None
        return self._keep(Path(f"{info.pair.mask}#aligned"), lambda: AlignedTarget(info.pair.mask, info))

    def _keep(self, path: Path, opener: Callable[[], Any]) -> Any:
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        while len(self._open) >= self.limit:
            self._open.popitem(last=False)[1].close()
        ds = self._open[path] = opener()
        return ds

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()


_DATASETS = _OpenDatasets()


def process_chunk(task: ChunkTask) -> ChunkResult:
    """Read one chunk of a scene, filter its tiles, write the kept AB pairs.

    Never raises for a bad scene: the error comes back in the result, naming the file.
    """
    info = task.info
    try:
        palette = palette_from_dict(task.palette)
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
            if task.target_info is not None:
                return _process_target_chunk(task, info)
            return _process_chunk(task, info, palette)
    except DiskFullError:
        raise  # the output's disk, not the scene: the run stops, finished tiles stay
    except P2PError as exc:
        return ChunkResult(info.pair.name, len(task.tiles), [], error=str(exc))
    except (RasterioError, OSError, ValueError) as exc:
        if is_disk_full(exc):
            raise disk_full(Path(task.out) / "tiles", None) from None
        error = f"{info.pair.image}: cannot read: {describe_error(exc)}"
        return ChunkResult(info.pair.name, len(task.tiles), [], error=error)


def _read(what: Path, read: Callable[[], np.ndarray], y: int, x: int) -> np.ndarray:
    try:
        return read()
    except RasterioError as exc:
        raise RasterReadError(f"{what}: cannot read window at row {y}, col {x}: {describe_error(exc)}") from exc


def _process_chunk(task: ChunkTask, info: SceneInfo, palette: Palette) -> ChunkResult:
    """Mask first, then the photo only where a kept tile still has to be written."""
    size, out = task.size, Path(task.out)
    assert info.pair.mask is not None
    img = _DATASETS.get(info.pair.image)
    msk = _DATASETS.get_vector(info, task.vector, palette.background) if is_vector(info.pair.mask) else \
        _DATASETS.get(info.pair.mask)
    y, x0 = task.tiles[0].y, task.tiles[0].x
    width = task.tiles[-1].x + size - x0
    labels = _read(info.pair.mask, lambda: read_labels(msk, info, y, x0, size, width, palette.background), y, x0)
    valid = _read(info.pair.image, lambda: read_valid(img, info, y, x0, size, width), y, x0) \
        if info.has_nodata or width > info.width - x0 or y + size > info.height else None  # None: all valid
    offsets = [t.x - x0 for t in task.tiles]
    values = tuple(palette.values)
    counts = [class_counts(labels[:, dx : dx + size], values) for dx in offsets]
    unknown = unknown_values(sorted(set().union(*counts)), palette)
    if unknown:  # checked before anything of the chunk is written
        raise PaletteError(
            f"{info.pair.mask}: values outside palette {palette.name!r} "
            f"({', '.join(map(str, palette.values))}): {', '.join(map(str, unknown))}"
        )
    result = ChunkResult(info.pair.name, len(task.tiles), [])
    to_write: list[tuple[Path, int, TileWindow]] = []
    area = float(size * size)
    for tile, split, dx, t_counts in zip(task.tiles, task.splits, offsets, counts, strict=True):
        fg = 1.0 - t_counts.get(palette.background, 0) / area
        nodata = 0.0 if valid is None else 1.0 - float(valid[:, dx : dx + size].mean())
        split, reason = _decide(task, f"{info.pair.name}_{tile.row}_{tile.col}", split, fg, nodata)
        row = _tile_row(info, tile, split, size, fg, nodata)
        for c in palette.classes:
            row[f"frac_{c.name}"] = round(t_counts.get(c.value, 0) / area, 6)
        path = _finish_row(row, reason, info, out, split, tile, task.fmt, result)
        if path is not None:
            to_write.append((path, dx, tile))
    if to_write and task.fmt == "tif":
        for path, dx, tile in to_write:
            write_geotiff_pair(path, img, task, labels[:, dx : dx + size], tile, palette)
            result.written += 1
    elif to_write:  # read the photo over the span of the tiles to write only
        first, last = to_write[0][1], to_write[-1][1] + size
        # everything in OpenCV's BGR order from here, so encoding needs no colour conversion
        bgr = _read(info.pair.image, lambda: read_photo(img, info, y, x0 + first, size, last - first, bgr=True),
                    y, x0 + first)
        if valid is not None:
            bgr[~valid[:, first:last]] = 0  # nodata and padding are black
        lut = np.zeros((max(palette.values) + 1, 3), dtype=np.uint8)
        for c in palette.classes:
            lut[c.value] = c.color[::-1]
        for path, dx, _ in to_write:
            label_bgr = colorize_lut(labels[:, dx : dx + size], lut)
            photo = bgr[:, dx - first : dx - first + size]
            ab = compose_ab(label_bgr, photo) if task.label_is_a else compose_ab(photo, label_bgr)
            write_image(path, ab, task.fmt, task.jpeg_quality, bgr=True)
            result.written += 1
    return result


def _tile_row(info: SceneInfo, tile: TileWindow, split: str | None, size: int, fg: float, nodata: float
              ) -> dict[str, Any]:
    """The manifest columns every tile has, up to the class fractions."""
    transform, bounds = window_geo(info, tile.y, tile.x, size)
    return {
        "tile_id": f"{info.pair.name}_{tile.row}_{tile.col}", "split": split or "", "scene": info.pair.name,
        "row": tile.row, "col": tile.col, "x": tile.x, "y": tile.y, "width": size, "height": size, "crs": info.crs,
        "transform": " ".join(repr(float(v)) for v in transform), "left": bounds[0], "bottom": bounds[1],
        "right": bounds[2], "top": bounds[3], "fg_fraction": round(fg, 6), "nodata_fraction": round(nodata, 6),
    }


def _finish_row(row: dict[str, Any], reason: str, info: SceneInfo, out: Path, split: str | None, tile: TileWindow,
                fmt: str, result: ChunkResult) -> Path | None:
    """Set the row's decision and file; the path still to write (None: dropped or already there)."""
    row["kept"] = reason in KEPT_REASONS
    row["reason"] = reason
    row["file"] = ""
    row["source"] = str(info.pair.image)
    result.rows.append(row)
    if not row["kept"]:
        return None
    assert split is not None
    path = tile_path(out, split, info.pair.name, tile, fmt)
    row["file"] = path.relative_to(out).as_posix()
    if path.exists():
        result.existing += 1
        return None
    return path


def _decide(task: ChunkTask, name: str, split: str | None, fg: float, nodata: float) -> tuple[str | None, str]:
    """``(split, reason)`` of a tile: unlisted, in a split buffer, or :func:`decide_tile`."""
    if split is None:
        return None, "unlisted"
    if split == BUFFER:
        return None, "split_buffer"
    draw = keep_fraction_draw(task.seed, name)
    return split, decide_tile(fg, nodata, task.min_foreground, task.keep_empty, task.max_nodata, draw)


def _process_target_chunk(task: ChunkTask, info: SceneInfo) -> ChunkResult:
    """A chunk of photo → photo pairs (``--targets``): no label filter, nodata of either photo counts."""
    from p2ptools.prep.targets import read_native, read_pair_window

    tinfo = task.target_info
    assert tinfo is not None and info.pair.mask is not None
    size, out = task.size, Path(task.out)
    img = _DATASETS.get(info.pair.image)
    vrt = _DATASETS.get_aligned(info)
    y, x0 = task.tiles[0].y, task.tiles[0].x
    width = task.tiles[-1].x + size - x0
    a, b, valid = _read(info.pair.image, lambda: read_pair_window(img, vrt, info, tinfo, y, x0, size, width), y, x0)
    result = ChunkResult(info.pair.name, len(task.tiles), [])
    for tile, split in zip(task.tiles, task.splits, strict=True):
        dx = tile.x - x0
        nodata = 1.0 - float(valid[:, dx : dx + size].mean())
        split, reason = _decide(task, f"{info.pair.name}_{tile.row}_{tile.col}", split, 1.0, nodata)
        path = _finish_row(_tile_row(info, tile, split, size, 1.0, nodata), reason, info, out, split, tile,
                           task.fmt, result)
        if path is None:
            continue
        if task.fmt == "tif":
            for folder, ds in (("A", img), ("B", vrt)):
                data, chosen = read_native(ds, tile.y, tile.x, size, task.tif_bands if folder == "A" else None)
                write_tif_tile(path.parent.parent / folder / path.name, data, info, tile, size,
                               {"nodata": ds.nodata, "photometric": "RGB" if len(chosen) == 3 and
                                data.dtype == np.uint8 else None})
        else:
            ab = compose_ab(a[:, dx : dx + size], b[:, dx : dx + size])
            write_image(path, ab, task.fmt, task.jpeg_quality, bgr=True)
        result.written += 1
    return result


def write_tif_tile(final: Path, data: np.ndarray, info: SceneInfo, tile: TileWindow, size: int,
                   extra: dict[str, Any], colormap: dict[int, tuple[int, ...]] | None = None) -> None:
    """Write one georeferenced, deflate-compressed GeoTIFF tile atomically (temp file + rename)."""
    transform, _ = window_geo(info, tile.y, tile.x, size)
    profile = {"compress": "deflate", "tiled": True, "blockxsize": min(size, 256), "blockysize": min(size, 256),
               **({"crs": info.crs, "transform": rasterio.Affine(*transform)} if info.crs else {}),
               **({"predictor": 2 if np.issubdtype(data.dtype, np.integer) else 3} if colormap is None else {}),
               **{k: v for k, v in extra.items() if v is not None}}
    write_geotiff(final, data, profile, colormap)


def write_geotiff_pair(a_path: Path, img: rasterio.io.DatasetReader, task: ChunkTask, labels: np.ndarray,
                       tile: TileWindow, palette: Palette) -> None:
    """Write one tile as two georeferenced GeoTIFFs (A and B folders, atomically): the labels as class
    values with the palette as colour table, the photo in its own dtype and bands, nodata kept.

    Args:
        a_path: the tile's path in the split's ``A`` folder (its ``B`` twin has the same name).
        img: the scene's photo, open.
        task: the chunk the tile belongs to (its scene, tile size, label half and photo bands).
        labels: the tile's class values, ``(size, size)``.
        tile: the tile's window in the scene.
        palette: the label palette (the labels' colour table).
    """
    from p2ptools.prep.targets import read_native

    info, size = task.info, task.size
    photo, chosen = _read(info.pair.image, lambda: read_native(img, tile.y, tile.x, size, task.tif_bands),
                          tile.y, tile.x)
    label_dir, photo_dir = ("A", "B") if task.label_is_a else ("B", "A")
    split_dir = a_path.parent.parent
    colormap = {c.value: (*c.color, 255) for c in palette.classes} if labels.dtype in (np.uint8, np.uint16) else None
    name = a_path.name
    write_tif_tile(split_dir / label_dir / name, labels[None], info, tile, size, {"photometric": "palette"}, colormap)
    rgb = len(chosen) == 3 and photo.dtype == np.uint8
    write_tif_tile(split_dir / photo_dir / name, photo, info, tile, size,
                   {"nodata": img.nodata, "photometric": "RGB" if rgb else None})


def colorize_lut(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``(H, W)`` class values → ``(H, W, 3)`` colours of ``lut`` (rows by value): three OpenCV
    look-ups for 8-bit labels (3× faster than ``np.take``), ``np.take`` otherwise."""
    if labels.dtype == np.uint8:
        full = np.zeros((256, 3), np.uint8)
        full[: len(lut)] = lut[:256]
        return cv2.merge([cv2.LUT(labels, np.ascontiguousarray(full[:, k])) for k in range(3)])
    return np.take(lut, labels, axis=0)


def _scene_state(out: Path, scene: str) -> Path:
    return out / STATE_DIR / "scenes" / f"{scene}.csv"


def _remove_scene_tiles(out: Path, scene: str, tiles: list[TileWindow], fmt: str) -> None:
    for t in tiles:
        for split in SPLITS:
            for p in tile_paths(out, split, scene, t, fmt):
                remove_inside(out, p.relative_to(out), "scene record")


class _Splitter:
    """Which split each tile goes to: by scene, by block, or by official lists (LandCover.ai)."""

    def __init__(self, cfg: TileConfig, names: list[str], root: Path | None) -> None:
        self.cfg = cfg
        self.lists = read_split_lists(root) if root is not None else None
        self.scene_split: dict[str, str] = {}
        self.blocks: dict[tuple[str, int, int], str] = {}
        if self.lists is not None:
            self.source = f"official lists in {root}"
            if OFFICIAL_TILE % cfg.size or cfg.step != cfg.size:
                raise ConfigError(
                    f"{root}: official split lists name {OFFICIAL_TILE}-px tiles; --size {cfg.size} --stride "
                    f"{cfg.step} would cut tiles that straddle two official tiles (two splits): use a size that "
                    f"divides {OFFICIAL_TILE} (512, 256, 128 …) with --stride equal to it")
        elif cfg.split_by == "block":
            self.source = (f"random by block of {cfg.block} px {cfg.split}, buffer {cfg.buffer} px, seed {cfg.seed}")
        else:
            self.scene_split = assign_splits(names, cfg.split, cfg.seed)
            self.source = f"random by scene {cfg.split}, seed {cfg.seed}"
            empty = empty_splits(len(names), cfg.split)
            if empty:
                log.warning("%d scene(s) split by scene leave %s empty (every tile of a scene goes to one split): "
                            "use --split-by block to cut scenes into blocks of --block-size px, or more scenes",
                            len(names), " and ".join(empty))

    def add_scenes(self, shapes: dict[str, tuple[int, int]]) -> None:
        """Draw the blocks of the scenes to tile (block split only)."""
        if self.cfg.split_by == "block" and self.lists is None:
            self.blocks = assign_blocks(shapes, self.cfg.block, self.cfg.split, self.cfg.seed)
            drawn = Counter(self.blocks.values())
            empty = [s for s, f in zip(SPLITS, self.cfg.split, strict=True) if f > 0 and not drawn.get(s)]
            if empty:
                log.warning("%d block(s) of %d px leave %s empty: use a smaller --block-size", len(self.blocks),
                            self.cfg.block, " and ".join(empty))

    def __call__(self, info: SceneInfo, tiles: list[TileWindow]) -> tuple[str | None, ...]:
        name, size = info.pair.name, self.cfg.size
        if self.lists is not None:
            half = size // 2
            return tuple(official_tile_split(self.lists, name, t.y + half, t.x + half, info.height, info.width)
                         for t in tiles)
        if self.blocks:
            grid = BlockGrid(info.height, info.width, self.cfg.block)
            return tuple(block_tile_split(self.blocks, name, grid, t.y, t.x, size, self.cfg.buffer) for t in tiles)
        return tuple(self.scene_split.get(name) for _ in tiles)


def resolve_split_by(cfg: TileConfig, found: Any) -> TileConfig:
    """``--split-by auto``: by scene, except for a single scene that would leave splits empty: by
    blocks then — of ``--block-size``, or, unset, of half the scene's shorter side (at most 4
    tiles, at least one), so that one scene gives train, val and test."""
    if cfg.split_by != "auto":
        return cfg
    if found.root is not None and read_split_lists(found.root) is not None:
        return dataclasses.replace(cfg, split_by="scene")  # official lists decide
    if len(found.pairs) != 1 or not empty_splits(1, cfg.split):
        return dataclasses.replace(cfg, split_by="scene")
    block = cfg.block_size
    if block is None:
        sides = []
        for pair in found.pairs:
            with contextlib.suppress(P2PError, RasterioError, OSError), open_raster(pair.image) as ds:
                sides.append(min(ds.height, ds.width))
        block = max(cfg.size, min(4 * cfg.size, min(sides, default=4 * cfg.size) // 2))
    report("%d scene(s) cannot fill %s by scene: split by blocks of %d px (buffer %d px) instead "
           "(--split-by scene to keep scenes whole)", len(found.pairs), "/".join(SPLITS), block,
           cfg.size if cfg.block_buffer is None else cfg.block_buffer)
    return dataclasses.replace(cfg, split_by="block", block_size=block)


def tile_dataset(cfg: TileConfig, progress: bool = True) -> TileReport:
    """Tile every scene of a dataset into AB pairs (see the module docstring).

    Args:
        cfg: the validated options.
        progress: show a progress bar over tiles.

    Returns:
        The report; ``report.failures`` lists scenes that failed (the others were finished).

    Raises:
        P2PError: for problems that stop the whole run (bad layout, empty input, output folder
            holding another dataset, malformed palette or split lists).
    """
    for key, value in gdal_http_env(cfg.http_retries, cfg.http_timeout).items():
        os.environ.setdefault(key, value)  # remote scenes; inherited by the workers; the user's own settings win
    photo_pairs = cfg.targets is not None  # photo → photo: a second photo of each scene as the target
    found = discover_pairs(cfg.src, cfg.layout, cfg.images, cfg.targets if photo_pairs else cfg.masks,
                           cfg.mask_suffix)
    cfg = resolve_split_by(cfg, found)
    job = _start_output(cfg, found, resolve_palette(cfg.palette, found.layout), photo_pairs)
    scenes = _inspect_scenes(cfg, found, job)
    tasks = _plan_chunks(cfg, found, job, scenes)
    _run_chunks(cfg, tasks, job, scenes, progress)
    return _finish(cfg, found, job, scenes)


@dataclass
class _TileJob:
    """One tiling run's output side: the folder, its dataset.json, the report, the label rules."""

    out: Path
    meta: dict[str, Any]
    report: TileReport
    palette: Palette
    photo_pairs: bool
    label_is_a: bool
    before: dict[str, Any] | None  # the contract of an earlier run (resume)
    vspec: Any
    splitter: Any


@dataclass
class _Scenes:
    """What the inspection of the scenes found: the ones to tile now, and the ones done before."""

    infos: dict[str, SceneInfo] = field(default_factory=dict)
    targets: dict[str, SceneInfo] = field(default_factory=dict)
    grids: dict[str, list[TileWindow]] = field(default_factory=dict)
    done_before: set[str] = field(default_factory=set)
    done_infos: dict[str, SceneInfo] = field(default_factory=dict)  # for the dataset stretch
    done_targets: dict[str, SceneInfo] = field(default_factory=dict)
    earlier_stretch: dict[str, Any] = field(default_factory=dict)
    stretches: dict[str, Any] = field(default_factory=dict)


def _start_output(cfg: TileConfig, found: Any, palette: Palette, photo_pairs: bool) -> _TileJob:
    """Claim OUT (resume, refuse or --overwrite), write the first dataset.json, prepare the split."""
    out = Path(cfg.out)
    names = [p.name for p in found.pairs]
    params = {**cfg.output_params(), "inputs": inputs_digest(names)}
    resumed = prepare_output(out, "tiles", params, cfg.overwrite, inputs=[cfg.src, cfg.images, cfg.masks, cfg.targets],
                             input_names=names)
    label_is_a = cfg.direction == "label2photo" and not photo_pairs
    before = (read_dataset_json(out) or {}).get("contract") if resumed else None
    meta: dict[str, Any] = {
        "kind": "tiles", "params": params, "A": "label" if label_is_a else "photo",
        "B": "photo" if label_is_a or photo_pairs else "label",
        "palette": None if photo_pairs else palette.to_dict(), "complete": False,  # photo → photo: no labels
        "input_names": names, **({"contract": before} if before else {}),
    }
    write_dataset_json(out, meta)
    for m in found.orphan_masks:
        log.warning("%s: mask without a photo; ignored", m)
    report("tile: %d scene(s) of %s → %s (%d px, split by %s)", len(names), cfg.src or cfg.images, out, cfg.size,
           cfg.split_by)
    return _TileJob(out, meta, TileReport(out=out, layout=found.layout, resumed=resumed), palette, photo_pairs,
                    label_is_a, before, vector_spec(palette, cfg.label_field, cfg.all_touched),
                    _Splitter(cfg, names, found.root))


def _inspect_scenes(cfg: TileConfig, found: Any, job: _TileJob) -> _Scenes:
    """Open every scene not done before (done ones too when the dataset stretch must be recomputed);
    a scene that fails is reported and the others go on."""
    sc = _Scenes(earlier_stretch=((job.before or {}).get("photo") or {}).get("dataset_stretch") or {})
    for pair in found.pairs:
        done = _scene_state(job.out, pair.name).is_file()
        if done:
            job.report.scenes.append(pair.name)
            sc.done_before.add(pair.name)
            if cfg.stretch_scope != "dataset" or sc.earlier_stretch:  # inspected again only to recompute it
                continue
        try:
            if job.photo_pairs:
                from p2ptools.prep.targets import inspect_target_pair

                info, target = inspect_target_pair(pair, cfg.bands, cfg.stretch)
                (sc.done_targets if done else sc.targets)[pair.name] = target
            else:
                info = inspect_scene(pair, cfg.bands, cfg.stretch, job.vspec, job.palette.background)
        except P2PError as exc:
            if not done:
                job.report.failures.append((str(pair.image), str(exc)))
            continue
        if done:
            sc.done_infos[pair.name] = info
            continue
        sc.infos[pair.name] = info
        grid = tile_grid(info.height, info.width, cfg.size, cfg.step, cfg.edge)  # type: ignore[arg-type]
        sc.grids[pair.name] = grid
        if not grid:
            log.warning("%s: %d×%d is smaller than one %d tile; no tiles with --edge drop",
                        pair.image, info.width, info.height, cfg.size)
    return sc


def _plan_chunks(cfg: TileConfig, found: Any, job: _TileJob, sc: _Scenes) -> list[ChunkTask]:
    """The dataset stretch, the block draw, the work units (balanced chunks of tiles) and the
    recorded plan of the files they will write."""
    if cfg.stretch_scope == "dataset":
        sc.stretches = _dataset_stretch(cfg, sc.infos, sc.targets, sc.done_infos, sc.done_targets, sc.earlier_stretch)
    if cfg.split_by == "block":
        job.splitter.add_scenes(_scene_shapes(found.pairs, sc.infos))
    tasks = [ChunkTask(sc.infos[name], tuple(chunk), job.splitter(sc.infos[name], chunk), job.palette.to_dict(),
                       str(job.out), cfg.size, cfg.min_foreground, cfg.keep_empty, cfg.max_nodata, job.label_is_a,
                       cfg.format, cfg.jpeg_quality, cfg.seed, job.vspec, cfg.bands, sc.targets.get(name))
             for name, grid in sc.grids.items() for chunk in _chunks(grid)]
    record_plan(job.out, (p.relative_to(job.out).as_posix() for task in tasks
                          for t, split in zip(task.tiles, task.splits, strict=True) if split in SPLITS
                          for p in tile_paths(job.out, split, task.info.pair.name, t, cfg.format)))
    return tasks


def _run_chunks(cfg: TileConfig, tasks: list[ChunkTask], job: _TileJob, sc: _Scenes, progress: bool) -> None:
    """Run the chunks (in process, on workers or on Dask), recording each scene once all its chunks are in."""
    book = _SceneBook(job.out, cfg.format, job.report, sc.infos, sc.grids)
    bar = progress_bar(sum(len(t.tiles) for t in tasks), "tile", "tile", progress)
    try:
        for res in _run(tasks, cfg.workers, cfg.dask):
            bar.update(res.tiles)
            book.add(res)
    finally:
        bar.close()
    book.finish_empty()


def _finish(cfg: TileConfig, found: Any, job: _TileJob, sc: _Scenes) -> TileReport:
    """manifest.csv of every scene, the final dataset.json (counts, failures, data contract), the report.

    Raises:
        NoPairs: when nothing was kept, with the reasons.
    """
    out, rep, meta = job.out, job.report, job.meta
    header, rows = _assemble_manifest(out, [p.name for p in found.pairs])
    kept = Counter(r["split"] for r in rows if r["kept"] == "True")
    rep.existing += sum(1 for r in rows if r["kept"] == "True" and r["scene"] in sc.done_before)
    rep.kept = {s: kept.get(s, 0) for s in SPLITS}
    rep.dropped = dict(sorted(Counter(r["reason"] for r in rows if r["kept"] != "True").items()))
    atomic_write_text(out / MANIFEST_FILE, csv_text(rows, header))
    meta.update({
        "layout": found.layout, "split_source": job.splitter.source, "counts": rep.kept,
        "scenes": sorted(rep.scenes), "failed": [{"file": f, "reason": r} for f, r in rep.failures],
        "complete": not rep.failures,
        "contract": _contract(cfg, meta, job.palette, sc.infos, job.before,
                              [] if job.photo_pairs else [p for p in found.pairs if p.name in sc.done_before],
                              sc.stretches).to_dict(),
    })
    if cfg.format == "tif":
        meta["contract"]["tif"] = _tif_record(out, rows, (meta["A"], meta["B"]), sc.infos, meta["contract"].get("tif"))
    write_dataset_json(out, meta)
    rep.scenes.sort()
    if not sum(rep.kept.values()) and rep.scenes:
        raise NoPairs(f"{out}: no pairs: {no_pairs_reasons(rep, cfg, sc.infos)}", rep.summary())
    return rep


def no_pairs_reasons(report: TileReport, cfg: TileConfig, infos: dict[str, SceneInfo]) -> str:
    """Why a tiling kept nothing, with what to change: the drop reasons counted, and the scene sizes."""
    dropped = ", ".join(f"{n} {k}" for k, n in sorted(report.dropped.items())) or "no tiles at all"
    hints = []
    small = [n for n, i in infos.items() if min(i.height, i.width) < cfg.size]
    if small:
        hints.append(f"{len(small)} scene(s) are smaller than --size {cfg.size} (e.g. {small[0]}: "
                     f"{infos[small[0]].width}×{infos[small[0]].height}); use a smaller --size")
    if report.dropped.get("empty") or report.dropped.get("below_min_foreground"):
        hints.append("tiles without enough foreground are dropped: check the --palette background, "
                     "lower --min-foreground, or keep some with --keep-empty")
    if report.dropped.get("nodata"):
        hints.append(f"tiles over --max-nodata {cfg.max_nodata} nodata are dropped")
    if report.dropped.get("split_buffer"):
        hints.append("use a larger --block-size or a smaller --block-buffer")
    return f"dropped {dropped}" + (f"; {'; '.join(hints)}" if hints else "")


def _scene_shapes(pairs: list[Any], infos: dict[str, SceneInfo]) -> dict[str, tuple[int, int]]:
    """``(height, width)`` of every scene that opens (finished ones too: a block draw spans all scenes)."""
    shapes = {}
    for pair in pairs:
        if pair.name in infos:
            shapes[pair.name] = (infos[pair.name].height, infos[pair.name].width)
            continue
        try:
            with open_raster(pair.image) as ds:
                shapes[pair.name] = (ds.height, ds.width)
        except (P2PError, RasterioError, OSError):
            continue  # reported by the scene's own inspection
    return shapes


class _SceneBook:
    """Collects chunk results per scene; records a scene once all its chunks are in."""

    def __init__(self, out: Path, fmt: str, report: TileReport, infos: dict[str, SceneInfo],
                 grids: dict[str, list[TileWindow]]) -> None:
        self.out, self.fmt, self.report, self.infos, self.grids = out, fmt, report, infos, grids
        self.pending = Counter({name: len(list(_chunks(grid))) for name, grid in grids.items()})
        self.rows: dict[str, list[dict[str, Any]]] = {name: [] for name in infos}
        self.written: Counter[str] = Counter()
        self.errors: dict[str, str] = {}

    def add(self, res: ChunkResult) -> None:
        self.written[res.scene] += res.written
        self.report.existing += res.existing
        if res.error is not None:
            self.errors.setdefault(res.scene, res.error)
        self.rows[res.scene].extend(res.rows)
        self.pending[res.scene] -= 1
        if self.pending[res.scene] == 0:
            self._finish(res.scene)

    def finish_empty(self) -> None:
        """Record the scenes that had no tile at all (smaller than a tile with ``--edge drop``)."""
        for name, grid in self.grids.items():
            if not grid:
                self._finish(name)

    def _finish(self, scene: str) -> None:
        if scene in self.errors:
            report("tile %s: failed (%s)", scene, self.errors[scene])
            _remove_scene_tiles(self.out, scene, self.grids[scene], self.fmt)
            self.report.failures.append((str(self.infos[scene].pair.image), self.errors[scene]))
            return
        rows = sorted(self.rows.pop(scene), key=lambda r: (r["row"], r["col"]))
        atomic_write_text(_scene_state(self.out, scene), csv_text(rows))
        kept = sum(1 for r in rows if r["kept"])
        report("tile %s: %d of %d tiles kept (%d written now)", scene, kept, len(rows), self.written[scene])
        self.report.written += self.written[scene]
        self.report.scenes.append(scene)


def _run(tasks: list[ChunkTask], workers: int, dask: str | None = None) -> Iterator[ChunkResult]:
    try:
        yield from imap_unordered(process_chunk, tasks, workers, dask, on_error=_task_failed)
    finally:
        _DATASETS.close()  # datasets opened in this process (workers=1)


def _task_failed(task: ChunkTask, exc: BaseException) -> ChunkResult:
    """A chunk whose Dask task failed for good (its workers died): reported like a bad scene."""
    return ChunkResult(task.info.pair.name, len(task.tiles), [],
                       error=f"{task.info.pair.image}: the task failed on the Dask cluster: {exc!r}")


def _assemble_manifest(out: Path, scenes: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Concatenate the finished scenes' records (in scene order) into the manifest rows."""
    header: list[str] = []
    rows: list[dict[str, str]] = []
    for name in scenes:
        path = _scene_state(out, name)
        if path.is_file():
            fields, scene_rows = read_csv_rows(path)
            header = header or fields
            rows.extend(scene_rows)
    return header, rows
