"""Per-image pixel metrics on the 0–255 scale: L1, L2 (MSE), PSNR, SSIM, optionally inside a mask.

Each is ``f(real, fake, mask) → float``; their names, descriptions and which way is better are in
:mod:`p2ptools.evaluation.metrics.registry`.
"""

from __future__ import annotations

import math

import numpy as np


def _pixels(real: np.ndarray, fake: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if real.shape != fake.shape:
        raise ValueError(f"images differ in shape: {real.shape} vs {fake.shape}")
    r, f = real.astype(np.float64), fake.astype(np.float64)
    if mask is None:
        return r, f
    if mask.shape != real.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {real.shape[:2]}")
    return r[mask], f[mask]


def l1(real: np.ndarray, fake: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error over pixels and channels (inside ``mask`` when given)."""
    r, f = _pixels(real, fake, mask)
    return float(np.abs(r - f).mean()) if r.size else math.nan


def l2(real: np.ndarray, fake: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error over pixels and channels (inside ``mask`` when given)."""
    r, f = _pixels(real, fake, mask)
    return float(((r - f) ** 2).mean()) if r.size else math.nan


def psnr(real: np.ndarray, fake: np.ndarray, mask: np.ndarray | None = None, peak: float = 255.0) -> float:
    """``10 · log10(peak² / MSE)``; ``inf`` when the images are identical."""
    mse = l2(real, fake, mask)
    if math.isnan(mse):
        return math.nan
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def ssim(real: np.ndarray, fake: np.ndarray, mask: np.ndarray | None = None) -> float:
    """SSIM of two ``(H, W, 3)`` uint8 images (scikit-image, Gaussian weights as Wang et al. 2004).

    With a mask, the SSIM map is averaged over the masked pixels only, with the same border crop
    (half a window) that scikit-image applies without a mask, so an all-true mask gives the
    unmasked value. Images under 11 px use the largest uniform window that fits; under 3 px SSIM is
    undefined (NaN).
    """
    from skimage.metrics import structural_similarity  # on first use: the CLI's help reads the registry

    if real.shape != fake.shape:
        raise ValueError(f"images differ in shape: {real.shape} vs {fake.shape}")
    side = min(real.shape[:2])
    if side < 3:
        return math.nan
    kwargs: dict = dict(channel_axis=2 if real.ndim == 3 else None, data_range=255.0, gaussian_weights=True,
                        sigma=1.5, use_sample_covariance=False)
    win = 11  # skimage's Gaussian window for sigma 1.5 (truncate 3.5): 2·int(3.5·1.5 + 0.5) + 1
    if side < 11:  # smaller images get a uniform window as large as fits
        win = side if side % 2 else side - 1
        kwargs.update(gaussian_weights=False, win_size=win)
    if mask is None:
        return float(structural_similarity(real, fake, **kwargs))
    _, smap = structural_similarity(real, fake, full=True, **kwargs)
    smap = smap.mean(axis=2) if smap.ndim == 3 else smap
    pad = (win - 1) // 2
    inner = np.zeros_like(mask, dtype=bool)
    inner[pad : mask.shape[0] - pad, pad : mask.shape[1] - pad] = True
    keep = mask & inner
    return float(smap[keep].mean()) if keep.any() else math.nan
