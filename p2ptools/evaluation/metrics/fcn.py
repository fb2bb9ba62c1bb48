"""FCN-score (Isola et al. 2017, sec. 4.2): can a segmenter parse generated images into their labels?

A segmentation network trained on real photos labels the generated photos; the predicted label
maps are compared with the input labels. The scores of the paper's tables, from a confusion matrix
``C[true, predicted]`` summed over all images:

* per-pixel accuracy ``Σ_k C[k,k] / Σ C``;
* mean class accuracy: the mean over classes present in the labels of ``C[k,k] / Σ_j C[k,j]``;
* mean class IoU: the mean over classes present in labels or predictions of
  ``C[k,k] / (Σ_j C[k,j] + Σ_j C[j,k] − C[k,k])``.

The same scores of the segmenter on the real photos are the "ground truth" upper bound row.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, n_classes: int, ignore: int | None = None) -> np.ndarray:
    """``(K, K)`` int64 counts ``C[true, predicted]`` of two label maps of class indices 0..K−1."""
    if labels.shape != pred.shape:
        raise ValueError(f"label maps differ in shape: {labels.shape} vs {pred.shape}")
    t, p = labels.ravel().astype(np.int64), pred.ravel().astype(np.int64)
    keep = (t >= 0) & (t < n_classes) & (p >= 0) & (p < n_classes)
    if ignore is not None:
        keep &= t != ignore
    return np.bincount(t[keep] * n_classes + p[keep], minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def scores(conf: np.ndarray) -> dict[str, float]:
    """Per-pixel accuracy, mean class accuracy and mean class IoU of a confusion matrix."""
    conf = conf.astype(np.float64)
    total = conf.sum()
    diag = np.diag(conf)
    rows, cols = conf.sum(axis=1), conf.sum(axis=0)
    present = rows > 0
    union = rows + cols - diag
    seen = union > 0
    return {
        "per_pixel_acc": float(diag.sum() / total) if total else float("nan"),
        "mean_class_acc": float((diag[present] / rows[present]).mean()) if present.any() else float("nan"),
        "mean_class_iou": float((diag[seen] / union[seen]).mean()) if seen.any() else float("nan"),
    }


def per_class(conf: np.ndarray, names: list[str]) -> list[dict[str, float | str]]:
    """Accuracy and IoU of each class (NaN for a class absent from labels and predictions)."""
    conf = conf.astype(np.float64)
    diag, rows, cols = np.diag(conf), conf.sum(axis=1), conf.sum(axis=0)
    out: list[dict[str, float | str]] = []
    for k, name in enumerate(names):
        union = rows[k] + cols[k] - diag[k]
        out.append({"class": name, "acc": diag[k] / rows[k] if rows[k] else float("nan"),
                    "iou": diag[k] / union if union else float("nan"), "pixels": rows[k]})
    return out
