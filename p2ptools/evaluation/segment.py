"""``p2ptools train-fcn`` and the segmenter behind the FCN-score.

No pretrained segmenter can be downloaded here, so p2ptools trains one on the *real* photos →
labels of an aligned dataset: a compact U-Net (:class:`SegUNet`), or torchvision's FCN-ResNet50
when its weights are on disk. Label images are colour maps; they are decoded to classes with a
palette: the one in the dataset's ``dataset.json`` (``p2ptools tile`` writes it), a palette file or
built-in name, or ``kmeans:K`` — K colours found by k-means in the training labels, for datasets
such as the pix2pix facades whose label colours come without a palette. Decoding takes the nearest
palette colour, so JPEG-blurred labels decode correctly.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from p2ptools.config import HALVES
from p2ptools.errors import ConfigError, InputError
from p2ptools.evaluation.metrics.fcn import confusion_matrix, per_class, scores
from p2ptools.prep.dataset import has_images, list_split
from p2ptools.prep.images import load_rgb8
from p2ptools.prep.labels import Palette, decolorize, load_palette, palette_from_dict
from p2ptools.runtime import door
from p2ptools.runtime.device import select_device
from p2ptools.runtime.output import DATASET_FILE, atomic_write_bytes, atomic_write_text, read_dataset_json
from p2ptools.runtime.progress import Ticker, duration, report
from p2ptools.runtime.progress import bar as progress_bar

log = logging.getLogger(__name__)

SEG_FORMAT = "p2ptools-segmenter"


class SegUNet(nn.Module):
    """A compact U-Net for semantic segmentation: (conv3×3-BN-ReLU)×2 per level, max-pool down,
    bilinear up + skip concatenation, 1×1 classifier.

    Args:
        n_classes: output classes.
        base: channels of the first level (doubling per level).
        depth: poolings; inputs must be multiples of ``2**depth``.
    """

    def __init__(self, n_classes: int, base: int = 32, depth: int = 4) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        chans = [base * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList([block(3 if i == 0 else chans[i - 1], chans[i]) for i in range(depth)])
        self.bottom = block(chans[depth - 1], chans[depth])
        self.up = nn.ModuleList([block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for blk in self.down:
            x = blk(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)  # (B, C_depth, H / 2**depth, W / 2**depth)
        for blk in self.up:
            skip = skips.pop()
            x = blk(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        return self.head(x)  # (B, n_classes, H, W) logits


def build_segmenter(arch: str, n_classes: int, backbone_weights: Path | None = None) -> nn.Module:
    """``unet`` (:class:`SegUNet`) or ``fcn_resnet50`` (torchvision; ImageNet backbone weights from a file).

    Raises:
        ConfigError: for an unknown architecture.
    """
    if arch == "unet":
        return SegUNet(n_classes)
    if arch == "fcn_resnet50":
        import torchvision

        net = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None,
                                                           num_classes=n_classes, aux_loss=False)
        if backbone_weights is not None:
            from p2ptools.evaluation.weights import load_state_dict

            missing = net.backbone.load_state_dict(load_state_dict(backbone_weights), strict=False)
            log.info("loaded backbone weights from %s (%d keys not used)", backbone_weights,
                     len(missing.unexpected_keys))
        return net
    raise ConfigError(f"unknown segmenter architecture {arch!r}; choose unet or fcn_resnet50")


def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = net(x)
    return out["out"] if isinstance(out, dict) else out


def _normalise(batch: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406], device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=batch.device).view(1, 3, 1, 1)
    return (batch - mean) / std


# --- palettes and labels --------------------------------------------------------------------------

def kmeans_palette(label_images: list[np.ndarray], k: int, seed: int = 0) -> Palette:
    """A palette of the ``k`` dominant colours of label images (k-means in RGB on a pixel sample)."""
    rng = np.random.default_rng(seed)
    pixels = np.concatenate([img.reshape(-1, 3)[rng.choice(img.shape[0] * img.shape[1], 2000)]
                             for img in label_images]).astype(np.float32)
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 0.5)
    _, assign, centers = cv2.kmeans(pixels, k, None, criteria, 5, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(assign.ravel(), minlength=k)
    order = np.argsort(-counts)
    classes = [{"value": i, "name": f"class_{i}", "color": [int(round(c)) for c in centers[j]]}
               for i, j in enumerate(order)]
    return palette_from_dict({"name": f"kmeans{k}", "background": 0, "classes": classes})


def resolve_labels(root: Path, palette: str | None, label_side: str | None, files: list[Path]
                   ) -> tuple[Palette, str]:
    """The palette and the label half (``A``/``B``) of an aligned dataset.

    From ``dataset.json`` when present (``p2ptools tile``), else from the arguments.

    Raises:
        ConfigError: when neither says it.
    """
    meta = read_dataset_json(root)
    side = label_side
    if side is None and meta is not None:
        side = "A" if meta.get("A") == "label" else ("B" if meta.get("B") == "label" else None)
    if side not in HALVES:
        raise ConfigError(f"{root}: which half of the A|B images is the label? pass --label-side A or B")
    if palette is None:
        if meta is not None and meta.get("palette"):
            return palette_from_dict(meta["palette"], str(root / DATASET_FILE)), side
        raise ConfigError(f"{root}: no palette in {DATASET_FILE}; pass --palette NAME|FILE or --palette kmeans:K")
    if palette.startswith("kmeans:"):
        k = int(palette.split(":", 1)[1])
        halves = [_halves(load_rgb8(p))[side] for p in files[:200]]
        return kmeans_palette(halves, k), side
    return load_palette(palette), side


def _halves(ab: np.ndarray) -> dict[str, np.ndarray]:
    w = ab.shape[1] // 2
    return {"A": ab[:, :w], "B": ab[:, w:]}


def label_indices(label_rgb: np.ndarray, palette: Palette) -> np.ndarray:
    """Colour label image → class indices 0..K−1 in palette order (nearest palette colour)."""
    values = decolorize(label_rgb, palette, nearest=True)
    lut = np.zeros(max(palette.values) + 1, dtype=np.int64)
    for i, v in enumerate(palette.values):
        lut[v] = i
    return lut[values]


class _SegData(Dataset):
    def __init__(self, files: list[Path], palette: Palette, side: str, size: int, train: bool, seed: int) -> None:
        self.files, self.palette, self.side, self.size, self.train, self.seed = files, palette, side, size, train, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        h = _halves(load_rgb8(self.files[i]))
        photo, label = h["B" if self.side == "A" else "A"], h[self.side]
        idx = label_indices(label, self.palette)
        photo = cv2.resize(photo, (self.size, self.size), interpolation=cv2.INTER_AREA)
        idx = cv2.resize(idx.astype(np.uint8), (self.size, self.size), interpolation=cv2.INTER_NEAREST)
        if self.train and np.random.default_rng([self.seed, self.epoch, i]).random() < 0.5:
            photo, idx = photo[:, ::-1], idx[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).float() / 255.0
        return _normalise(x[None])[0], torch.from_numpy(np.ascontiguousarray(idx)).long()


def class_weights(ds: "_SegData", n_classes: int, limit: int = 200) -> torch.Tensor:
    """Cross-entropy weights ∝ 1/√frequency of each class in (up to ``limit``) training labels,
    normalised to mean 1; classes never seen get weight 1."""
    counts = np.zeros(n_classes, dtype=np.float64)
    for i in range(min(len(ds), limit)):
        counts += np.bincount(ds[i][1].numpy().ravel(), minlength=n_classes)[:n_classes]
    freq = counts / max(counts.sum(), 1)
    w = np.where(freq > 0, 1 / np.sqrt(np.maximum(freq, 1e-12)), 0.0)
    w = w / w[w > 0].mean() if (w > 0).any() else np.ones(n_classes)
    w[freq == 0] = 1.0
    return torch.tensor(w, dtype=torch.float32)


@dataclass
class Segmenter:
    """A trained segmenter with its palette and input size."""

    net: nn.Module
    palette: Palette
    size: int
    arch: str

    @property
    def class_names(self) -> list[str]:
        return self.palette.names

    @torch.inference_mode()
    def predict(self, images: list[np.ndarray], device: torch.device) -> list[np.ndarray]:
        """Class-index maps of ``(H, W, 3)`` uint8 photos, at each photo's own size."""
        x = torch.stack([torch.from_numpy(cv2.resize(im, (self.size, self.size), interpolation=cv2.INTER_AREA))
                         for im in images]).permute(0, 3, 1, 2).float().div(255.0).to(device)
        pred = _logits(self.net, _normalise(x)).argmax(1).cpu().numpy().astype(np.uint8)
        return [cv2.resize(p, (im.shape[1], im.shape[0]), interpolation=cv2.INTER_NEAREST)
                for p, im in zip(pred, images, strict=True)]


@dataclass
class SegmenterOptions:
    """Options of ``p2ptools train-fcn`` (and of a recipe's ``fcn`` stage).

    Args:
        dataset: an aligned A|B dataset with ``train/`` (and ``val/``, for validation).
        out: SEG_DIR, where ``segmenter.pt`` and ``train_fcn.json`` are written.
        palette: label palette: a built-in name, a YAML/JSON file or ``kmeans:K``; None: from
            ``dataset.json``.
        label_side: which half (``A``/``B``) is the label; None: from ``dataset.json``.
        arch: ``unet`` (:class:`SegUNet`) or ``fcn_resnet50``.
        size: side the photos and labels are resized to (a multiple of 16).
        epochs: training epochs.
        batch_size: images per step.
        lr: Adam's learning rate (cosine-annealed over the epochs).
        workers: data-loading processes (0: in the main process).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        seed: seed of the weights, the shuffling and the flips.
        backbone_weights: ImageNet ResNet-50 weights file for ``fcn_resnet50``.

    Raises:
        ConfigError: when ``size`` is not a multiple of 16.
    """

    dataset: Path
    out: Path
    palette: str | None = None
    label_side: str | None = None
    arch: str = "unet"
    size: int = 256
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    workers: int = 2
    device: str = "auto"
    seed: int = 0
    backbone_weights: Path | None = None

    def __post_init__(self) -> None:
        if self.size % 16:
            raise ConfigError(f"--size must be a multiple of 16, got {self.size}")
        self.dataset, self.out = Path(self.dataset), Path(self.out)


def train_segmenter(options: SegmenterOptions, progress: bool = True) -> dict[str, Any]:
    """Train a segmenter on the real photos → labels of ``dataset/train`` (validated on ``val/``).

    The cross-entropy is weighted by inverse square-root class frequency (buildings are a few per
    cent of aerial pixels; unweighted, a segmenter learns to answer "background"). Writes
    ``out/segmenter.pt`` (the network, its palette, size and architecture) from the epoch with the
    best validation mean class IoU (measured on train when there is no ``val/``) and
    ``out/train_fcn.json``.

    Args:
        options: what to train on, where to write, and how.
        progress: a progress bar over the epochs.

    Returns:
        The validation scores of the saved epoch.

    Raises:
        ConfigError: when the labels' half or palette cannot be told, or for an unknown architecture.
        InputError: when ``dataset/train`` is missing or holds no images.
        OutputError: when another command is writing to ``out``.
    """
    from p2ptools.runtime.lock import hold

    o = options
    hold(o.out)  # one writer per output folder
    train_files = list_split(o.dataset, "train")
    pal, side = resolve_labels(o.dataset, o.palette, o.label_side, train_files)
    val_files = list_split(o.dataset, "val") if has_images(o.dataset / "val") else []
    dev = select_device(o.device)
    torch.manual_seed(o.seed)
    net = build_segmenter(o.arch, len(pal.classes), o.backbone_weights).to(dev)
    train_ds = _SegData(train_files, pal, side, o.size, True, o.seed)
    val_ds = _SegData(val_files or train_files, pal, side, o.size, False, o.seed)
    on = "val" if val_files else "train"
    report("train-fcn: %s on %d %s image(s) of %s (%d classes, %d px), %d epochs of %d steps, validated on %s, %s",
           o.arch, len(train_files), "train", o.dataset, len(pal.classes), o.size, o.epochs,
           math.ceil(len(train_files) / o.batch_size), on, dev)
    best, best_state = _fit_segmenter(net, train_ds, val_ds, on, o, dev, progress)
    _save_segmenter(o, pal, side, best, best_state)
    return best


def _fit_segmenter(net: nn.Module, train_ds: _SegData, val_ds: _SegData, on: str, o: SegmenterOptions,
                   dev: torch.device, progress: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """The epochs of :func:`train_segmenter`: the scores and weights of the epoch with the best mean class IoU.

    Args:
        net: the segmenter, on ``dev``.
        train_ds: the training photos and labels.
        val_ds: the photos and labels it is scored on after each epoch.
        on: their name in the scores (``val``, or ``train`` when there is no ``val/``).
        o: the options (epochs, batch size, learning rate, workers, seed).
        dev: the device.
        progress: a progress bar over the epochs.

    Returns:
        The best epoch's scores (``per_pixel_acc``, ``mean_class_iou`` …, ``epoch``, ``on``) and its
        weights on the CPU.
    """
    n_classes = len(train_ds.palette.classes)
    opt = torch.optim.Adam(net.parameters(), lr=o.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, o.epochs))
    # class frequencies: one pass over the training labels before the first epoch
    weights = class_weights(train_ds, n_classes).to(dev)
    best: dict[str, Any] = {"per_pixel_acc": -1.0}
    best_state = None
    bar = progress_bar(o.epochs, "train-fcn", "epoch", progress)
    times: list[float] = []
    for epoch in range(o.epochs):
        t0 = time.perf_counter()
        bar.update(1)
        loss = _train_epoch(net, opt, train_ds, weights, epoch, o, dev)
        sched.step()
        conf = _confusion(net, val_ds, n_classes, o, dev)
        s = {**scores(conf), "epoch": epoch + 1, "on": on}
        times.append(time.perf_counter() - t0)
        report("train-fcn epoch %d/%d · %.1fs · loss %.3f · %s pixel acc %.3f · mean IoU %.3f · %s", epoch + 1,
               o.epochs, times[-1], loss, s["on"], s["per_pixel_acc"], s["mean_class_iou"],
               f"ETA {duration((o.epochs - epoch - 1) * sum(times) / len(times))}" if epoch + 1 < o.epochs else "done")
        if s["mean_class_iou"] >= best.get("mean_class_iou", -1.0):
            best, best_state = s, {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    bar.close()
    return best, best_state


def _train_epoch(net: nn.Module, opt: torch.optim.Optimizer, train_ds: _SegData, weights: torch.Tensor, epoch: int,
                 o: SegmenterOptions, dev: torch.device) -> float:
    """One epoch of weighted cross-entropy steps over ``train_ds``, shuffled by ``o.seed + epoch``.

    Returns:
        The last step's loss.
    """
    train_ds.epoch = epoch
    net.train()
    g = torch.Generator().manual_seed(o.seed + epoch)
    batches = DataLoader(train_ds, batch_size=o.batch_size, shuffle=True, generator=g, num_workers=o.workers)
    with Ticker(len(batches), f"train-fcn epoch {epoch + 1}/{o.epochs}", "steps", steps=0) as ticker:
        for x, y in batches:  # a line at least every minute within long epochs
            loss = F.cross_entropy(_logits(net, x.to(dev)), y.to(dev), weight=weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ticker.update(1)
    return loss.item()


def _confusion(net: nn.Module, ds: _SegData, n_classes: int, o: SegmenterOptions, dev: torch.device) -> np.ndarray:
    """The ``(n_classes, n_classes)`` confusion matrix of ``net`` on ``ds`` (in eval mode)."""
    net.eval()
    conf = np.zeros((n_classes,) * 2, dtype=np.int64)
    with torch.inference_mode():
        for x, y in DataLoader(ds, batch_size=o.batch_size, num_workers=o.workers):
            pred = _logits(net, x.to(dev)).argmax(1).cpu().numpy()
            conf += confusion_matrix(y.numpy(), pred, n_classes)
    return conf


def _save_segmenter(o: SegmenterOptions, pal: Palette, side: str, best: dict[str, Any],
                    best_state: dict[str, torch.Tensor] | None) -> None:
    """Write ``OUT/segmenter.pt`` (weights, palette, size, architecture, scores) and ``OUT/train_fcn.json``."""
    payload = {"format": SEG_FORMAT, "arch": o.arch, "n_classes": len(pal.classes), "size": o.size,
               "palette": pal.to_dict(), "label_side": side, "state": best_state, "scores": best}
    buf = io.BytesIO()
    torch.save(payload, buf)
    door.ensure_folder(o.out)
    atomic_write_bytes(o.out / "segmenter.pt", buf.getvalue())
    atomic_write_text(o.out / "train_fcn.json", json.dumps({"dataset": str(o.dataset), "arch": o.arch, "size": o.size,
                                                            "epochs": o.epochs, "palette": pal.to_dict(),
                                                            "label_side": side, "best": best}, indent=2) + "\n")


def load_segmenter(path: Path, device: torch.device) -> Segmenter:
    """Load ``SEG_DIR/segmenter.pt`` (or the file itself).

    Raises:
        InputError: if it is missing or not a p2ptools segmenter.
    """
    p = Path(path)
    p = p / "segmenter.pt" if p.is_dir() else p
    if not p.is_file():
        raise InputError(f"{p}: no segmenter (train one with p2ptools train-fcn DATASET --out SEG_DIR)")
    from p2ptools.runtime.safeload import load_torch_file

    ckpt = load_torch_file(p, "cpu", what="segmenter")
    if not isinstance(ckpt, dict) or ckpt.get("format") != SEG_FORMAT:
        raise InputError(f"{p}: not a p2ptools segmenter")
    net = build_segmenter(ckpt["arch"], ckpt["n_classes"])
    net.load_state_dict(ckpt["state"])
    return Segmenter(net.to(device).eval(), palette_from_dict(ckpt["palette"]), ckpt["size"], ckpt["arch"])


def fcn_confusions(seg: Segmenter, items: list[dict[str, Any]], device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Confusion matrices (generated, real) of a batch of evaluation items with ``label`` images."""
    k = len(seg.palette.classes)
    labels = [label_indices(cv2.resize(it["label"], (it["real"].shape[1], it["real"].shape[0]),
                                       interpolation=cv2.INTER_NEAREST), seg.palette) for it in items]
    conf_fake, conf_real = np.zeros((k, k), np.int64), np.zeros((k, k), np.int64)
    for lab, pf, pr in zip(labels, seg.predict([it["fake"] for it in items], device),
                           seg.predict([it["real"] for it in items], device), strict=True):
        conf_fake += confusion_matrix(lab, pf, k)
        conf_real += confusion_matrix(lab, pr, k)
    return conf_fake, conf_real


def fcn_table(label: str, conf_fake: np.ndarray, conf_real: np.ndarray, names: list[str]) -> pd.DataFrame:
    """The FCN-score table: rows (generated | ground truth) × (all classes | each class)."""
    rows = []
    for images, conf in (("generated", conf_fake), ("ground truth", conf_real)):
        rows.append({"label": label, "images": images, "class": "all", **scores(conf)})
        for c in per_class(conf, names):
            rows.append({"label": label, "images": images, "class": c["class"], "per_pixel_acc": c["acc"],
                         "mean_class_acc": c["acc"], "mean_class_iou": c["iou"]})
    return pd.DataFrame(rows)
