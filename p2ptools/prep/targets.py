"""Photo → photo pairs: a second photo of the same place as the target (``tile --targets DIR``).

Date → date (NAIP 2018 → 2020), sensor → sensor or season → season translation pairs a photo with
another photo instead of a label mask. The target scenes are paired with the photos by file stem
and need not share their grid: each target is read through a ``WarpedVRT`` onto the photo's grid
(CRS, transform, size; bilinear), so scenes a pixel or two apart, or in another CRS, still give
aligned tiles. Nothing is filtered on content (there is no foreground); a tile is dropped when more
than ``--max-nodata`` of either photo is nodata. PNG pairs hold both photos as 8-bit RGB (each
stretched with its own scene's percentiles when not 8-bit); GeoTIFF pairs (``--format tif``) keep
both photos' bands and dtypes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from p2ptools.errors import InputError
from p2ptools.prep.raster import (
    GDAL_CACHE_BYTES,
    SceneInfo,
    ScenePair,
    _photo_info,
    choose_bands,
    colour_bands,
    compute_stretch,
    has_nodata,
    open_raster,
    read_photo,
    read_valid,
)


def aligned(target: rasterio.io.DatasetReader, info: SceneInfo) -> WarpedVRT:
    """``target`` resampled onto the grid of the photo described by ``info`` (bilinear); what lies
    outside the target is masked (its nodata, or an added alpha band)."""
    return WarpedVRT(target, crs=info.crs, transform=rasterio.Affine(*info.transform), width=info.width,
                     height=info.height, resampling=Resampling.bilinear, add_alpha=not has_nodata(target))


class AlignedTarget:
    """A target scene opened and read through :func:`aligned`: reads like a rasterio dataset on the
    photo's grid; ``close()`` closes the VRT and the file under it."""

    def __init__(self, path: Path, info: SceneInfo) -> None:
        self._src = open_raster(path)
        self._vrt = aligned(self._src, info)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._vrt, name)

    def close(self) -> None:
        self._vrt.close()
        self._src.close()


def inspect_target_pair(pair: ScenePair, bands: tuple[int, ...] | None,
                        percentiles: tuple[float, float]) -> tuple[SceneInfo, SceneInfo]:
    """``(photo info, target info)``: the target described on the photo's grid (its own bands,
    stretch and nodata).

    Raises:
        InputError: a missing target, a scene without CRS, or a target that does not overlap.
    """
    if pair.mask is None:
        raise InputError(f"{pair.image}: no target photo with the same name")
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), open_raster(pair.image) as img, \
            open_raster(pair.mask) as tgt:
        info = _photo_info(img, pair, bands, percentiles, "uint8")
        if not info.crs or tgt.crs is None:
            raise InputError(f"{pair.mask if tgt.crs is None else pair.image}: has no CRS; a target photo is placed "
                             "on the photo's grid by its georeference")
        with aligned(tgt, info) as vrt:
            chosen = choose_bands(vrt, bands)
            valid = vrt.dataset_mask(out_shape=(max(1, info.height // 16), max(1, info.width // 16)))
            if not valid.any():
                raise InputError(f"{pair.mask}: does not overlap photo {pair.image.name}")
            tinfo = dataclasses.replace(
                info, pair=ScenePair(pair.name, pair.mask, None), bands=chosen,
                stretch=compute_stretch(vrt, chosen, percentiles), has_nodata=True,
                photo_dtype=vrt.dtypes[chosen[0] - 1])
        return info, tinfo


def read_pair_window(img: Any, vrt: Any, info: SceneInfo, tinfo: SceneInfo, y: int, x: int, h: int, w: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(photo BGR, target BGR, valid)`` of a window: both 8-bit (stretched), valid where both are."""
    valid = read_valid(img, info, y, x, h, w) & read_valid(vrt, tinfo, y, x, h, w)
    a = read_photo(img, info, y, x, h, w, bgr=True)
    b = read_photo(vrt, tinfo, y, x, h, w, bgr=True)
    a[~valid] = 0
    b[~valid] = 0
    return a, b, valid


def read_native(ds: Any, y: int, x: int, size: int, bands: tuple[int, ...] | None) -> tuple[np.ndarray, list[int]]:
    """A tile of every (non-alpha) band, or ``bands``, in the dataset's own dtype (0 outside)."""
    chosen = list(bands or colour_bands(ds))
    out = np.full((len(chosen), size, size), ds.nodata or 0, dtype=ds.dtypes[chosen[0] - 1])
    y1, x1 = min(y + size, ds.height), min(x + size, ds.width)  # windows past the edge (--edge pad) are padded
    if y1 > y and x1 > x:  # (no boundless reads: a WarpedVRT does not allow them)
        out[:, : y1 - y, : x1 - x] = ds.read(chosen, window=Window(x, y, x1 - x, y1 - y))
    return out, chosen
