"""GeoTIFF tile predictions scored on all their bands (``evaluate --real SPLIT`` of ``tile --format tif``).

When ``--real`` is a split of GeoTIFF tile pairs (``A/`` and ``B/``), the target half's tiles and
the predictions (``predict RUN SPLIT OUT``) are read in their own dtype with all their bands. Each
photo band is put on a 0–255 scale by the dataset's range — the per-band ``low``/``high`` of the
data contract that ``tile`` wrote into ``dataset.json`` (0/255 for 8-bit photos, so the numbers
are those of PNG pairs) — *without* clipping, and L1, L2, PSNR (peak 255) and SSIM (over all
bands, data range 255) are computed on every band; ``l1_band1`` … give the L1 of each band. Label
targets are compared as their palette colours, as in PNG pairs.

The networks made for RGB photos (FID, KID, LPIPS, VGG, FCN) and the report's thumbnails see an
RGB view: bands 1–3 (R, G, B of RGBN), or band 1 as gray, clipped to 0–255.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from p2ptools.errors import InputError
from p2ptools.prep.bands import HalfSpec, half_specs, is_tif_split, read_tif
from p2ptools.runtime.output import DATASET_FILE


@dataclass(frozen=True)
class NativeSplit:
    """A split of GeoTIFF tile pairs and how its halves map to the 0–255 scale.

    Args:
        folder: the split (``A/``, ``B/``).
        target: the half holding the targets (``A`` or ``B``).
        specs: the :class:`~p2ptools.prep.bands.HalfSpec` of each half.
    """

    folder: Path
    target: str
    specs: dict[str, HalfSpec]

    @property
    def source(self) -> str:
        """The half the model read (the other one)."""
        return "A" if self.target == "B" else "B"

    def scaled(self, half: str, data: np.ndarray) -> np.ndarray:
        """``(bands, H, W)`` values of ``half`` → ``(H, W, C)`` float32 on the 0–255 scale (not clipped)."""
        return (self.specs[half].encode(data) + 1.0) * 127.5

    def per_band(self) -> bool:
        """Whether per-band columns are reported (photo targets of more than one band)."""
        spec = self.specs[self.target]
        return spec.role == "photo" and spec.channels > 1


def find_native_split(real: Path, target: str) -> NativeSplit | None:
    """The :class:`NativeSplit` of ``real`` if it is a split of GeoTIFF tile pairs, else None.

    Raises:
        InputError: if the split has no data contract with a GeoTIFF record above it.
    """
    real = Path(real)
    if not is_tif_split(real):
        return None
    for meta_path in (real / DATASET_FILE, real.parent / DATASET_FILE):
        if meta_path.is_file():
            contract = json.loads(meta_path.read_text()).get("contract") or {}
            if contract.get("tif"):
                return NativeSplit(real, target, half_specs(contract))
    raise InputError(f"{real}: a split of GeoTIFF tiles without its dataset.json (made by p2ptools tile --format "
                     "tif): the bands' ranges are needed to score it")


def rgb_view(scaled: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` 0–255-scale values → ``(H, W, 3)`` uint8: channels 1–3, or channel 1 as gray."""
    rgb = scaled[..., :3] if scaled.shape[-1] >= 3 else np.repeat(scaled[..., :1], 3, axis=-1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def load_pair(split: NativeSplit, real: Path, fake: Path) -> dict[str, Any]:
    """The evaluation item of one tile: RGB views (``real``, ``fake``, the input as ``label``) for the
    networks and thumbnails, and every band on the 0–255 scale (``real_all``, ``fake_all``).

    Raises:
        InputError: naming the prediction if its bands, dtype or size differ from the target's.
    """
    target, _ = read_tif(real)
    pred, _ = read_tif(fake)
    spec = split.specs[split.target]
    if pred.shape != target.shape or pred.dtype != target.dtype:
        raise InputError(f"{fake.name}: {pred.shape[0]} band(s) of {pred.dtype}, {pred.shape[2]}×{pred.shape[1]}; "
                         f"the target {real} has {target.shape[0]} of {target.dtype}, "
                         f"{target.shape[2]}×{target.shape[1]}")
    real_all, fake_all = split.scaled(split.target, target), split.scaled(split.target, pred)
    item: dict[str, Any] = {"real": rgb_view(real_all), "fake": rgb_view(fake_all)}
    if spec.role == "photo":
        item.update(real_all=real_all, fake_all=fake_all)
    source = split.folder / split.source / real.name
    if source.is_file():
        item["label"] = rgb_view(split.scaled(split.source, read_tif(source)[0]))
    return item
