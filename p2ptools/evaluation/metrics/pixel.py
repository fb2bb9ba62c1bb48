"""Per-image pixel metrics on the 0–255 scale: L1, L2 (MSE), PSNR, SSIM, MS-SSIM, optionally inside a mask.

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


#: MS-SSIM's weights of its 5 scales, finest first (Wang, Simoncelli and Bovik 2003)
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: the shortest side MS-SSIM is defined for: an 11-px window must fit 4 halvings over (pytorch-msssim's check)
MS_SSIM_MIN_SIDE = (11 - 1) * 2**4 + 1


def _gaussian_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """``x`` ``(H, W, C)`` filtered by the separable ``window`` along H and W, valid part only (no padding)."""
    from scipy.ndimage import correlate1d  # on first use, like scikit-image

    r = len(window) // 2
    x = correlate1d(x, window, axis=0, mode="constant")[r : x.shape[0] - r]
    return correlate1d(x, window, axis=1, mode="constant")[:, r : x.shape[1] - r]


def _halve(x: np.ndarray) -> np.ndarray:
    """2×2 average pooling of ``(H, W, C)``; an odd side is padded with one zero each end first, the zeros
    counted (``avg_pool2d(kernel_size=2, padding=side % 2)``, as pytorch-msssim between scales)."""
    for axis in (0, 1):
        if x.shape[axis] % 2:
            pad = [(0, 0)] * x.ndim
            pad[axis] = (1, 1)
            x = np.pad(x, pad)
        n = x.shape[axis] // 2 * 2
        x = (x.take(np.arange(0, n, 2), axis) + x.take(np.arange(1, n, 2), axis)) / 2
    return x


def _ssim_cs(x: np.ndarray, y: np.ndarray, window: np.ndarray, peak: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel means of the SSIM map and of its contrast-structure map ``cs`` (Wang et al. 2004)."""
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_x, mu_y = _gaussian_valid(x, window), _gaussian_valid(y, window)
    var_x = _gaussian_valid(x * x, window) - mu_x**2
    var_y = _gaussian_valid(y * y, window) - mu_y**2
    cov = _gaussian_valid(x * y, window) - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
    return ssim_map.mean(axis=(0, 1)), cs.mean(axis=(0, 1))


def ms_ssim(real: np.ndarray, fake: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Multi-scale SSIM of two ``(H, W[, C])`` images on the 0–255 scale, as pytorch-msssim's
    ``ms_ssim(X, Y, data_range=255, size_average=False)``.

    Per channel: ``∏ₛ relu(csₛ)^wₛ`` over the 4 finer scales times ``relu(ssim)^w₅`` at the
    coarsest, with the weights :data:`MS_SSIM_WEIGHTS`, a Gaussian window of 11 px, σ 1.5, filtered
    without padding, K1 0.01, K2 0.03, and 2×2 average pooling between scales; then the mean over
    channels. NaN for images under :data:`MS_SSIM_MIN_SIDE` (161) px on the short side, and with a
    mask (MS-SSIM averages whole maps at every scale: it is not defined inside a region).

    Raises:
        ValueError: if the images differ in shape.
    """
    if real.shape != fake.shape:
        raise ValueError(f"images differ in shape: {real.shape} vs {fake.shape}")
    if mask is not None or min(real.shape[:2]) < MS_SSIM_MIN_SIDE:
        return math.nan
    coords = np.arange(11, dtype=np.float64) - 5
    window = np.exp(-(coords**2) / (2 * 1.5**2))
    window /= window.sum()
    x, y = real.astype(np.float64), fake.astype(np.float64)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    value = np.ones(x.shape[2])
    for i, weight in enumerate(MS_SSIM_WEIGHTS):
        ssim_c, cs_c = _ssim_cs(x, y, window, 255.0)
        last = i == len(MS_SSIM_WEIGHTS) - 1
        value *= np.maximum(ssim_c if last else cs_c, 0.0) ** weight
        if not last:
            x, y = _halve(x), _halve(y)
    return float(value.mean())
