"""The metrics of ``p2ptools evaluate``: one registry, from which everything about a metric reads.

A new metric is one :class:`MetricSpec` entry in :data:`METRICS` (and, for a pixel metric, its
function of two arrays, e.g. in :mod:`~p2ptools.evaluation.metrics.pixel`). ``evaluate`` computes
the per-image pixel metrics from :attr:`MetricSpec.function`, validates ``--metrics`` and writes
each metric's note into ``summary.csv`` and ``evaluate.json`` from here; the report page sorts and
draws its arrows from :attr:`MetricSpec.higher_is_better` and rounds with
:attr:`MetricSpec.decimals`; the CLI's ``--metrics`` choices and help list :data:`METRICS`; the
``weights`` command says which metrics need each file from :attr:`MetricSpec.weights`.

A metric may write more columns than its name (``l1_band2`` of GeoTIFF bands, ``vgg_relu3_4``,
``fcn_mean_class_iou_ground_truth``): :attr:`MetricSpec.columns` names them as patterns, and
:func:`spec_of` finds a column's metric by its exact name or one of those patterns — never by prefix,
so ``ms_ssim`` is not ``ssim``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from p2ptools.errors import ConfigError
from p2ptools.evaluation.metrics import pixel

#: ``f(real, fake, mask) → value`` of a pixel metric: ``(H, W[, C])`` arrays on the 0–255 scale.
PixelFunction = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], float]


@dataclass(frozen=True)
class MetricSpec:
    """One metric of ``p2ptools evaluate``.

    Args:
        name: the ``--metrics`` name, and the column it writes (unless ``column`` says otherwise).
        per: ``image`` (a value per pair in ``per_image.csv``, summarised) or ``set`` (once per set).
        higher_is_better: whether a larger value means a better image (the report's arrows and
            worst-first sort).
        description: what the number is, with its scale: the note of ``summary.csv`` and the report.
        help: a few words for ``evaluate --help``.
        function: for a pixel metric, ``f(real, fake, mask) → float``; None for a metric computed
            from a network's features by :mod:`p2ptools.evaluation.evaluate` (VGG, LPIPS, FID, KID, FCN).
        weights: the pretrained files it needs (names in
            :data:`p2ptools.evaluation.weights.KNOWN_WEIGHTS`).
        decimals: decimal places shown on the report page (files keep every digit).
        column: its main column, when not ``name`` (``vgg`` writes ``vgg_cos``).
        columns: regular expressions of the further columns it writes (full match).
        undefined: when a value is NaN, in words: the summary's note counts such images.
    """

    name: str
    per: Literal["image", "set"]
    higher_is_better: bool
    description: str
    help: str
    function: PixelFunction | None = None
    weights: tuple[str, ...] = ()
    decimals: int = 4
    column: str = ""
    columns: tuple[str, ...] = ()
    undefined: str = ""

    @property
    def main_column(self) -> str:
        """The column that holds the metric's value (its name unless ``column`` is set)."""
        return self.column or self.name

    def writes(self, column: str) -> bool:
        """Whether ``column`` of a table is this metric's (its main column or one of ``columns``)."""
        return column == self.main_column or any(re.fullmatch(p, column) for p in self.columns)


_INCEPTION = "pt_inception-2015-12-05-6726825d.pth"
_FCN_COLUMNS = r"fcn_(per_pixel_acc|mean_class_acc|mean_class_iou)(_ground_truth)?"
_EMPTY_MASK = "an empty mask"

METRICS: dict[str, MetricSpec] = {m.name: m for m in (
    MetricSpec("l1", "image", False, "mean absolute error, 0–255 scale", "mean absolute error",
               pixel.l1, decimals=3, columns=(r"l1_band\d+",), undefined=_EMPTY_MASK),
    MetricSpec("l2", "image", False, "mean squared error, 0–255 scale", "mean squared error", pixel.l2,
               decimals=2, undefined=_EMPTY_MASK),
    MetricSpec("psnr", "image", True, "peak signal-to-noise ratio in dB, peak 255 (inf for identical images)",
               "PSNR in dB", pixel.psnr, decimals=2, undefined=_EMPTY_MASK),
    MetricSpec("ssim", "image", True, "structural similarity (scikit-image, Gaussian 11×11 window σ 1.5, data "
               "range 255, RGB channels)", "structural similarity", pixel.ssim,
               undefined="images under 3 px on the short side, or an empty mask"),
    MetricSpec("ms_ssim", "image", True, "multi-scale structural similarity (5 scales, weights 0.0448 0.2856 0.3001 "
               "0.2363 0.1333, Gaussian 11 window σ 1.5, data range 255, RGB channels averaged; as pytorch-msssim)",
               "multi-scale SSIM, images of 161 px and more", pixel.ms_ssim,
               undefined="images under 161 px on the short side, or --mask-dir (not defined inside a mask)"),
    MetricSpec("vgg", "image", True, "VGG19 feature cosine per spatial position, mean over relu1_2, relu2_2, "
               "relu3_4, relu4_4, relu5_4", "VGG19 feature cosine", weights=("vgg19-dcbb9e9d.pth",),
               column="vgg_cos", columns=(r"vgg_relu\d+_\d+",)),
    MetricSpec("lpips", "image", False, "LPIPS v0.1 (AlexNet, Zhang et al. 2018): learned perceptual distance, "
               "lower is closer, 0 = identical", "learned perceptual distance",
               weights=("alexnet-owt-7be5be79.pth", "lpips-v0.1-alex.pth")),
    MetricSpec("fid", "set", False, "Fréchet Inception distance (pytorch-fid network, 2048-d pool features, fp32, "
               "bilinear resize to 299); biased upwards at small n: compare only at equal n, prefer KID for a few "
               "hundred images", "Fréchet Inception distance", weights=(_INCEPTION,), decimals=2),
    MetricSpec("kid", "set", False, "kernel Inception distance ×1 (unbiased MMD², cubic polynomial kernel), mean ± "
               "std over subsets", "kernel Inception distance", weights=(_INCEPTION,), decimals=5),
    MetricSpec("fcn", "set", True, "FCN-score: per-pixel accuracy, mean class accuracy and IoU of a segmenter",
               "FCN-score, needs --segmenter", column="fcn_per_pixel_acc", columns=(_FCN_COLUMNS,), decimals=3),
)}

#: what ``evaluate`` computes when no ``--metrics`` are given
DEFAULT_METRICS: tuple[str, ...] = ("l1", "l2", "psnr", "ssim")


def spec_of(column: str) -> MetricSpec | None:
    """The metric that writes ``column`` (its name, main column or a pattern of its columns), or None."""
    if column in METRICS:
        return METRICS[column]
    return next((m for m in METRICS.values() if m.writes(column)), None)


def higher_is_better(column: str) -> bool:
    """Whether a larger value in ``column`` means a better image (False for columns of no metric)."""
    spec = spec_of(column)
    return spec is not None and spec.higher_is_better


def pixel_metrics(names: set[str] | list[str] | tuple[str, ...]) -> list[MetricSpec]:
    """The pixel metrics (those with a function) among ``names``, in the registry's order."""
    return [m for m in METRICS.values() if m.function is not None and m.name in names]


def check_names(names: list[str] | tuple[str, ...]) -> None:
    """Check ``--metrics`` names against the registry.

    Raises:
        ConfigError: naming the unknown names and every known one, or when ``names`` is empty.
    """
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    if not names:
        raise ConfigError("no metrics asked for")
