"""Reading any photo as 3-channel 8-bit RGB, and fitting it to a square tile.

``load_rgb8`` accepts JPEG, PNG, WebP, BMP and TIFF/GeoTIFF files in any of the usual forms and
returns ``(H, W, 3)`` uint8 RGB:

* EXIF orientation of phone photos is applied (the pixels are rotated as a viewer shows them);
* grayscale and 1-bit images become three equal channels; palette images are expanded;
* RGBA and LA images (and palette images with transparency) are composited on white;
* 16-bit PNG (gray or RGB) is scaled by ``v / 257`` (the full 16-bit range maps to 0–255);
* TIFF and GeoTIFF files are read with rasterio like ``p2ptools tile`` reads scenes: RGB of RGBN,
  alpha left out, and a per-image 2–98 percentile stretch for non-8-bit data (GeoTIFF values rarely
  span their type's range).

Every command reads images through :func:`load_rgb8` (tiling inputs, training pairs, prediction
inputs, evaluation), so alpha and 16-bit data are treated alike from training to evaluation.

Every failure (empty file, truncated or corrupt data, a non-image with an image extension) raises
:class:`~p2ptools.errors.InputError` naming the file.

Bounded images: before anything is decoded, the pixel count (width × height) is read from the
file's header (Pillow's ``Image.open`` reads only the header; TIFF/GeoTIFF: rasterio's dataset
``width``/``height``) and a file over the limit — by default ``DEFAULT_MAX_PIXELS`` = 16384² =
268,435,456 pixels, raised (or lowered) by ``--max-pixels`` or ``$P2PTOOLS_MAX_PIXELS`` — raises
:class:`ImageTooLargeError` naming it; folder commands list it with the unreadable files and go
on. Pillow's own bomb check is therefore off (``Image.MAX_IMAGE_PIXELS = None``), so that its
``DecompressionBombError`` never replaces this one-line message.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from p2ptools.config import FITS
from p2ptools.errors import InputError, P2PError
from p2ptools.prep.limits import check_pixels

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})


def list_images(root: Path, exclude: Path | None = None) -> list[Path]:
    """All files with an image extension under ``root`` (recursively, sorted, hidden folders skipped).

    Args:
        root: the folder to search.
        exclude: a folder to leave out (the output folder when it lies inside ``root``).

    Raises:
        InputError: if ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    skip = exclude.resolve() if exclude is not None else None
    found = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts[:-1]):
            continue
        if skip is not None and (p.resolve() == skip or skip in p.resolve().parents):
            continue
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            found.append(p)
    return found


def images_by_stem(folder: Path) -> dict[str, Path]:
    """The images directly in ``folder`` (not recursive), by file stem.

    Raises:
        InputError: if the folder does not exist, or two images share a stem (``x.png`` and ``x.jpg``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    out: dict[str, Path] = {}
    for p in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        if p.stem in out:
            raise InputError(f"{folder}: two images named {p.stem!r} ({out[p.stem].name}, {p.name})")
        out[p.stem] = p
    return out


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """``(H, W, 4)`` uint8 RGBA → ``(H, W, 3)`` uint8 RGB over a white background."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _from_opencv(path: Path) -> np.ndarray | None:
    """The fast path for the common cases: JPEG, and 8-bit RGB PNG without alpha (what p2ptools
    writes); None for every other file, which :func:`_from_pillow` reads.

    OpenCV's ``IMREAD_COLOR`` applies EXIF orientation and expands grayscale JPEG to three channels,
    so the result equals Pillow's for these files (tested), in two thirds of the time.
    """
    suffix = path.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        return None
    data = np.fromfile(str(path), dtype=np.uint8)
    raw = data[:26].tobytes()
    tail = data[-64:].tobytes()
    if suffix == ".png":
        # IHDR: bytes 24 (bit depth) and 25 (colour type 2 = RGB, no alpha, no palette); IEND at the end
        if len(raw) < 26 or raw[:8] != b"\x89PNG\r\n\x1a\n" or raw[24] != 8 or raw[25] != 2 or b"IEND" not in tail:
            return None
    elif raw[:2] != b"\xff\xd8" or b"\xff\xd9" not in tail:  # a truncated JPEG has no end marker:
        return None  # OpenCV would return it grey-filled, Pillow refuses it
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _from_pillow(path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                raw = str(im.tile[0][3]) if im.tile else ""
                if im.format == "PNG" and im.mode in ("RGB", "RGBA") and "16" in raw:
                    return _png16_rgb(path)
                im.load()
                im = ImageOps.exif_transpose(im)
                return _pillow_to_rgb8(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: cannot decode as an image ({exc})") from exc


def _pillow_to_rgb8(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im).astype(np.float64)
        return _gray_to_rgb(np.clip(arr / 257.0 + 0.5, 0, 255).astype(np.uint8))
    if mode == "F":
        arr = np.asarray(im).astype(np.float64)
        lo, hi = np.nanpercentile(arr, (2, 98)) if arr.size else (0.0, 1.0)
        return _gray_to_rgb(np.clip((arr - lo) / max(hi - lo, 1e-12) * 255 + 0.5, 0, 255).astype(np.uint8))
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        return _composite_on_white(np.asarray(im.convert("RGBA")))
    if mode in ("L", "1"):
        return _gray_to_rgb(np.asarray(im.convert("L")))
    return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def _png16_rgb(path: Path) -> np.ndarray:
    arr = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(f"{path}: cannot decode as an image")
    if arr.ndim == 3 and arr.shape[2] == 4:
        rgba = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
        return _composite_on_white(np.clip(rgba / 257.0 + 0.5, 0, 255).astype(np.uint8))
    rgb = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    return np.clip(rgb / 257.0 + 0.5, 0, 255).astype(np.uint8)


#: what the message of a GeoTIFF over the limit adds
TIF_HINT = ("; a raster this large is read in windows by p2ptools tile, and p2ptools predict RUN FILE OUT.tif "
            "translates it in windows")


def _from_rasterio(path: Path) -> np.ndarray:
    from rasterio.errors import RasterioError

    from p2ptools.prep.raster import choose_bands, compute_stretch, describe_error, open_raster, to_uint8

    with open_raster(path) as ds:
        check_pixels(path, ds.width, ds.height, TIF_HINT)
        try:
            bands = choose_bands(ds, None)
            data = to_uint8(ds.read(list(bands)), compute_stretch(ds, bands, (2.0, 98.0)))
            alpha = [i + 1 for i, ci in enumerate(ds.colorinterp) if ci.name == "alpha"]
            mask = ds.read(alpha[0]) if alpha else None
        except RasterioError as exc:
            raise InputError(f"{path}: cannot read: {describe_error(exc)}") from exc
    rgb = _gray_to_rgb(data[0]) if data.shape[0] == 1 else np.ascontiguousarray(np.moveaxis(data, 0, -1))
    if mask is not None and mask.dtype == np.uint8:
        rgb = _composite_on_white(np.dstack([rgb, mask]))
    return rgb


def load_rgb8(path: Path) -> np.ndarray:
    """Read any supported image as ``(H, W, 3)`` uint8 RGB (see the module docstring).

    Its pixel count is read from the header first: an image of more than :func:`max_pixels` pixels
    (default 16384² = 268,435,456; ``--max-pixels`` or ``$P2PTOOLS_MAX_PIXELS``) is never decoded.

    Raises:
        ImageTooLargeError: naming the file, if it has more pixels than the limit.
        InputError: naming the file, if it is empty, truncated, corrupt or not an image.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            return _from_rasterio(path)
        except InputError:
            raise
        except P2PError as exc:
            raise InputError(str(exc)) from exc
    width, height, _ = _pillow_header(path)
    check_pixels(path, width, height)
    fast = _from_opencv(path)
    return fast if fast is not None else _from_pillow(path)


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image as :func:`load_rgb8` returns it, from its header.

    EXIF orientations that rotate by 90° swap width and height.

    Raises:
        InputError: if the header cannot be read.
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        from p2ptools.prep.raster import open_raster

        try:
            with open_raster(path) as ds:
                return ds.width, ds.height
        except P2PError as exc:
            raise InputError(str(exc)) from exc
    w, h, orientation = _pillow_header(path, exif=True)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _pillow_header(path: Path, exif: bool = False) -> tuple[int, int, int]:
    """``(width, height, EXIF orientation)`` from the header alone (orientation 1 unless ``exif``).

    Raises:
        InputError: if the header cannot be read.
    """
    try:
        with Image.open(path) as im:
            return (*im.size, im.getexif().get(0x0112, 1) if exif else 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: cannot decode as an image ({exc})") from exc


def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize with area interpolation when shrinking and bicubic when growing (no-op when equal)."""
    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    shrinking = width * height < w * h
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def fit_square(img: np.ndarray, size: int, fit: str = "crop", pad_value: int = 0) -> np.ndarray:
    """Make a ``size × size`` image without squashing content (unless ``fit='stretch'``).

    Args:
        img: ``(H, W, 3)`` uint8.
        size: output side.
        fit: ``crop`` (centre-crop to a square, then resize), ``pad`` (pad the short side
            symmetrically with ``pad_value``, then resize) or ``stretch`` (resize, changing the
            aspect ratio).

    Returns:
        ``(size, size, 3)`` uint8.

    Raises:
        ValueError: for an unknown ``fit``.
    """
    h, w = img.shape[:2]
    if fit == "crop":
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        img = img[y0 : y0 + s, x0 : x0 + s]
    elif fit == "pad":
        s = max(h, w)
        top, left = (s - h) // 2, (s - w) // 2
        img = cv2.copyMakeBorder(img, top, s - h - top, left, s - w - left, cv2.BORDER_CONSTANT,
                                 value=(pad_value,) * 3)
    elif fit != "stretch":
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    return resize(np.ascontiguousarray(img), size, size)
