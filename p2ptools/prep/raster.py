"""Scene discovery and pairing, grid checks, 8-bit scaling and windowed reads (rasterio).

Nothing here reads a whole scene: photos and masks are read window by window, and the 8-bit
stretch of non-8-bit photos is computed once per scene from a decimated read (at most
``STATS_MAX_SIDE`` pixels on the long side) so every tile of a scene gets the same brightness.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from p2ptools.config import LAYOUTS
from p2ptools.errors import ConfigError, GridMismatchError, InputError, P2PError, RasterReadError
from p2ptools.prep.limits import check_pixels
from p2ptools.runtime.names import gdal_name

log = logging.getLogger(__name__)

RASTER_EXTENSIONS: frozenset[str] = frozenset({".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".img", ".vrt"})
STATS_MAX_SIDE = 2048
#: GDAL block cache per process, in bytes (16 MB): enough for the strips of one tile row of a
#: stripped scene, small enough that memory stays flat however large the scene and however many workers.
GDAL_CACHE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ScenePair:
    """A photo and its label mask.

    Args:
        name: the scene name (the photo's file stem), used in tile names.
        image: path of the photo.
        mask: path of the mask, or None when it is missing.
    """

    name: str
    image: Path
    mask: Path | None


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover_pairs` found.

    Args:
        layout: the layout used (``inria``, ``landcover`` or ``generic``).
        pairs: photo/mask pairs, sorted by name (pairs with ``mask=None`` lack a mask).
        orphan_masks: masks with no photo.
        root: the folder that may hold official split lists.
    """

    layout: str
    pairs: list[ScenePair]
    orphan_masks: list[Path] = field(default_factory=list)
    root: Path | None = None


def _rasters(folder: Path, vectors: bool = False) -> list[Path]:
    """Raster files of ``folder`` (and vector label files when ``vectors``), sorted."""
    from p2ptools.prep.vector import VECTOR_EXTENSIONS

    ok = RASTER_EXTENSIONS | (VECTOR_EXTENSIONS if vectors else frozenset())
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in ok)


def _pair_by_stem(images: list[Path], masks: list[Path], mask_suffix: str = "") -> tuple[list[ScenePair], list[Path]]:
    by_stem: dict[str, Path] = {}
    for m in masks:
        stem = m.stem[: -len(mask_suffix)] if mask_suffix and m.stem.endswith(mask_suffix) else m.stem
        by_stem[stem] = m
    pairs = [ScenePair(p.stem, p, by_stem.pop(p.stem, None)) for p in images]
    return pairs, sorted(by_stem.values())


def discover_pairs(
    src: Path | None,
    layout: str = "auto",
    images: Path | None = None,
    masks: Path | None = None,
    mask_suffix: str = "",
) -> Discovery:
    """Find photo/mask pairs in one of the supported layouts.

    * Inria Aerial Image Labeling: ``SRC/images/*.tif`` + ``SRC/gt/*.tif`` (also ``SRC/train/...``
      as the dataset unpacks), same file names.
    * LandCover.ai v1: ``SRC/images/*.tif`` + ``SRC/masks/*.tif`` (+ ``train.txt``/``val.txt``/``test.txt``).
    * Generic: ``images`` and ``masks`` folders paired by file stem (``mask_suffix`` is stripped from
      mask stems, e.g. ``_mask``).

    Args:
        src: the dataset root (unused for the generic layout).
        layout: ``auto`` (detect), ``inria``, ``landcover`` or ``generic``.
        images: photo folder of the generic layout.
        masks: mask folder of the generic layout.
        mask_suffix: suffix of mask stems to strip before pairing.

    Returns:
        The discovery.

    Raises:
        InputError: if the folders are missing, empty, or the layout cannot be recognised.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if images is not None or masks is not None or layout == "generic":
        if images is None or masks is None:
            raise ConfigError("the generic layout needs both --images DIR and --masks DIR")
        img_dir, mask_dir, layout, root = Path(images), Path(masks), "generic", None
    else:
        if src is None:
            raise ConfigError("give SRC (an Inria or LandCover.ai folder) or --images DIR --masks DIR")
        root = Path(src)
        if not root.is_dir():
            raise InputError(f"{root}: no such folder")
        if layout in ("auto", "inria") and not (root / "gt").is_dir() and (root / "train" / "gt").is_dir():
            root = root / "train"
        if layout == "auto":
            if (root / "images").is_dir() and (root / "gt").is_dir():
                layout = "inria"
            elif (root / "images").is_dir() and (root / "masks").is_dir():
                layout = "landcover"
            else:
                raise InputError(
                    f"{root}: cannot recognise the layout: expected images/ + gt/ (Inria) or images/ + masks/ "
                    "(LandCover.ai); for other folders use --images DIR --masks DIR"
                )
        img_dir = root / "images"
        mask_dir = root / ("gt" if layout == "inria" else "masks")
    photos = _listing(img_dir, vectors=False)
    if not photos:
        raise InputError(f"{img_dir}: no raster files ({', '.join(sorted(RASTER_EXTENSIONS))})")
    pairs, orphans = _pair_by_stem(photos, _listing(mask_dir, vectors=True), mask_suffix)
    return Discovery(layout, pairs, orphans, root)


def _listing(where: Path, vectors: bool) -> list[Path]:
    """The rasters (and vector labels) of a folder, or the entries of a list file (local paths, URLs).

    Raises:
        InputError: if it is neither.
    """
    from p2ptools.prep.sources import is_list_file, read_list

    if is_list_file(where):
        return read_list(where)  # type: ignore[return-value]
    if not Path(where).is_dir():
        raise InputError(f"{where}: no such folder (or list file of scenes, .txt)")
    return _rasters(Path(where), vectors)


@dataclass(frozen=True)
class SceneInfo:
    """Everything needed to read tiles of a scene consistently, in any process.

    Args:
        pair: the photo/mask pair.
        height: scene height in pixels.
        width: scene width in pixels.
        bands: 1-based photo band indexes read (1 or 3 of them).
        crs: the photo's CRS (``EPSG:n`` when it has an authority code, else WKT), or "".
        transform: the photo's affine geotransform as 6 GDAL-order numbers (a, b, c, d, e, f).
        stretch: per band (low, high) values mapped to 0 and 255, or None for 8-bit photos.
        has_nodata: whether the photo has nodata/alpha/mask information.
        mask_dtype: the mask's dtype name.
        photo_dtype: the photo's dtype name (of its first chosen band).
    """

    pair: ScenePair
    height: int
    width: int
    bands: tuple[int, ...]
    crs: str
    transform: tuple[float, float, float, float, float, float]
    stretch: tuple[tuple[float, float], ...] | None
    has_nodata: bool
    mask_dtype: str
    photo_dtype: str = "uint8"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (for ``dataset.json``)."""
        return {
            "image": str(self.pair.image),
            "mask": str(self.pair.mask),
            "height": self.height,
            "width": self.width,
            "bands": list(self.bands),
            "crs": self.crs,
            "transform": list(self.transform),
            "stretch": [list(s) for s in self.stretch] if self.stretch else None,
        }


def describe_error(exc: BaseException) -> str:
    """A one-line description of a GDAL/rasterio error, with its underlying cause when it has one."""
    text = str(exc).replace("See previous exception for details.", "").strip().rstrip(".")
    cause = exc.__cause__ or exc.__context__
    said = str(cause).strip().rstrip(".") if cause is not None else ""
    if said and said not in text:  # GDAL's message often comes twice, once in the cause
        text = f"{text}: {said}" if text else said
    return " ".join(text.split())


#: GDAL drivers of formats without tiles: a window is decoded from the top of the file, so they are
#: held to the pixel limit of images (:func:`p2ptools.prep.limits.max_pixels`) like a whole read
UNTILED_DRIVERS: frozenset[str] = frozenset({"PNG", "JPEG", "BMP", "GIF", "WEBP"})


def open_raster(path: Path) -> rasterio.io.DatasetReader:
    """Open a raster (any file name: :func:`gdal_name`), turning any failure into an error that names the file.

    A PNG, JPEG, BMP, GIF or WebP file (``UNTILED_DRIVERS``: no tiles, so windows cannot be read on
    their own) of more than :func:`p2ptools.prep.limits.max_pixels` pixels (default 16384² =
    268,435,456) is refused; a tiled GeoTIFF, JPEG 2000 or VRT of any size opens.

    Raises:
        RasterReadError: if the file is missing, not a raster or corrupt.
        ImageTooLargeError: for an untiled format over the pixel limit.
    """
    try:
        with warnings.catch_warnings(), gdal_name(Path(path)) as name:
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(name)
    except (RasterioError, OSError) as exc:
        why = describe_error(exc).replace(f"'{path}' ", "").replace(f"{path}: ", "")
        raise RasterReadError(f"{path}: cannot open as a raster: {why}") from exc
    if ds.driver in UNTILED_DRIVERS:
        try:
            check_pixels(path, ds.width, ds.height, "; a scene this large is read in windows from a tiled GeoTIFF "
                         "(gdal_translate -co TILED=YES FILE OUT.tif)")
        except P2PError:
            ds.close()
            raise
    return ds


def is_georeferenced(ds: rasterio.io.DatasetReader) -> bool:
    """True when the dataset has a CRS or a non-identity geotransform."""
    return ds.crs is not None or not ds.transform.is_identity


def colour_bands(ds: rasterio.io.DatasetReader) -> tuple[int, ...]:
    """The 1-based bands of ``ds`` that are not alpha (empty if every band is)."""
    return tuple(i + 1 for i, ci in enumerate(ds.colorinterp) if ci != ColorInterp.alpha)


def choose_bands(ds: rasterio.io.DatasetReader, bands: tuple[int, ...] | None) -> tuple[int, ...]:
    """Pick the photo bands to read.

    Default: the non-alpha bands; the first three of them when there are three or more (RGB of
    RGBN), else the first one (replicated to three channels when read).

    Raises:
        ConfigError: if requested bands do not exist or are not 1 or 3 of them.
    """
    if bands:
        if len(bands) not in (1, 3):
            raise ConfigError(f"--bands: give 1 or 3 band numbers, got {len(bands)}")
        bad = [b for b in bands if not 1 <= b <= ds.count]
        if bad:
            raise ConfigError(f"{ds.name}: has {ds.count} band(s); --bands {','.join(map(str, bad))} does not exist")
        return tuple(bands)
    colour = colour_bands(ds) or (1,)
    return tuple(colour[:3]) if len(colour) >= 3 else (colour[0],)


def has_nodata(ds: rasterio.io.DatasetReader) -> bool:
    """Whether GDAL's dataset mask of ``ds`` can hide pixels (nodata value, alpha band or mask band)."""
    flags = ds.mask_flag_enums
    return any(
        any(f.name in ("nodata", "alpha", "per_dataset") for f in band_flags) for band_flags in flags
    )


def stretch_sample(ds: rasterio.io.DatasetReader, bands: tuple[int, ...]) -> np.ndarray:
    """``(bands, n)`` float64 values of the valid pixels of one decimated read of the scene (nearest
    neighbour, at most ``STATS_MAX_SIDE`` pixels on the long side): what the stretch is computed from."""
    scale = min(1.0, STATS_MAX_SIDE / max(ds.height, ds.width))
    shape = (max(1, round(ds.height * scale)), max(1, round(ds.width * scale)))
    data = ds.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest).astype(np.float64)
    valid = ds.dataset_mask(out_shape=shape, resampling=Resampling.nearest) > 0
    valid &= np.isfinite(data).all(axis=0)
    return data[:, valid]


def percentile_stretch(sample: np.ndarray, percentiles: tuple[float, float]) -> tuple[tuple[float, float], ...]:
    """Per band ``(low, high)`` percentiles of a ``(bands, n)`` sample (``(0, 1)`` for an empty one;
    ``high`` is at least ``low + 1``)."""
    out = []
    for band in sample:
        if band.size == 0:
            out.append((0.0, 1.0))
            continue
        lo, hi = np.percentile(band, percentiles)
        out.append((float(lo), float(hi if hi > lo else lo + 1.0)))
    return tuple(out)


def compute_stretch(
    ds: rasterio.io.DatasetReader, bands: tuple[int, ...], percentiles: tuple[float, float]
) -> tuple[tuple[float, float], ...] | None:
    """Per-band percentile stretch of a non-8-bit photo, computed over the whole scene.

    The statistics come from one decimated read (:func:`stretch_sample`) over valid (non-nodata)
    pixels, so memory stays bounded and every tile of the scene is scaled the same way:
    ``out = clip((v - low) / (high - low), 0, 1) * 255``.

    Returns:
        ``((low, high), ...)`` per band, or None for uint8 photos (used as they are).
    """
    if all(ds.dtypes[b - 1] == "uint8" for b in bands):
        return None
    return percentile_stretch(stretch_sample(ds, bands), percentiles)


#: values kept per scene for the dataset-wide stretch of float photos (integer photos use exact histograms)
DATASET_SAMPLE_PER_SCENE = 65536
HIST_MIN, HIST_BINS = -32768, 65536 + 32768  # int16 and uint16 values share one histogram


def dataset_stretch(infos: list[SceneInfo], percentiles: tuple[float, float]
                    ) -> tuple[tuple[float, float], ...] | None:
    """One per-band stretch for all the non-8-bit photos of ``infos`` (``--stretch-scope dataset``).

    Each scene contributes the values of its :func:`stretch_sample`; integer photos of up to 16 bits
    are pooled as exact per-band histograms (memory independent of the number of scenes, the same
    percentiles ``np.percentile`` gives on the pooled values), other dtypes as at most
    ``DATASET_SAMPLE_PER_SCENE`` evenly spaced values per scene.

    Returns:
        ``((low, high), ...)`` per band, or None when no photo needs a stretch.

    Raises:
        InputError: if the scenes' photos differ in band count.
    """
    scenes = [i for i in infos if i.stretch is not None]
    if not scenes:
        return None
    if len({len(i.bands) for i in scenes}) > 1:
        raise InputError("--stretch-scope dataset: the photos differ in band count "
                         f"({', '.join(sorted({f'{i.pair.name}: {len(i.bands)}' for i in scenes})[:5])})")
    exact = all(np.dtype(i.photo_dtype).kind in "ui" and np.dtype(i.photo_dtype).itemsize <= 2 for i in scenes)
    hists = [np.zeros(HIST_BINS, np.int64) for _ in scenes[0].bands] if exact else []
    pooled: list[np.ndarray] = []
    for info in scenes:
        with open_raster(info.pair.image) as ds:
            sample = stretch_sample(ds, info.bands)
        if exact:
            for h, band in zip(hists, sample, strict=True):
                h += np.bincount((band - HIST_MIN).astype(np.int64), minlength=HIST_BINS)
        else:
            pooled.append(sample[:, :: max(1, sample.shape[1] // DATASET_SAMPLE_PER_SCENE)])
    if not exact:
        return percentile_stretch(np.concatenate(pooled, axis=1), percentiles)
    out = []
    for h in hists:
        lo, hi = histogram_percentiles(h, percentiles) if h.sum() else (0.0, 1.0)
        out.append((lo, hi if hi > lo else lo + 1.0))
    return tuple(out)



def histogram_percentiles(hist: np.ndarray, percentiles: tuple[float, ...]) -> tuple[float, ...]:
    """Percentiles of the values a histogram of integers (bin ``k`` = value ``HIST_MIN + k``) counts,
    interpolated between order statistics exactly as ``np.percentile`` (method ``linear``) would on
    the values themselves."""
    cum = np.cumsum(hist)
    n = int(cum[-1])
    out = []
    for q in percentiles:
        rank = q / 100.0 * (n - 1)
        k = int(np.floor(rank))
        v0 = int(np.searchsorted(cum, k, side="right"))  # the k-th smallest value's bin (0-based rank)
        v1 = int(np.searchsorted(cum, min(k + 1, n - 1), side="right"))
        out.append(float(HIST_MIN + v0 + (rank - k) * (v1 - v0)))
    return tuple(out)


def inspect_scene(
    pair: ScenePair,
    bands: tuple[int, ...] | None = None,
    percentiles: tuple[float, float] = (2.0, 98.0),
    vector: Any = None,
    background: int = 0,
) -> SceneInfo:
    """Open a photo and its mask, check that they share a grid and compute the 8-bit stretch.

    A mask on the same pixel grid but without any georeference (as SpaceNet ships them) is
    accepted with a warning; a mask with another size, transform or CRS is an error. A vector
    label file (:mod:`p2ptools.prep.vector`) is read with ``vector`` (a ``VectorSpec``) and checked
    against the photo: CRS, field, overlap.

    Raises:
        InputError: if the mask is missing or is not single-band integer labels (or unusable vector labels).
        RasterReadError: if a file cannot be opened.
        GridMismatchError: if photo and mask grids differ.
    """
    if pair.mask is None:
        raise InputError(f"{pair.image}: no mask with the same name")
    from p2ptools.prep.vector import VectorMask, is_vector

    if is_vector(pair.mask):
        if vector is None:
            raise InputError(f"{pair.mask}: vector labels need a palette (internal: no VectorSpec given)")
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), open_raster(pair.image) as img:
            info = _photo_info(img, pair, bands, percentiles, "uint16" if max(vector.values) > 255 else "uint8")
        VectorMask(pair.mask, vector, info.crs, info.transform, info.height, info.width, background,
                   info.mask_dtype)  # reads and checks the features (CRS, field, overlap)
        return info
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), open_raster(pair.image) as img, open_raster(pair.mask) as msk:
        if msk.count != 1:
            raise InputError(f"{pair.mask}: mask has {msk.count} bands; expected one band of class values")
        if not np.issubdtype(np.dtype(msk.dtypes[0]), np.integer):
            raise InputError(f"{pair.mask}: mask dtype is {msk.dtypes[0]}; expected integer class values")
        if (img.height, img.width) != (msk.height, msk.width):
            raise GridMismatchError(
                f"{pair.mask}: mask is {msk.width}×{msk.height} but photo {pair.image.name} is {img.width}×{img.height}"
            )
        if is_georeferenced(msk):
            if is_georeferenced(img) and not msk.transform.almost_equals(img.transform, precision=1e-6):
                raise GridMismatchError(
                    f"{pair.mask}: mask geotransform {tuple(msk.transform)[:6]} differs from photo "
                    f"{pair.image.name} {tuple(img.transform)[:6]}"
                )
            if img.crs is not None and msk.crs is not None and msk.crs != img.crs:
                raise GridMismatchError(f"{pair.mask}: mask CRS {msk.crs} differs from photo CRS {img.crs}")
        elif is_georeferenced(img):
            log.warning("%s: mask has no georeference; assuming it shares the grid of %s", pair.mask, pair.image.name)
        return _photo_info(img, pair, bands, percentiles, msk.dtypes[0])


def _photo_info(img: rasterio.io.DatasetReader, pair: ScenePair, bands: tuple[int, ...] | None,
                percentiles: tuple[float, float], mask_dtype: str) -> SceneInfo:
    chosen = choose_bands(img, bands)
    try:
        stretch = compute_stretch(img, chosen, percentiles)
    except RasterioError as exc:
        raise RasterReadError(f"{pair.image}: cannot read: {describe_error(exc)}") from exc
    return SceneInfo(
        pair=pair,
        height=img.height,
        width=img.width,
        bands=chosen,
        crs=img.crs.to_string() if img.crs else "",
        transform=tuple(img.transform)[:6],  # type: ignore[arg-type]
        stretch=stretch,
        has_nodata=has_nodata(img),
        mask_dtype=mask_dtype,
        photo_dtype=img.dtypes[chosen[0] - 1],
    )


def to_uint8(data: np.ndarray, stretch: tuple[tuple[float, float], ...] | None) -> np.ndarray:
    """Scale ``(bands, H, W)`` photo data to uint8 with the scene's stretch (None: already uint8)."""
    if stretch is None:
        return data.astype(np.uint8, copy=False)
    out = np.empty(data.shape, dtype=np.uint8)
    for i, (lo, hi) in enumerate(stretch):
        band = (data[i].astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
        np.clip(band, 0, 255, out=band)
        out[i] = np.nan_to_num(band + 0.5).astype(np.uint8)
    return out


def clip_window(y: int, x: int, height: int, width: int, scene_h: int, scene_w: int) -> Window | None:
    """Intersect a pixel window with the scene; None when it lies outside."""
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + height, scene_h), min(x + width, scene_w)
    if y1 <= y0 or x1 <= x0:
        return None
    return Window(x0, y0, x1 - x0, y1 - y0)


def read_photo(ds: rasterio.io.DatasetReader, info: SceneInfo, y: int, x: int, height: int, width: int,
               bgr: bool = False) -> np.ndarray:
    """Read a window of the photo as RGB uint8 (scaled with the scene's stretch), 0 outside the scene
    (``bgr=True``: in OpenCV's BGR order).

    Nodata pixels keep whatever value the file holds there; :func:`read_valid` tells which they are.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    win = clip_window(y, x, height, width, info.height, info.width)
    if win is None:
        return rgb
    ys, xs = int(win.row_off) - y, int(win.col_off) - x
    data = to_uint8(ds.read(list(info.bands), window=win), info.stretch)
    planes = [data[0]] * 3 if data.shape[0] == 1 else list(data)
    # (bands, h, w) → (h, w, 3); much faster than numpy's moveaxis copy
    sub = cv2.merge(planes[::-1] if bgr else planes)
    rgb[ys : ys + sub.shape[0], xs : xs + sub.shape[1]] = sub
    return rgb


def read_valid(ds: rasterio.io.DatasetReader, info: SceneInfo, y: int, x: int, height: int, width: int) -> np.ndarray:
    """Which pixels of a window hold photo data: inside the scene and not nodata/transparent.

    Uses GDAL's dataset mask (nodata value, alpha band or internal mask) only when the photo has
    one; otherwise validity is just the window's overlap with the scene.

    Returns:
        ``(H, W)`` bool.
    """
    valid = np.zeros((height, width), dtype=bool)
    win = clip_window(y, x, height, width, info.height, info.width)
    if win is None:
        return valid
    ys, xs = int(win.row_off) - y, int(win.col_off) - x
    h, w = int(win.height), int(win.width)
    valid[ys : ys + h, xs : xs + w] = ds.dataset_mask(window=win) > 0 if info.has_nodata else True
    return valid


def read_labels(
    ds: rasterio.io.DatasetReader, info: SceneInfo, y: int, x: int, height: int, width: int, fill: int
) -> np.ndarray:
    """Read a window of the mask, padding outside the scene with ``fill`` (the background)."""
    labels = np.full((height, width), fill, dtype=np.dtype(info.mask_dtype))
    win = clip_window(y, x, height, width, info.height, info.width)
    if win is not None:
        ys, xs = int(win.row_off) - y, int(win.col_off) - x
        sub = ds.read(1, window=win)
        labels[ys : ys + sub.shape[0], xs : xs + sub.shape[1]] = sub
    return labels


def window_geo(
    info: SceneInfo, y: int, x: int, size: int
) -> tuple[tuple[float, ...], tuple[float, float, float, float]]:
    """The geotransform and bounds ``(left, bottom, right, top)`` of a ``size``² tile at ``(y, x)``.

    The arithmetic of ``rasterio.windows.transform`` and ``bounds``, without building a ``Window``
    for every tile (the same floats; tested).
    """
    a, b, c, d, e, f = info.transform
    gx, gy = x * a + y * b + c, x * d + y * e + f  # the tile's origin, as Affine * (x, y) computes it
    left, bottom = x * a + (y + size) * b + c, x * d + (y + size) * e + f
    right, top = (x + size) * a + y * b + c, (x + size) * d + y * e + f
    # Affine.translation(gx - c, gy - f) * scene, term by term (the zero terms do not change the floats)
    return (a, b, c + (gx - c), d, e, f + (gy - f)), (left, bottom, right, top)
