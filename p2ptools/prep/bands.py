"""N-band GeoTIFF tile pairs (``tile --format tif``): to the network's range and back.

A split of such a dataset holds ``A/<tile>.tif`` and ``B/<tile>.tif``. A label half (one band of
class values) enters the network colorized with the palette, as in PNG pairs, and leaves it decoded
to the nearest palette colour; a photo half keeps all its bands and its dtype: each band is mapped
linearly from the dataset's ``[low, high]`` (per-band percentiles of the training photos of that
half, stored by ``tile`` in the data contract, ``contract["tif"]["A"|"B"]``; 0 and 255 for 8-bit
photos, which makes it the PNG mapping) to
``[-1, 1]``, and back on output, rounded and clipped to the dtype. So a model trained on 16-bit
RGBN tiles reads 4 bands and writes 4 bands of uint16.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from p2ptools.errors import InputError

#: percentiles of the training photos mapped to -1 and 1 (wide, so few target values saturate)
NORM_PERCENTILES = (0.5, 99.5)


def check_label_values(values: np.ndarray, allowed: list[int], source: str) -> None:
    """Refuse class values that are not in the palette (and fractional or non-finite values).

    Raises:
        PaletteError: naming ``source``, the first ten unknown values and their count.
    """
    from p2ptools.errors import PaletteError

    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if not finite.all() or (values[finite] != np.round(values[finite])).any():
            raise PaletteError(f"{source}: label values must be whole class numbers; found fractional or non-finite "
                               "values (a photo, or a resampled label raster?)")
    if values.dtype == np.uint8 or values.dtype == bool:
        present = np.flatnonzero(np.bincount(values.ravel().astype(np.int64), minlength=1))
    else:
        present = np.unique(values)
    unknown = np.setdiff1d(present, np.asarray(allowed, dtype=present.dtype if present.size else np.int64))
    if unknown.size:
        shown = ", ".join(str(int(v)) for v in unknown[:10]) + (f" … ({unknown.size} values)" if unknown.size > 10
                                                               else "")
        raise PaletteError(f"{source}: label value(s) {shown} are not in the palette (classes "
                           f"{', '.join(str(v) for v in sorted(allowed))}); pass the palette the labels were made with")


@dataclass(frozen=True)
class HalfSpec:
    """How one half of a GeoTIFF pair maps to network channels.

    Args:
        role: ``label`` or ``photo``.
        channels: network channels (3 for a colorized label, the band count for a photo).
        dtype: the half's data type on disk.
        low: per-band value mapped to -1 (photos).
        high: per-band value mapped to 1 (photos).
        palette: the label palette (labels).
    """

    role: str
    channels: int
    dtype: str
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    palette: dict[str, Any] | None = None

    def encode(self, data: np.ndarray, source: str = "labels") -> np.ndarray:
        """``(bands, H, W)`` values from disk → ``(H, W, C)`` float32 in the network's range.

        Raises:
            PaletteError: label values outside the palette (named with ``source``), which would
                otherwise turn into the background colour or index past the colour table.
        """
        if self.role == "label":
            classes = self.palette["classes"]  # type: ignore[index]
            check_label_values(data[0], [c["value"] for c in classes], source)
            lut = np.zeros((max(c["value"] for c in classes) + 1, 3), np.float32)
            for c in classes:
                lut[c["value"]] = c["color"]
            return np.take(lut, data[0].astype(np.int64), axis=0) / 127.5 - 1.0
        low = np.asarray(self.low, np.float32)[:, None, None]
        high = np.asarray(self.high, np.float32)[:, None, None]
        x = (data.astype(np.float32) - low) / np.maximum(high - low, 1e-6) * 2.0 - 1.0
        return np.ascontiguousarray(np.moveaxis(x, 0, -1))

    def decode(self, net: np.ndarray) -> np.ndarray:
        """``(C, H, W)`` network output in [-1, 1] → ``(bands, H, W)`` values of ``dtype``."""
        if self.role == "label":
            from p2ptools.prep.labels import nearest_class, palette_from_dict

            return nearest_class((net + 1.0) * 127.5, palette_from_dict(self.palette, "contract"))[None]
        low = np.asarray(self.low, np.float64)[:, None, None]
        high = np.asarray(self.high, np.float64)[:, None, None]
        x = (net.astype(np.float64) + 1.0) / 2.0 * (high - low) + low
        info = np.iinfo(self.dtype) if np.issubdtype(np.dtype(self.dtype), np.integer) else None
        if info is not None:
            x = np.clip(np.rint(x), info.min, info.max)
        return x.astype(self.dtype)


def is_tif_split(folder: Path) -> bool:
    """Whether ``folder`` holds GeoTIFF tile pairs (``A/*.tif``)."""
    return (Path(folder) / "A").is_dir() and any((Path(folder) / "A").glob("*.tif"))


def tif_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """``(A, B)`` GeoTIFF pairs of a split, by name.

    Raises:
        InputError: listing A tiles without a B tile.
    """
    folder = Path(folder)
    a_files = sorted((folder / "A").glob("*.tif"))
    missing = [a.name for a in a_files if not (folder / "B" / a.name).is_file()]
    if missing:
        raise InputError(f"{folder}: {len(missing)} A tile(s) without a B tile, e.g. {', '.join(missing[:5])}")
    return [(a, folder / "B" / a.name) for a in a_files]


def half_specs(contract: dict[str, Any]) -> dict[str, HalfSpec]:
    """The :class:`HalfSpec` of halves ``A`` and ``B`` from a data contract written by ``tile --format tif``.

    Raises:
        InputError: if the contract has no GeoTIFF record (not made by ``tile --format tif``).
    """
    tif = contract.get("tif")
    if not tif:
        raise InputError("the dataset's data contract has no GeoTIFF record: tile it with p2ptools tile --format tif")
    specs = {}
    for half in ("A", "B"):
        h = tif[half]
        if h["role"] == "label":
            specs[half] = HalfSpec("label", 3, h["dtype"], palette=contract["palette"])
        else:
            specs[half] = HalfSpec("photo", len(h["low"]), h["dtype"], tuple(h["low"]), tuple(h["high"]))
    return specs


def read_tif(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """A tile's ``(bands, H, W)`` values and its georeferencing profile.

    Raises:
        ImageTooLargeError: naming the file if it has more pixels than the limit of images
            (:func:`p2ptools.prep.limits.max_pixels`, default 16384² = 268,435,456); it is not read.
        InputError: naming the file if it cannot be read.
    """
    import rasterio

    from p2ptools.prep.limits import check_pixels
    from p2ptools.runtime.names import gdal_name

    try:
        with gdal_name(Path(path)) as name, rasterio.open(name) as ds:  # any file name
            check_pixels(path, ds.width, ds.height)
            return ds.read(), {"crs": ds.crs, "transform": ds.transform}
    except rasterio.errors.RasterioError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc


def photo_statistics(files: list[Path], dtype: str, nodata: float | None) -> tuple[list[float], list[float]]:
    """Per-band ``NORM_PERCENTILES`` over ``files`` (valid pixels), or 0/255 for 8-bit photos."""
    first, _ = read_tif(files[0])
    if dtype == "uint8":
        return [0.0] * first.shape[0], [255.0] * first.shape[0]
    stack = np.concatenate([read_tif(f)[0].reshape(first.shape[0], -1)[:, ::7] for f in files], axis=1)
    stack = stack.astype(np.float64)
    valid = np.isfinite(stack).all(axis=0)  # NaN/inf pixels (and a NaN nodata) are in no statistic
    if nodata is not None and np.isfinite(nodata):
        valid &= (stack != nodata).all(axis=0)
    lo, hi = np.percentile(stack[:, valid], NORM_PERCENTILES, axis=1) if valid.any() else (stack.min(1), stack.max(1))
    hi = np.where(hi > lo, hi, lo + 1.0)
    return [float(v) for v in lo], [float(v) for v in hi]
