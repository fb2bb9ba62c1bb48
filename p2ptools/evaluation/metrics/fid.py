"""FID and KID: Inception-v3 pool features → statistics → distance (pytorch-fid's layering).

The network is the standard FID Inception-v3 (TensorFlow's graph as ported by pytorch-fid: patched
InceptionA/C/E blocks, 2048-d final average-pool features), loaded from the weights file
``pt_inception-2015-12-05-6726825d.pth`` found by :mod:`p2ptools.evaluation.weights` — never another
network. Images go in as float32 RGB in [0, 1], are resized to 299×299 with bilinear
interpolation (``align_corners=False``, no antialiasing) as pytorch-fid does, and scaled to
[-1, 1]. Everything runs in fp32.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from p2ptools.evaluation.weights import find_weights, load_state_dict

log = logging.getLogger(__name__)

FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
FEATURE_DIM = 2048


class _FIDInceptionA(torchvision.models.inception.InceptionA):
    """InceptionA with TensorFlow's average pooling (padding not counted)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([b1, b5, b3, bp], 1)


class _FIDInceptionC(torchvision.models.inception.InceptionC):
    """InceptionC with TensorFlow's average pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([b1, b7, bd, bp], 1)


class _FIDInceptionE(torchvision.models.inception.InceptionE):
    """InceptionE with TensorFlow's pooling: average (first block) or max (second block)."""

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__(in_channels)
        self.max_pool = max_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.max_pool:  # TensorFlow's FID graph uses max pooling here
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


def fid_inception_v3(state_dict: dict[str, torch.Tensor] | None = None) -> torchvision.models.Inception3:
    """The FID Inception-v3 architecture (1008 classes, no aux head), optionally with weights."""
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    net.Mixed_5b = _FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = _FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = _FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = _FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = _FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = _FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = _FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = _FIDInceptionE(1280, max_pool=False)
    net.Mixed_7c = _FIDInceptionE(2048, max_pool=True)
    if state_dict is not None:
        net.load_state_dict(state_dict)
    return net


#: images per forward pass on a CPU: small batches keep the activations in cache (benchmarks/fid.py)
CPU_CHUNK = 8
#: images per forward pass on a GPU: the whole batch, up to this many (~13 GiB of activations at 299²)
GPU_CHUNK = 256


def chunk_size(device: torch.device) -> int:
    """Images per forward pass of the FID network on ``device``: :data:`CPU_CHUNK` on a CPU, else
    :data:`GPU_CHUNK` (8 images at a time would leave a GPU idle between kernel launches)."""
    return CPU_CHUNK if device.type == "cpu" else GPU_CHUNK


def as_unit_float(x: torch.Tensor) -> torch.Tensor:
    """Images as float32 in [0, 1] on their own device: uint8 ``[0, 255]`` is converted there (send
    uint8 to a GPU, a quarter of the bytes of float32), float is cast to float32."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


#: feature dimension → number of leading layers of ``FIDFeatures.layers`` (pytorch-fid's blocks)
DIMS_TO_LAYERS: dict[int, int] = {64: 4, 192: 7, 768: 15, 2048: 19}


class FIDFeatures(nn.Module):
    """``(N, 3, H, W)`` RGB in [0, 1] (or uint8) → ``(N, dims)`` FID features (eval mode, fp32).

    Batches run in chunks of :func:`chunk_size` images for the device (``chunk`` overrides it).

    ``dims`` 2048 (the standard: final average pool), or 64 / 192 / 768 (earlier blocks, spatially
    averaged), as pytorch-fid's ``--dims``.
    """

    def __init__(self, inception: torchvision.models.Inception3, dims: int = FEATURE_DIM) -> None:
        super().__init__()
        if dims not in DIMS_TO_LAYERS:
            raise ValueError(f"dims must be one of {sorted(DIMS_TO_LAYERS)}, got {dims}")
        n = inception
        layers = [
            n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, nn.MaxPool2d(3, 2),
            n.Conv2d_3b_1x1, n.Conv2d_4a_3x3, nn.MaxPool2d(3, 2),
            n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d, n.Mixed_6e,
            n.Mixed_7a, n.Mixed_7b, n.Mixed_7c, nn.AdaptiveAvgPool2d(1),
        ]
        self.dims = dims
        self.channels_last = False
        self.chunk: int | None = None  # images per forward pass; None: chunk_size(device)
        self.body = nn.Sequential(*layers[: DIMS_TO_LAYERS[dims]])
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def optimize(self) -> FIDFeatures:
        """Fold each BatchNorm into its convolution and switch to channels-last memory.

        Inference only (eval-mode BatchNorm is an affine map, so folding is exact up to float
        rounding: relative differences ~1e-6, far below FID's precision). On CPU this halves the
        time per image (benchmarks/fid.py).
        """
        for m in self.modules():
            if isinstance(m, torchvision.models.inception.BasicConv2d) and isinstance(m.bn, nn.BatchNorm2d):
                m.conv = fuse_conv_bn_eval(m.conv, m.bn)
                m.bn = nn.Identity()
        self.channels_last = True
        return self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunk = self.chunk or chunk_size(x.device)
        chunks = x.split(chunk) if x.shape[0] > chunk else (x,)
        return torch.cat([self._features(c) for c in chunks])

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(as_unit_float(x), size=(299, 299), mode="bilinear", align_corners=False)  # (N, 3, 299, 299)
        x = 2 * x - 1
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.body(x)  # (N, dims, h, w)
        if x.shape[-1] != 1 or x.shape[-2] != 1:
            x = F.adaptive_avg_pool2d(x, 1)
        return x.flatten(1)  # (N, dims)


def load_fid_network(weights_dir: Path | None = None, dims: int = FEATURE_DIM, optimize: bool = True,
                     offline: bool | None = None) -> FIDFeatures:
    """The FID feature network with its weights found or downloaded (BatchNorm folded, channels-last
    unless ``optimize=False``).

    Raises:
        WeightsNotFound: offline and ``pt_inception-2015-12-05-6726825d.pth`` is not on disk (see
            :func:`p2ptools.evaluation.weights.find_weights`).
        WeightsDownloadError: the download failed.
    """
    net = FIDFeatures(fid_inception_v3(load_state_dict(find_weights(FID_WEIGHTS, weights_dir, offline))), dims)
    return net.optimize() if optimize else net


# --- statistics and distances (pure functions on arrays) -------------------------------------------

def activation_statistics(acts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (``np.cov``, rows are samples) of ``(N, D)`` features, in float64."""
    acts = np.asarray(acts, dtype=np.float64)
    if acts.ndim != 2 or acts.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors, got shape {acts.shape}")
    return acts.mean(axis=0), np.cov(acts, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance of two Gaussians: ``‖μ1 − μ2‖² + Tr(Σ1) + Tr(Σ2) − 2 Tr((Σ1 Σ2)^½)``.

    ``Tr((Σ1 Σ2)^½)`` is computed as a nuclear norm of covariance roots (:func:`trace_sqrt_product`)
    rather than with scipy's general ``sqrtm`` as pytorch-fid does. On well-posed statistics
    (more images than feature dimensions) the two agree to well under 1e-3 (tested against
    pytorch-fid); when the covariances are singular — a few hundred pix2pix test images in 2048
    dimensions — ``sqrtm`` returns complex or inaccurate roots (pytorch-fid then fails, or reports
    −2 for two identical sets), while this form stays exact: 0 for identical sets, never negative
    beyond rounding.

    Raises:
        ValueError: for mismatched shapes.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two sets of statistics have different dimensions")
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance matrix (eigenvalues below 0 from rounding clipped)."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr((Σ1 Σ2)^½)`` of two covariance matrices, stably: the nuclear norm (sum of singular values)
    of ``Σ1^½ Σ2^½``, whose squared singular values are the eigenvalues of ``Σ1 Σ2``.

    Unlike a general matrix square root of the (non-symmetric, often singular) product, this takes
    square roots only of the covariances' own eigenvalues, so rounding stays at the scale of the
    data: two identical sets give exactly ``Tr(Σ)``.
    """
    return float(np.linalg.svd(_psd_sqrt(sigma1) @ _psd_sqrt(sigma2), compute_uv=False).sum())


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef: float = 1.0) -> np.ndarray:
    """``k(x, y) = (x·y / d + coef)^degree`` — the KID kernel (Bińkowski et al. 2018)."""
    return (x @ y.T / x.shape[1] + coef) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD of two samples under :func:`polynomial_kernel`."""
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation of the unbiased MMD² over random subsets.

    ``subset_size`` is capped at the smaller sample; pix2pix test sets of a few hundred images give
    noisy (but unbiased) estimates, unlike FID, which is biased at small N.

    Returns:
        ``(mean, std)``: both NaN with fewer than 2 images on a side (the unbiased MMD² needs two);
        the std NaN when every subset is the whole of both sets (all draws are the same number,
        so their spread says nothing).
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        return math.nan, math.nan
    if size == real.shape[0] == fake.shape[0]:  # every subset is the whole set: one value, no spread
        return float(mmd2_unbiased(real, fake)), math.nan
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(real[rng.choice(real.shape[0], size, replace=False)],
                            fake[rng.choice(fake.shape[0], size, replace=False)]) for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))


@torch.inference_mode()
def get_activations(batches: Iterable[torch.Tensor], net: nn.Module, device: torch.device) -> np.ndarray:
    """Run ``net`` over batches of ``(N, 3, H, W)`` float [0, 1] or uint8 images; ``(total, D)`` float64
    features. Each batch is sent to ``device`` as it is (uint8: a quarter of float32's bytes) and made
    float there."""
    out = [net(as_unit_float(b.to(device, non_blocking=True))).double().cpu().numpy() for b in batches]
    return np.concatenate(out, axis=0) if out else np.zeros((0, getattr(net, "dims", FEATURE_DIM)))


def fid_from_activations(real: np.ndarray, fake: np.ndarray) -> float:
    """FID of two feature sets."""
    return frechet_distance(*activation_statistics(real), *activation_statistics(fake))


__all__ = ["FEATURE_DIM", "FID_WEIGHTS", "FIDFeatures", "activation_statistics", "fid_from_activations",
           "fid_inception_v3", "frechet_distance", "get_activations", "kernel_inception_distance",
           "load_fid_network", "mmd2_unbiased", "polynomial_kernel"]
