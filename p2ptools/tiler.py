"""``p2ptools tile``: GeoTIFF scenes + label masks → AB tile pairs, a manifest and dataset.json.

The work is cut into chunks (one tile row of a scene, at most ``CHUNK_TILES`` tiles wide) that
are read with one windowed read each, so memory depends on the tile size, not on the scene, and
several processes can work on one large scene at once. A scene is recorded as finished (its
manifest rows under ``OUT/.p2ptools/scenes/``) only when all its chunks are done; a rerun skips
finished scenes and tiles already on disk. A scene that fails is reported and its tiles removed,
while the other scenes go on.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import rasterio
from rasterio.errors import RasterioError
from tqdm.auto import tqdm

from p2ptools.config import TileConfig
from p2ptools.errors import P2PError, RasterReadError
from p2ptools.labels import Palette, load_palette, palette_from_dict, unknown_values
from p2ptools.output import (
    MANIFEST_FILE,
    STATE_DIR,
    atomic_write_csv,
    prepare_output,
    write_dataset_json,
    write_image,
)
from p2ptools.raster import (
    GDAL_CACHE_MB,
    SceneInfo,
    describe_error,
    discover_pairs,
    inspect_scene,
    open_raster,
    read_labels,
    read_photo,
    window_geo,
)
from p2ptools.splits import SPLITS, assign_splits, official_tile_split, read_split_lists
from p2ptools.tiling import TileWindow, compose_ab, decide_tile, keep_fraction_draw, tile_grid

log = logging.getLogger(__name__)

#: Tiles per chunk (one windowed read): bounds memory to ``size² × CHUNK_TILES`` pixels.
CHUNK_TILES = 8
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
            f"{sum(self.kept.values())} pairs in {self.out} ({kept}) from {len(self.scenes)} scene(s), layout {self.layout}",
            f"dropped tiles: {dropped}; written now: {self.written}, already there: {self.existing}",
            f"manifest: {self.out / MANIFEST_FILE}",
        ]
        return "\n".join(lines)


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


@dataclass
class ChunkResult:
    """Manifest rows of a chunk, or the error that stopped it."""

    scene: str
    rows: list[dict[str, Any]]
    written: int = 0
    existing: int = 0
    error: str | None = None


def resolve_palette(spec: str, layout: str) -> Palette:
    """The palette named by ``spec``, or the layout's default for ``auto``."""
    return load_palette(DEFAULT_PALETTES[layout] if spec == "auto" else spec)


def tile_path(out: Path, split: str, scene: str, tile: TileWindow, fmt: str) -> Path:
    """``OUT/<split>/<scene>_<row>_<col>.<ext>``."""
    return out / split / f"{scene}_{tile.row}_{tile.col}.{fmt}"


def class_counts(labels: np.ndarray) -> dict[int, int]:
    """Pixel count of each value in a label array."""
    if labels.dtype == np.uint8:
        counts = np.bincount(labels.ravel(), minlength=256)
        return {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
    values, counts = np.unique(labels, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def _chunks(tiles: list[TileWindow]) -> Iterator[list[TileWindow]]:
    row: list[TileWindow] = []
    for t in tiles:
        if row and (t.row != row[0].row or len(row) == CHUNK_TILES):
            yield row
            row = []
        row.append(t)
    if row:
        yield row


def process_chunk(task: ChunkTask) -> ChunkResult:
    """Read one chunk of a scene, filter its tiles, write the kept AB pairs.

    Never raises for a bad scene: the error comes back in the result, naming the file.
    """
    info = task.info
    try:
        palette = palette_from_dict(task.palette)
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            return _process_chunk(task, info, palette)
    except P2PError as exc:
        return ChunkResult(info.pair.name, [], error=str(exc))
    except (RasterioError, OSError, ValueError) as exc:
        return ChunkResult(info.pair.name, [], error=f"{info.pair.image}: cannot read: {describe_error(exc)}")


def _process_chunk(task: ChunkTask, info: SceneInfo, palette: Palette) -> ChunkResult:
    size, out = task.size, Path(task.out)
    y, x0 = task.tiles[0].y, task.tiles[0].x
    width = task.tiles[-1].x + size - x0
    assert info.pair.mask is not None
    with open_raster(info.pair.image) as img, open_raster(info.pair.mask) as msk:
        try:
            rgb, valid = read_photo(img, info, y, x0, size, width)
        except RasterioError as exc:
            raise RasterReadError(f"{info.pair.image}: cannot read window at row {y}, col {x0}: {describe_error(exc)}") from exc
        try:
            labels = read_labels(msk, info, y, x0, size, width, palette.background)
        except RasterioError as exc:
            raise RasterReadError(f"{info.pair.mask}: cannot read window at row {y}, col {x0}: {describe_error(exc)}") from exc
    counts = class_counts(labels)
    unknown = unknown_values(list(counts), palette)
    if unknown:
        return ChunkResult(
            info.pair.name, [],
            error=f"{info.pair.mask}: values outside palette {palette.name!r} "
            f"({', '.join(map(str, palette.values))}): {', '.join(map(str, unknown))}",
        )
    lut = palette.lut()
    result = ChunkResult(info.pair.name, [])
    area = float(size * size)
    for tile, split in zip(task.tiles, task.splits):
        dx = tile.x - x0
        t_labels = labels[:, dx : dx + size]
        t_counts = class_counts(t_labels)
        fg = 1.0 - t_counts.get(palette.background, 0) / area
        nodata = 1.0 - float(valid[:, dx : dx + size].mean())
        name = f"{info.pair.name}_{tile.row}_{tile.col}"
        if split is None:
            reason = "unlisted"
        else:
            draw = keep_fraction_draw(task.seed, name)
            reason = decide_tile(fg, nodata, task.min_foreground, task.keep_empty, task.max_nodata, draw)
        transform, bounds = window_geo(info, tile.y, tile.x, size)
        row: dict[str, Any] = {
            "tile_id": name,
            "split": split or "",
            "scene": info.pair.name,
            "row": tile.row,
            "col": tile.col,
            "x": tile.x,
            "y": tile.y,
            "width": size,
            "height": size,
            "crs": info.crs,
            "transform": " ".join(repr(float(v)) for v in transform),
            "left": bounds[0],
            "bottom": bounds[1],
            "right": bounds[2],
            "top": bounds[3],
            "fg_fraction": round(fg, 6),
            "nodata_fraction": round(nodata, 6),
        }
        for c in palette.classes:
            row[f"frac_{c.name}"] = round(t_counts.get(c.value, 0) / area, 6)
        row["kept"] = reason in KEPT_REASONS
        row["reason"] = reason
        row["file"] = ""
        if row["kept"]:
            assert split is not None
            path = tile_path(out, split, info.pair.name, tile, task.fmt)
            row["file"] = f"{split}/{path.name}"
            if path.exists():
                result.existing += 1
            else:
                label_rgb = lut[t_labels.astype(np.int64, copy=False)]
                photo = rgb[:, dx : dx + size]
                ab = compose_ab(label_rgb, photo) if task.label_is_a else compose_ab(photo, label_rgb)
                write_image(path, ab, task.fmt, task.jpeg_quality)
                result.written += 1
        result.rows.append(row)
    return result


def _scene_state(out: Path, scene: str) -> Path:
    return out / STATE_DIR / "scenes" / f"{scene}.csv"


def _remove_scene_tiles(out: Path, scene: str, tiles: list[TileWindow], fmt: str) -> None:
    for t in tiles:
        for split in SPLITS:
            tile_path(out, split, scene, t, fmt).unlink(missing_ok=True)


def _scene_splits(cfg: TileConfig, names: list[str], root: Path | None) -> tuple[dict[str, str], dict[str, str] | None, str]:
    lists = read_split_lists(root) if root is not None else None
    if lists is not None:
        return {}, lists, f"official lists in {root}"
    return assign_splits(names, cfg.split, cfg.seed), None, f"random by scene {cfg.split}, seed {cfg.seed}"


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
    found = discover_pairs(cfg.src, cfg.layout, cfg.images, cfg.masks, cfg.mask_suffix)
    palette = resolve_palette(cfg.palette, found.layout)
    out = Path(cfg.out)
    resumed = prepare_output(out, "tiles", cfg.output_params(), cfg.overwrite)
    label_is_a = cfg.direction == "label2photo"
    meta: dict[str, Any] = {
        "kind": "tiles",
        "params": cfg.output_params(),
        "A": "label" if label_is_a else "photo",
        "B": "photo" if label_is_a else "label",
        "palette": palette.to_dict(),
        "complete": False,
    }
    write_dataset_json(out, meta)
    for m in found.orphan_masks:
        log.warning("%s: mask without a photo; ignored", m)

    scene_split, lists, split_source = _scene_splits(cfg, [p.name for p in found.pairs], found.root)
    report = TileReport(out=out, layout=found.layout, resumed=resumed)
    infos: dict[str, SceneInfo] = {}
    grids: dict[str, list[TileWindow]] = {}
    tasks: list[ChunkTask] = []
    for pair in found.pairs:
        if _scene_state(out, pair.name).is_file():
            report.scenes.append(pair.name)
            continue
        try:
            info = inspect_scene(pair, cfg.bands, cfg.percentiles)
        except P2PError as exc:
            report.failures.append((str(pair.image), str(exc)))
            continue
        infos[pair.name] = info
        grid = tile_grid(info.height, info.width, cfg.size, cfg.step, cfg.edge)  # type: ignore[arg-type]
        grids[pair.name] = grid
        if not grid:
            log.warning("%s: %d×%d is smaller than one %d tile; no tiles with --edge drop",
                        pair.image, info.width, info.height, cfg.size)
        for chunk in _chunks(grid):
            if lists is not None:
                half = cfg.size // 2
                splits = tuple(official_tile_split(lists, pair.name, t.y + half, t.x + half, info.height, info.width)
                               for t in chunk)
            else:
                splits = tuple(scene_split.get(pair.name) for _ in chunk)
            tasks.append(ChunkTask(info, tuple(chunk), splits, palette.to_dict(), str(out), cfg.size,
                                   cfg.min_foreground, cfg.keep_empty, cfg.max_nodata, label_is_a,
                                   cfg.fmt, cfg.jpeg_quality, cfg.seed))

    rows_by_scene: dict[str, list[dict[str, Any]]] = {name: [] for name in infos}
    pending = Counter(t.info.pair.name for t in tasks)
    written: Counter[str] = Counter()
    errors: dict[str, str] = {}
    bar = tqdm(total=sum(len(t.tiles) for t in tasks), unit="tile", desc="tile", disable=not progress or None)
    try:
        for res in _run(tasks, cfg.workers):
            bar.update(len(res.rows) if res.error is None else 0)
            written[res.scene] += res.written
            report.existing += res.existing
            if res.error is not None:
                errors.setdefault(res.scene, res.error)
            else:
                rows_by_scene[res.scene].extend(res.rows)
            pending[res.scene] -= 1
            if pending[res.scene] == 0:
                _finish_scene(out, res.scene, rows_by_scene, errors, grids, cfg, report, infos, written[res.scene])
    finally:
        bar.close()
    for name in infos:  # scenes without any tile
        if name not in pending:
            _finish_scene(out, name, rows_by_scene, errors, grids, cfg, report, infos, 0)

    manifest = _assemble_manifest(out, [p.name for p in found.pairs])
    if not manifest.empty:
        kept = manifest[manifest["kept"].astype(bool)]
        report.kept = {s: int((kept["split"] == s).sum()) for s in SPLITS}
        report.dropped = {str(k): int(v) for k, v in manifest.loc[~manifest["kept"].astype(bool), "reason"].value_counts().items()}
    atomic_write_csv(out / MANIFEST_FILE, manifest)
    meta.update({
        "layout": found.layout,
        "split_source": split_source,
        "counts": report.kept,
        "scenes": sorted(report.scenes),
        "failed": [{"file": f, "reason": r} for f, r in report.failures],
        "complete": not report.failures,
    })
    write_dataset_json(out, meta)
    report.scenes.sort()
    return report


def _run(tasks: list[ChunkTask], workers: int) -> Iterator[ChunkResult]:
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            yield process_chunk(t)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(process_chunk, t) for t in tasks]
        for fut in as_completed(futures):
            yield fut.result()


def _finish_scene(
    out: Path,
    scene: str,
    rows_by_scene: dict[str, list[dict[str, Any]]],
    errors: dict[str, str],
    grids: dict[str, list[TileWindow]],
    cfg: TileConfig,
    report: TileReport,
    infos: dict[str, SceneInfo],
    written: int,
) -> None:
    if scene in errors:
        _remove_scene_tiles(out, scene, grids[scene], cfg.fmt)
        report.failures.append((str(infos[scene].pair.image), errors[scene]))
        return
    report.written += written
    rows = sorted(rows_by_scene.pop(scene, []), key=lambda r: (r["row"], r["col"]))
    atomic_write_csv(_scene_state(out, scene), pd.DataFrame(rows))
    report.scenes.append(scene)


def _assemble_manifest(out: Path, scenes: list[str]) -> pd.DataFrame:
    frames = []
    for name in scenes:
        path = _scene_state(out, name)
        if path.is_file() and path.stat().st_size > 1:
            text = path.read_text(encoding="utf-8")
            if text.strip():
                frames.append(pd.read_csv(io.StringIO(text), keep_default_na=False))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)
