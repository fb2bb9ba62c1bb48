"""Aligned A|B dataset folders as files: the images of a split, whether a folder holds any, and the two
halves of an A|B image. Training reads its samples and prediction its inputs through these."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from p2ptools.errors import InputError
from p2ptools.prep.images import IMAGE_EXTENSIONS, load_rgb8


def list_split(root: Path, split: str | None) -> list[Path]:
    """Images of ``root/split`` (or ``root`` when ``split`` is None), sorted.

    Raises:
        InputError: if the folder is missing or holds no images.
    """
    folder = Path(root) / split if split else Path(root)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder (expected an aligned dataset: train/ val/ test/ of A|B images)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"{folder}: no images")
    return files


def has_images(folder: Path) -> bool:
    """Whether ``folder`` exists and holds at least one image (a split may be empty after filtering)."""
    from p2ptools.prep.bands import is_tif_split

    folder = Path(folder)
    return folder.is_dir() and (is_tif_split(folder) or any(p.suffix.lower() in IMAGE_EXTENSIONS
                                                            for p in folder.iterdir() if p.is_file()))


def read_ab(path: Path, direction: str = "AtoB") -> tuple[np.ndarray, np.ndarray]:
    """Read an A|B image and return ``(input, target)`` RGB uint8 halves (swapped for ``BtoA``).

    The image is read by :func:`p2ptools.prep.images.load_rgb8`, the reader of every command (alpha
    composited on white, 16-bit scaled by ``v / 257``).

    Raises:
        InputError: if the file cannot be decoded or its width is odd.
    """
    rgb = load_rgb8(Path(path))
    w = rgb.shape[1]
    if w % 2:
        raise InputError(f"{path}: width {w} is odd; not an A|B image")
    a, b = rgb[:, : w // 2], rgb[:, w // 2 :]
    return (a, b) if direction == "AtoB" else (b, a)
