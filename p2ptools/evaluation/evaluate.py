"""``p2ptools evaluate``: metrics of generated images against real ones → pandas → CSV reports.

Images are paired by file stem. ``--real`` may be a folder of target images or an aligned A|B split
(the target half is taken); ``--fake`` is typically the output of ``p2ptools predict``. One pass over
the pairs (decoded in DataLoader workers) computes the per-image metrics and collects the features
of the set metrics:

* ``l1``, ``l2``, ``psnr``, ``ssim``: per image on the 0–255 scale (``--mask-dir`` restricts them to
  a region such as the inpainting hole);
* ``vgg``: per-position VGG19 feature cosine per image (:mod:`p2ptools.evaluation.metrics.vgg`);
* ``lpips``: the learned perceptual distance per image (:mod:`p2ptools.evaluation.metrics.lpips`);
* ``fid``, ``kid``: once per set (:mod:`p2ptools.evaluation.metrics.fid`); FID is biased at the few hundred
  images of pix2pix test sets, KID is not — the summary says so;
* ``fcn``: FCN-score with a segmenter trained by ``p2ptools train-fcn`` (:mod:`p2ptools.evaluation.segment`).

Reports: ``per_image.csv`` (one row per image), ``summary.csv`` (mean, std, 95% interval and n per
metric; set metrics once), with ``fcn`` ``fcn.csv`` (generated vs. ground-truth rows and per
class), and ``report.html``, a page to look at (:mod:`p2ptools.evaluation.report`).
:func:`compare_reports` joins several summaries into one table, a row per run, and
``comparison.html``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from p2ptools.config import HALVES, REAL_KINDS, RESIZE_SIDES
from p2ptools.errors import ConfigError, InputError, P2PError
from p2ptools.evaluation.metrics import pixel
from p2ptools.evaluation.metrics.registry import DEFAULT_METRICS, METRICS, check_names, pixel_metrics, spec_of
from p2ptools.evaluation.native import NativeSplit, find_native_split, load_pair
from p2ptools.evaluation.report import ReportData, thumb_names, write_comparison_page, write_report_page, write_thumbs
from p2ptools.inference.predict import detect_input_kind, no_images_message
from p2ptools.prep.images import image_size, images_by_stem, load_rgb8, resize
from p2ptools.runtime import door
from p2ptools.runtime.device import describe_precision, select_device, tf32_disabled
from p2ptools.runtime.output import (
    atomic_write_bytes,
    atomic_write_text,
    claim_folder,
    csv_line_end,
    read_dataset_json,
)
from p2ptools.runtime.progress import Ticker, report

log = logging.getLogger(__name__)

#: The files ``evaluate`` writes into its output folder.
REPORT_FILES: tuple[str, ...] = ("per_image.csv", "summary.csv", "fcn.csv", "evaluate.json", "report.html",
                                  "report.json")


@dataclass
class EvalConfig:
    """Options of ``p2ptools evaluate``.

    Args:
        real: real targets: a folder of images or an aligned A|B split.
        fake: generated images, named like the real ones.
        out: report folder.
        metrics: metric names (see :data:`~p2ptools.evaluation.metrics.registry.METRICS`).
        label: the run's name in the reports.
        real_side: for an A|B ``real``: the half holding the target; None: from the prediction
            record in ``fake`` (``A`` for a model trained BtoA), else ``B``.
        real_kind: ``auto``, ``image`` or ``ab``.
        mask_dir: binary masks (non-zero = inside) by stem, for masked pixel metrics.
        resize: ``none`` (sizes must match), ``real`` (resize real to the fake's size) or ``fake``.
        weights_dir: where the FID/VGG/LPIPS weight files are (else found or downloaded:
            :mod:`p2ptools.evaluation.weights`).
        offline: never download weights (None: ``$P2PTOOLS_OFFLINE``).
        segmenter: folder written by ``p2ptools train-fcn`` (for ``fcn``).
        labels: label images by stem (for ``fcn`` when ``real`` is not an A|B split).
        batch_size: images per forward pass.
        workers: DataLoader workers decoding images.
        device: ``auto`` or a torch device.
        kid_subsets: KID subsets.
        kid_subset_size: KID subset size (capped at n).
        fid_dims: Inception feature size: 2048 (standard), or 64/192/768 as pytorch-fid's ``--dims``.
        cache_dir: where FID features of real folders are cached (None: no cache).
    """

    real: Path
    fake: Path
    out: Path
    metrics: tuple[str, ...] = DEFAULT_METRICS
    label: str = ""
    real_side: str | None = None
    real_kind: str = "auto"
    mask_dir: Path | None = None
    resize: str = "none"
    weights_dir: Path | None = None
    offline: bool | None = None
    segmenter: Path | None = None
    labels: Path | None = None
    batch_size: int = 32
    workers: int = 2
    device: str = "auto"
    fid_dims: int = 2048
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        for name in ("real", "fake", "out", "mask_dir", "weights_dir", "segmenter", "labels", "cache_dir"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))
        check_names(self.metrics)
        if (self.real_side is not None and self.real_side not in HALVES) or self.real_kind not in REAL_KINDS:
            raise ConfigError("real_side must be A or B, real_kind auto, image or ab")
        if self.resize not in RESIZE_SIDES:
            raise ConfigError(f"resize must be none, real or fake, got {self.resize!r}")
        if "fcn" in self.metrics and self.segmenter is None:
            raise ConfigError("the fcn metric needs --segmenter SEG_DIR (train one with p2ptools train-fcn)")
        self.label = self.label or self.fake.name


def match_pairs(cfg: EvalConfig) -> tuple[list[tuple[str, Path, Path]], bool, NativeSplit | None]:
    """``(stem, real, fake)`` for every name; whether ``real`` holds A|B images; the GeoTIFF split
    ``real`` is, if it is one (its target half's tiles are the real images then).

    Raises:
        InputError: listing names present on one side only.
    """
    native = find_native_split(cfg.real, cfg.real_side)
    real = images_by_stem(cfg.real / cfg.real_side) if native else images_by_stem(cfg.real)
    if not real:
        raise InputError(no_images_message(cfg.real))
    fake = images_by_stem(cfg.fake)
    if not fake:
        raise InputError(no_images_message(cfg.fake))
    only_r, only_f = sorted(set(real) - set(fake)), sorted(set(fake) - set(real))
    if only_r or only_f:
        parts = []
        if only_r:
            parts.append(f"only in {cfg.real} ({len(only_r)}): {', '.join(only_r[:20])}")
        if only_f:
            parts.append(f"only in {cfg.fake} ({len(only_f)}): {', '.join(only_f[:20])}")
        raise InputError("real and fake images do not match by name; " + "; ".join(parts))
    stems = sorted(real)
    ab = not native and (cfg.real_kind == "ab" or (
        cfg.real_kind == "auto" and detect_input_kind(cfg.real, [real[s] for s in stems]) == "ab"))
    return [(s, real[s], fake[s]) for s in stems], ab, native


class _PairSet(Dataset):
    """Decoded (real, fake[, mask][, label image]) of each pair, at one size."""

    def __init__(self, pairs: list[tuple[str, Path, Path]], cfg: EvalConfig, ab: bool,
                 native: NativeSplit | None = None) -> None:
        self.pairs, self.cfg, self.ab, self.native = pairs, cfg, ab, native
        self.masks = images_by_stem(cfg.mask_dir) if cfg.mask_dir else None
        self.labels = images_by_stem(cfg.labels) if cfg.labels else None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        stem, rp, fp = self.pairs[i]
        if self.native is not None:
            try:
                item = {"stem": stem, "error": "", **load_pair(self.native, rp, fp)}
            except P2PError as exc:
                return {"stem": stem, "error": str(exc)}
            return self._with_mask(item)
        try:
            real = load_rgb8(rp)
            label_img = None
            if self.ab:
                w = real.shape[1] // 2
                halves = {"A": real[:, :w], "B": real[:, w:]}
                real = np.ascontiguousarray(halves[self.cfg.real_side])
                label_img = np.ascontiguousarray(halves["A" if self.cfg.real_side == "B" else "B"])
            if self.labels is not None:
                if stem not in self.labels:
                    return {"stem": stem, "error": f"no label image for {stem} in {self.cfg.labels}"}
                label_img = load_rgb8(self.labels[stem])
            fake = load_rgb8(fp)
        except P2PError as exc:
            return {"stem": stem, "error": str(exc)}
        if real.shape != fake.shape:
            if self.cfg.resize == "real":
                real = resize(real, fake.shape[1], fake.shape[0])
            elif self.cfg.resize == "fake":
                fake = resize(fake, real.shape[1], real.shape[0])
            else:
                return {"stem": stem, "error": f"{fp.name}: fake is {fake.shape[1]}×{fake.shape[0]}, real is "
                                               f"{real.shape[1]}×{real.shape[0]} (use --resize real)"}
        item: dict[str, Any] = {"stem": stem, "real": real, "fake": fake, "error": ""}
        if label_img is not None:
            item["label"] = label_img
        return self._with_mask(item)

    def _with_mask(self, item: dict[str, Any]) -> dict[str, Any]:
        """``item`` with its mask (``--mask-dir``), or an error if it has none."""
        stem, real = item["stem"], item["real"]
        if self.masks is not None:
            if stem not in self.masks:
                return {"stem": stem, "error": f"no mask for {stem} in {self.cfg.mask_dir}"}
            m = load_rgb8(self.masks[stem])[..., 0]
            if m.shape != real.shape[:2]:
                m = resize(m, real.shape[1], real.shape[0])
            item["mask"] = m > 127
        return item


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


def _to_batch(imgs: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` images → ``(N, 3, H, W)`` float32 in [0, 1] (``ToTensor`` semantics), sent to
    ``device`` as uint8 (a quarter of float32's bytes) and made float there."""
    return torch.from_numpy(np.stack(imgs)).to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)


@dataclass
class EvalResult:
    """Per-image table, summary table and the FCN table (if asked)."""

    per_image: pd.DataFrame
    summary: pd.DataFrame
    fcn: pd.DataFrame | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass
class EvalJob:
    """What :func:`evaluate` resolved before scoring, shared by its steps.

    Args:
        cfg: the options, with ``real_side`` and ``label`` resolved (:func:`apply_prediction_record`).
        pairs: ``(stem, real, fake)`` of every name (:func:`match_pairs`).
        ab: whether ``real`` holds A|B images.
        native: the GeoTIFF split ``real`` is, if it is one.
        record: the prediction record of ``fake`` (None without one).
        device: where the networks run.
        with_input: whether the report shows the input beside each pair.
        base: the mean-colour baseline, its colour and what it is (None: no baseline).
        identity: what the identity baseline is (the input itself as the output), when input and target
            are comparable images (:func:`identity_baseline`; None: none).
        precision: what the metric networks ran in (:func:`p2ptools.runtime.device.describe_precision`):
            ``fp32`` on a CPU, ``fp32 (TF32 off)`` on a GPU with TF32.
    """

    cfg: EvalConfig
    pairs: list[tuple[str, Path, Path]]
    ab: bool
    native: NativeSplit | None
    record: dict[str, Any] | None
    device: torch.device
    with_input: bool
    base: tuple[np.ndarray, str] | None = None
    identity: str | None = None
    precision: str = "fp32"


def summarize(values: pd.Series) -> dict[str, float]:
    """Mean, standard deviation, 95% t-interval of the mean, and n (infinite values kept as such)."""
    v = values.dropna().astype(float)
    n = len(v)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "ci95_low": math.nan, "ci95_high": math.nan, "n": 0}
    mean = float(v.mean())
    if not np.isfinite(v).all():
        return {"mean": mean, "std": math.nan, "ci95_low": math.nan, "ci95_high": math.nan, "n": n}
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    from scipy import stats

    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
    return {"mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half, "n": n}


def _feature_cache_key(files: list[Path], what: str, resized_to: list[Path] | None = None) -> str:
    """The key of cached real-image features: everything that changes them — ``what`` (network,
    weights digest, feature size, which half, resize mode), each real file's path, size and mtime,
    and, when reals are resized to the fakes (``resized_to``), each fake's pixel size."""
    h = hashlib.sha256(os.fsencode(what))
    for p in files:
        st = p.stat()
        h.update(os.fsencode(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n"))  # any file name
    if resized_to is not None:
        for p in resized_to:
            try:
                h.update(f"{image_size(p)}\n".encode())
            except P2PError:
                h.update(b"?\n")
    return h.hexdigest()[:24]


def evaluate(cfg: EvalConfig, progress: bool = True) -> EvalResult:
    """Compute the metrics of ``cfg`` and write the reports to ``cfg.out`` (see the module docstring).

    A metric that cannot run (its weights missing offline, too few images) is left out with its
    reason and fix (:attr:`EvalResult.unavailable`) and every other metric is computed and written;
    pairs that cannot be read are listed (:attr:`EvalResult.errors`) and the others scored.

    Raises:
        InputError: for unmatched names, or when no pair can be read.
    """
    cfg, record = apply_prediction_record(cfg)
    pairs, ab, native = match_pairs(cfg)
    with_input = ab or cfg.labels is not None or native is not None
    thumbs = {rel for i in range(len(pairs)) for rel in thumb_names(i, with_input).values()}
    claim_folder(cfg.out, set(REPORT_FILES) | thumbs, inputs=[cfg.real, cfg.fake])
    device = select_device(cfg.device)
    report("evaluate %s: %d pairs, metrics %s, on %s", cfg.label, len(pairs), ", ".join(cfg.metrics), device)
    with tf32_disabled():  # the metric networks in full fp32 on CUDA too (TF32 moves FID/LPIPS by ~1e-3)
        nets = load_networks(cfg, ab, native, device)
        job = EvalJob(cfg, pairs, ab, native, record, device, with_input,
                      baseline_colour(cfg, record, pairs, ab, native), identity_baseline(cfg, record, ab, native),
                      precision=describe_precision(device, "none"))
        cached = cached_real_features(cfg, pairs, ab, nets)
        scan = score_pairs(job, nets, cached, progress)
    if not scan.rows:
        lines = "\n".join(f"  {s}: {e}" for s, e in scan.errors[:30])
        raise InputError(f"no pair could be evaluated ({len(scan.errors)} failed):\n{lines}")
    if scan.errors:  # the others are scored and written; the command then lists these and exits 1
        log.warning("%d of %d pair(s) cannot be evaluated and are left out: %s", len(scan.errors), len(pairs),
                    "; ".join(f"{s}: {e}" for s, e in scan.errors[:5]) + (" …" if len(scan.errors) > 5 else ""))
    per_image = pd.DataFrame(scan.rows)
    summary, fcn_table = summary_table(cfg, per_image, scan, nets, native, cached)
    save_real_features(cfg, cached)
    summary["baseline"] = summary["metric"].map(baseline_means(scan)) if job.base is not None else math.nan
    identity = identity_means(scan) if job.identity is not None else {}
    job.identity = job.identity if identity else None  # some input was not comparable: no identity baseline
    summary["identity"] = summary["metric"].map(identity) if identity else math.nan
    for r in summary.itertuples():
        spread = f" ± {r.std:.4g}" if math.isfinite(r.std) else ""
        against = "".join(f"; {what} {v:.4g}" for what, v in (("baseline", r.baseline), ("input itself", r.identity))
                          if math.isfinite(v))
        report("evaluate %s: %s = %.4g%s (n %d%s)", r.label, r.metric, r.mean, spread, r.n, against)
    for metric, why in nets.unavailable.items():
        log.warning("%s: not computed: %s", metric, why)
    result = EvalResult(per_image, summary, fcn_table, scan.errors, dict(nets.unavailable))
    write_reports(job, result, scan, nets)
    return result


@dataclass
class Networks:
    """The networks of the metrics asked for, and the metrics that cannot run (metric → reason and fix)."""

    want: set[str]
    fid: Any = None
    vgg: Any = None
    lpips: Any = None
    seg: Any = None
    unavailable: dict[str, str] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)  # file name → SHA-256 of the file used


def _weights_fix(metric: str) -> str:
    from p2ptools.evaluation.weights import search_dirs

    files = METRICS[metric].weights
    return (f"fix: p2ptools weights --download {' '.join(files)} (files are looked for in "
            f"{', '.join(str(d) for d in search_dirs())}), or leave {metric} out of --metrics")


def load_networks(cfg: EvalConfig, ab: bool, native: NativeSplit | None, device: torch.device) -> Networks:
    """Load what each metric needs; a metric whose weights cannot be had is recorded, not raised.

    Raises:
        ConfigError: ``fcn`` without labels (a usage error, not a missing file).
    """
    from p2ptools.evaluation.weights import WeightsDownloadError, WeightsNotFound

    nets = Networks(set(cfg.metrics))
    if "fcn" in nets.want and not ab and cfg.labels is None and native is None:
        raise ConfigError("the fcn metric needs labels: give --real as an A|B split or --labels DIR")

    def attempt(metrics: set[str], load: Any) -> Any:
        if not nets.want & metrics:
            return None
        try:
            return load()
        except (WeightsNotFound, WeightsDownloadError, InputError) as exc:
            for m in sorted(nets.want & metrics):
                nets.unavailable[m] = f"{exc}; {_weights_fix(m) if m != 'fcn' else 'train one with p2ptools train-fcn'}"
            return None

    def fid() -> Any:
        from p2ptools.evaluation.metrics.fid import load_fid_network

        return load_fid_network(cfg.weights_dir, cfg.fid_dims, offline=cfg.offline).to(device)

    def vgg() -> Any:
        from p2ptools.evaluation.metrics.vgg import load_vgg_network

        return load_vgg_network(cfg.weights_dir, cfg.offline).to(device)

    def lpips() -> Any:
        from p2ptools.evaluation.metrics.lpips import load_lpips_network

        return load_lpips_network(cfg.weights_dir, cfg.offline).to(device)

    def seg() -> Any:
        from p2ptools.evaluation.segment import load_segmenter

        return load_segmenter(cfg.segmenter, device)  # type: ignore[arg-type]

    nets.fid, nets.vgg = attempt({"fid", "kid"}, fid), attempt({"vgg"}, vgg)
    nets.lpips, nets.seg = attempt({"lpips"}, lpips), attempt({"fcn"}, seg)
    nets.weights = _weights_in_use(cfg, nets)
    return nets


def _weights_in_use(cfg: EvalConfig, nets: Networks) -> dict[str, str]:
    """File name → SHA-256 of every pretrained file the loaded networks came from (provenance)."""
    from p2ptools.evaluation.weights import KNOWN_WEIGHTS, weights_digest

    used = {"fid": nets.fid, "kid": nets.fid, "vgg": nets.vgg, "lpips": nets.lpips}
    files = {f for metric, net in used.items() if net is not None for f in METRICS[metric].weights}
    return {name: weights_digest(name, cfg.weights_dir) for name in KNOWN_WEIGHTS if name in files}


def cached_real_features(cfg: EvalConfig, pairs: list[tuple[str, Path, Path]], ab: bool, nets: Networks
                         ) -> dict[str, Any]:
    """``{"key": …, "real": features or None}``: the real set's FID features from ``--cache-stats``,
    keyed by everything that changes them (:func:`_feature_cache_key`)."""
    if nets.fid is None or cfg.cache_dir is None:
        return {"key": "", "real": None}
    from p2ptools.evaluation.metrics.fid import FID_WEIGHTS
    from p2ptools.evaluation.weights import weights_digest

    key = _feature_cache_key(
        [r for _, r, _ in pairs],
        f"fid{cfg.fid_dims}|{weights_digest(FID_WEIGHTS, cfg.weights_dir)}|{cfg.real_side}|{ab}|{cfg.resize}",
        [f for _, _, f in pairs] if cfg.resize == "real" else None)
    path = cfg.cache_dir / f"fid-{key}.npy"
    return {"key": key, "real": np.load(path) if path.is_file() else None}


@dataclass
class Scan:
    """What one pass over the pairs gathered."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    base_rows: list[dict[str, Any]] = field(default_factory=list)
    identity_rows: list[dict[str, Any] | None] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    feats: dict[str, list[np.ndarray]] = field(default_factory=lambda: {"real": [], "fake": []})
    conf_fake: np.ndarray | None = None
    conf_real: np.ndarray | None = None
    sizes: set[tuple[int, ...]] = field(default_factory=set)


def score_pairs(job: EvalJob, nets: Networks, cached: dict[str, Any], progress: bool = True) -> Scan:
    """One pass over the pairs (decoded by DataLoader workers): thumbnails, per-image metrics, the
    baseline's pixel metrics, and the features and confusions of the set metrics."""
    cfg, base = job.cfg, job.base
    ds = _PairSet(job.pairs, cfg, job.ab, job.native)
    loader = DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.workers, collate_fn=_collate)
    scan = Scan()
    with Ticker(len(ds), "evaluate", "images", show_bar=progress) as ticker, torch.inference_mode():
        for items in loader:
            ticker.update(len(items))
            good = [it for it in items if not it["error"]]
            scan.errors += [(it["stem"], it["error"]) for it in items if it["error"]]
            for it in good:
                write_thumbs(cfg.out, len(scan.rows), it)
                scan.rows.append(_pixel_row(it, nets.want, job.native))
                scan.sizes.add(it["real"].shape)
                if base is not None:
                    scan.base_rows.append(_baseline_row(it, base[0], nets.want))
                if job.identity is not None:
                    scan.identity_rows.append(_identity_row(it, nets.want))
            _network_metrics(good, scan.rows[len(scan.rows) - len(good):], scan, nets, cached, job.device)
    return scan


def _pixel_row(it: dict[str, Any], want: set[str], native: NativeSplit | None) -> dict[str, Any]:
    row: dict[str, Any] = {"name": it["stem"]}
    real_px, fake_px = it.get("real_all", it["real"]), it.get("fake_all", it["fake"])
    row.update(_pixel_scores(real_px, fake_px, it.get("mask"), want))
    if "l1" in want and native is not None and native.per_band():
        for b in range(real_px.shape[-1]):
            row[f"l1_band{b + 1}"] = pixel.l1(real_px[..., b], fake_px[..., b], it.get("mask"))
    return row


def _network_metrics(good: list[dict[str, Any]], rows: list[dict[str, Any]], scan: Scan, nets: Networks,
                     cached: dict[str, Any], device: torch.device) -> None:
    """VGG, LPIPS, FID/KID features and FCN confusions of a batch (images of one size at a time)."""
    if nets.fid is None and nets.vgg is None and nets.lpips is None and nets.seg is None:
        return  # pixel metrics only: nothing to send to the device
    sizes = {it["real"].shape for it in good}
    groups = [good] if len(sizes) == 1 else [[it] for it in good]
    for group, grow in _split_rows(groups, rows):
        real_t = _to_batch([it["real"] for it in group], device)
        fake_t = _to_batch([it["fake"] for it in group], device)
        if nets.fid is not None:
            if cached["real"] is None:
                scan.feats["real"].append(nets.fid(real_t).double().cpu().numpy())
            scan.feats["fake"].append(nets.fid(fake_t).double().cpu().numpy())
        if nets.vgg is not None:
            from p2ptools.evaluation.metrics.vgg import vgg_cosine

            for k, v in vgg_cosine(nets.vgg, real_t, fake_t).items():
                for r, x in zip(grow, v.cpu().tolist(), strict=True):
                    r[k] = x
        if nets.lpips is not None:
            for r, x in zip(grow, nets.lpips(real_t, fake_t).cpu().tolist(), strict=True):
                r["lpips"] = x
        if nets.seg is not None:
            from p2ptools.evaluation.segment import fcn_confusions

            cf, cr = fcn_confusions(nets.seg, group, device)
            scan.conf_fake = cf if scan.conf_fake is None else scan.conf_fake + cf
            scan.conf_real = cr if scan.conf_real is None else scan.conf_real + cr


def summary_table(cfg: EvalConfig, per_image: pd.DataFrame, scan: Scan, nets: Networks, native: NativeSplit | None,
                  cached: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Mean, spread and interval per metric (set metrics once), and the FCN table."""
    rows = [{"label": cfg.label, "metric": col, **summarize(per_image[col]),
             "note": _note(col, native) + _undefined_note(col, per_image[col])}
            for col in per_image.columns if col != "name"]
    if nets.fid is not None:
        rows += _set_metric_rows(cfg, scan, nets, cached)
    fcn_table = None
    if nets.seg is not None and scan.conf_fake is not None and scan.conf_real is not None:
        from p2ptools.evaluation.segment import fcn_table as make_fcn_table

        fcn_table = make_fcn_table(cfg.label, scan.conf_fake, scan.conf_real, nets.seg.class_names)
        for r in fcn_table[fcn_table["class"] == "all"].itertuples():
            for metric in ("per_pixel_acc", "mean_class_acc", "mean_class_iou"):
                rows.append({"label": cfg.label, "metric": f"fcn_{metric}" + ("" if r.images == "generated"
                                                                              else "_ground_truth"),
                             "mean": getattr(r, metric), "std": math.nan, "ci95_low": math.nan,
                             "ci95_high": math.nan, "n": len(per_image), "note": f"FCN-score on {r.images} images"})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS), fcn_table


SUMMARY_COLUMNS = ["label", "metric", "mean", "std", "ci95_low", "ci95_high", "n", "note"]


def _set_metric_rows(cfg: EvalConfig, scan: Scan, nets: Networks, cached: dict[str, Any]) -> list[dict[str, Any]]:
    """FID and KID of the gathered features (NaN with a note, and an unavailable line, when too few)."""
    from p2ptools.evaluation.metrics.fid import fid_from_activations, kernel_inception_distance

    real_acts = cached["real"] if cached["real"] is not None else np.concatenate(scan.feats["real"])
    fake_acts = np.concatenate(scan.feats["fake"])
    cached["computed"] = real_acts if cached["real"] is None else None
    n, n_real, dims = len(fake_acts), len(real_acts), real_acts.shape[1]
    rows = []
    nan = {"std": math.nan, "ci95_low": math.nan, "ci95_high": math.nan}
    if "fid" in nets.want:
        value = fid_from_activations(real_acts, fake_acts) if min(n, n_real) >= 2 else math.nan
        rows.append({"label": cfg.label, "metric": "fid", "mean": value, **nan, "n": n,
                     "note": _set_metric_note("fid", n, n_real, dims)})
    if "kid" in nets.want:
        mean, std = kernel_inception_distance(real_acts, fake_acts, cfg.kid_subsets, cfg.kid_subset_size)
        rows.append({"label": cfg.label, "metric": "kid", "mean": mean, **nan, "std": std, "n": n,
                     "note": _set_metric_note("kid", n, n_real, dims, std)})
    for m in ("fid", "kid"):
        if m in nets.want and min(n, n_real) < 2:
            nets.unavailable[m] = (f"needs at least 2 images on each side, got {min(n, n_real)}; fix: evaluate more "
                                   f"images, or leave {m} out of --metrics")
    return rows


def frame_csv(frame: pd.DataFrame) -> str:
    """A table as CSV text that keeps any file name in its cells (line breaks and carriage returns quoted;
    bytes that are not UTF-8 written as they are by :func:`atomic_write_text`)."""
    texts = (v for col in frame.select_dtypes(exclude="number").columns for v in frame[col])
    return frame.to_csv(index=False, lineterminator=csv_line_end(texts))


def read_frame_csv(path: Path) -> pd.DataFrame:
    """A CSV table written by :func:`frame_csv`, names as they were (pandas' C parser would replace a
    byte that is not UTF-8; its Python parser keeps it)."""
    return pd.read_csv(path, encoding_errors="surrogateescape", engine="python")


def write_reports(job: EvalJob, result: EvalResult, scan: Scan, nets: Networks) -> None:
    """per_image.csv, summary.csv, fcn.csv, evaluate.json (with provenance), report.html/json."""
    cfg, record, base = job.cfg, job.record, job.base
    door.ensure_folder(cfg.out)
    atomic_write_text(cfg.out / "per_image.csv", frame_csv(result.per_image))
    atomic_write_text(cfg.out / "summary.csv", frame_csv(result.summary))
    if result.fcn is not None:
        atomic_write_text(cfg.out / "fcn.csv", frame_csv(result.fcn))
    confusion = (scan.conf_fake, list(nets.seg.class_names)) if nets.seg is not None and scan.conf_fake is not None \
        else None
    prov = provenance(job, result, scan, nets)
    write_report_page(cfg.out, ReportData(
        cfg.label, result.per_image, result.summary, job.with_input,
        {"real": cfg.real, "fake": cfg.fake, "masked": cfg.mask_dir is not None,
         "model": (record or {}).get("run") or (record or {}).get("checkpoint")}, result.fcn, confusion,
        baseline=None if base is None else base[1], provenance=prov, unavailable=result.unavailable,
        errors=result.errors, identity=job.identity))
    atomic_write_text(cfg.out / "evaluate.json", json.dumps({
        "label": cfg.label, "real": str(cfg.real), "fake": str(cfg.fake), "real_is_ab": job.ab,
        "real_side": cfg.real_side, "metrics": list(cfg.metrics), "n": len(result.per_image),
        "metric_info": {m: {"per": METRICS[m].per, "higher_is_better": METRICS[m].higher_is_better,
                            "description": METRICS[m].description} for m in cfg.metrics},
        "pixel_scale": "all bands, each on 0-255 by the dataset's range (contract low/high), not clipped"
        if job.native is not None else "8-bit RGB",
        "run": (record or {}).get("run"), "checkpoint": (record or {}).get("checkpoint"),
        "baseline": None if base is None else {"what": base[1], "colour": [round(float(v), 3) for v in base[0]],
                                               "scores": _scores(result.summary, "baseline")},
        "identity": None if job.identity is None else {"what": job.identity,
                                                       "scores": _scores(result.summary, "identity")},
        "unavailable": result.unavailable, "failed": [{"name": s, "error": e} for s, e in result.errors],
        "provenance": prov,
    }, indent=2, default=str) + "\n")


def save_real_features(cfg: EvalConfig, cached: dict[str, Any]) -> None:
    """Store the real set's FID features for ``--cache-stats`` (when they were computed this time)."""
    if cached.get("computed") is None or not cached["key"] or cfg.cache_dir is None:
        return
    import io

    buf = io.BytesIO()
    np.save(buf, cached["computed"])
    atomic_write_bytes(cfg.cache_dir / f"fid-{cached['key']}.npy", buf.getvalue())


PREDICTION_RECORD = "predict.json"


def apply_prediction_record(cfg: EvalConfig) -> tuple[EvalConfig, dict[str, Any] | None]:
    """Read ``FAKE/predict.json`` (what ``p2ptools predict`` wrote: run, checkpoint, direction, data
    contract): the target half of an A|B ``--real`` follows the run's direction unless
    ``--real-side`` is given (a different explicit value is warned about), and the label names the run.

    Returns:
        The configuration with ``real_side`` and ``label`` resolved, and the record (None without one).
    """
    import dataclasses

    record = None
    path = cfg.fake / PREDICTION_RECORD
    if path.is_file():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("%s: not a readable prediction record (%s); ignored", path, exc)
        if not isinstance(record, dict):
            record = None
    direction = (record or {}).get("direction")
    from_record = "A" if direction == "BtoA" else "B" if direction == "AtoB" else None
    side = cfg.real_side
    if side is None:
        side = from_record or "B"
        if from_record == "A":
            log.info("%s: the model translates BtoA, so the target of an A|B --real is its A half", path)
    elif from_record is not None and side != from_record:
        log.warning("--real-side %s, but %s says the model was trained %s (its targets are the %s half); scoring "
                    "against the %s half as asked", side, path, direction, from_record, side)
    return dataclasses.replace(cfg, real_side=side), record


def baseline_colour(cfg: EvalConfig, record: dict[str, Any] | None, pairs: list[tuple[str, Path, Path]], ab: bool,
                    native: NativeSplit | None) -> tuple[np.ndarray, str] | None:
    """The colour a model that learned nothing would paint everywhere: the training targets' mean
    colour when the prediction record names the training dataset, else the real set's mean colour.
    None for GeoTIFF splits (scored on all bands) or when no pixel metric is asked for."""
    if native is not None or not pixel_metrics(cfg.metrics):
        return None
    train = _training_targets(record)
    if train is not None:
        files, side, root = train
        return _mean_colour(files, side), f"mean colour of the {len(files)} training targets in {root}"
    side = cfg.real_side if ab else None
    return _mean_colour([r for _, r, _ in pairs], side), f"mean colour of the {len(pairs)} real images"


def _training_targets(record: dict[str, Any] | None) -> tuple[list[Path], str, Path] | None:
    """The training split's A|B files and the target half, from a prediction record."""
    dataset = (record or {}).get("dataset")
    if not dataset:
        return None
    root = Path(str(dataset)) / "train"
    if not root.is_dir():
        return None
    from p2ptools.prep.images import IMAGE_EXTENSIONS

    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        return None
    return files, "A" if record.get("direction") == "BtoA" else "B", root.parent  # type: ignore[union-attr]


def _mean_colour(files: list[Path], side: str | None, limit: int = 2000) -> np.ndarray:
    """Per-channel mean over the pixels of ``files`` (their ``side`` half for A|B images; at most ``limit``
    files, evenly spaced)."""
    step = max(1, len(files) // limit)
    total, count = np.zeros(3), 0
    for p in files[::step]:
        try:
            img = load_rgb8(p)
        except P2PError:
            continue
        if side is not None:
            w = img.shape[1] // 2
            img = img[:, :w] if side == "A" else img[:, w:]
        total += img.reshape(-1, 3).sum(axis=0)
        count += img.shape[0] * img.shape[1]
    return total / max(count, 1)


def identity_baseline(cfg: EvalConfig, record: dict[str, Any] | None, ab: bool, native: NativeSplit | None
                      ) -> str | None:
    """What the identity baseline is, in words, when there is one: the input itself as the output, for an
    A|B ``--real`` whose halves are images (neither a label map by the prediction record's data contract or
    the split's ``dataset.json``) and a pixel metric; scored only when every input has its target's size
    (:func:`identity_means`). None for GeoTIFF splits, ``--labels`` and label data."""
    if not ab or native is not None or cfg.labels is not None or not pixel_metrics(cfg.metrics):
        return None
    contract = (record or {}).get("contract") or {}
    roles = {contract.get("a"), contract.get("b")}
    if not contract:
        try:
            meta = read_dataset_json(cfg.real.parent) or {}
        except P2PError:
            meta = {}
        roles = {meta.get("A"), meta.get("B")}
    if "label" in roles:
        return None
    half = "A" if cfg.real_side == "B" else "B"
    return f"each pair's input ({half} half), unchanged"


def _pixel_scores(real: np.ndarray, output: np.ndarray, mask: np.ndarray | None, want: set[str]) -> dict[str, Any]:
    """The wanted pixel metrics (:func:`pixel_metrics`) of ``output`` against ``real``, inside ``mask`` if any."""
    return {spec.name: spec.function(real, output, mask) for spec in pixel_metrics(want)}  # type: ignore[misc]


def _row_means(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The mean of each metric over a baseline's rows (as summary.csv gives a metric's mean)."""
    table = pd.DataFrame(rows)
    return {col: summarize(table[col])["mean"] for col in table.columns}


def _identity_row(it: dict[str, Any], want: set[str]) -> dict[str, Any] | None:
    """Pixel metrics of the input itself against the real image (None when their sizes differ)."""
    inp = it.get("label")
    if inp is None or inp.shape != it["real"].shape:
        return None
    return _pixel_scores(it["real"], inp, it.get("mask"), want)


def identity_means(scan: Scan) -> dict[str, float]:
    """The identity baseline's mean per pixel metric (summary.csv's ``identity``); empty unless every
    scored pair's input was comparable to its target."""
    if not scan.identity_rows or any(r is None for r in scan.identity_rows):
        return {}
    return _row_means(scan.identity_rows)  # type: ignore[arg-type]


def _scores(summary: pd.DataFrame, column: str) -> dict[str, float]:
    """``{metric: value}`` of a baseline column of the summary (its finite values)."""
    return {r["metric"]: float(r[column]) for _, r in summary.iterrows() if math.isfinite(r[column])}


def _baseline_row(it: dict[str, Any], colour: np.ndarray, want: set[str]) -> dict[str, Any]:
    """Pixel metrics of a constant image of ``colour`` against the real one."""
    flat = np.broadcast_to(np.clip(np.rint(colour), 0, 255).astype(np.uint8), it["real"].shape)
    return _pixel_scores(it["real"], np.ascontiguousarray(flat), it.get("mask"), want)


def baseline_means(scan: Scan) -> dict[str, float]:
    """The mean-colour baseline's mean per pixel metric, on the same images (summary.csv's ``baseline``)."""
    return _row_means(scan.base_rows)


def provenance(job: EvalJob, result: EvalResult, scan: Scan, nets: Networks) -> dict[str, Any]:
    """What the numbers rest on: versions, weights (SHA-256), resizing, image counts, device, notes."""
    import platform

    import skimage

    from p2ptools import __version__

    cfg, record, base = job.cfg, job.record, job.base
    n = len(result.per_image)
    notes = []
    if nets.fid is not None and n < 2048:
        notes.append(f"FID/KID rest on {n} image(s), fewer than the 2048 dimensions of the Inception features: "
                     "FID is biased upwards at this size; compare FID only between reports of equal n, prefer KID")
    sizes = sorted({f"{s[1]}×{s[0]}" for s in scan.sizes})
    return {
        "p2ptools": __version__, "torch": torch.__version__, "numpy": np.__version__,
        "scikit-image": skimage.__version__,
        "python": platform.python_version(), "device": str(job.device), "precision": job.precision,
        "weights": [{"file": k, "sha256": v} for k, v in nets.weights.items()],
        "resize": {"pairs": cfg.resize, "filter": "bilinear (OpenCV INTER_LINEAR)" if cfg.resize != "none" else None,
                   "fid_kid": "bilinear to 299×299 inside the Inception network (pytorch-fid)" if nets.fid is not None
                   else None},
        "images": {"pairs": len(scan.rows) + len(scan.errors), "scored": n, "failed": len(scan.errors),
                   "sizes": sizes},
        "model": {"run": (record or {}).get("run"), "checkpoint": (record or {}).get("checkpoint"),
                  "direction": (record or {}).get("direction")} if record else None,
        "baseline": base[1] if base is not None else None,
        "identity": job.identity,
        "notes": notes,
    }


def _set_metric_note(metric: str, n_fake: int, n_real: int, dims: int, std: float = 0.0) -> str:
    """The note of FID or KID, saying when the number rests on too few images to mean much."""
    n = min(n_fake, n_real)
    if n < 2:
        return f"not available: {metric.upper()} needs at least 2 images on each side, got {n}"
    note = METRICS[metric].description
    if metric == "fid" and n < dims:
        note += (f"; only {n} image(s) for {dims}-d features: the covariances are singular and FID is dominated "
                 "by that bias (pytorch-fid asks for at least 2048)")
    if metric == "kid" and not math.isfinite(std):
        note += "; std not available: every subset is the whole set"
    return note


def _note(metric: str, native: NativeSplit | None) -> str:
    """The report's description of ``metric`` (with the scale of GeoTIFF bands where they were scored)."""
    if metric.startswith("l1_band"):
        return f"mean absolute error of band {metric[7:]}, 0-255 scale of the dataset's range"
    metric_spec = spec_of(metric)
    if metric_spec is None:
        return ""
    note = metric_spec.description if metric == metric_spec.main_column else ""
    if native is not None and native.specs[native.target].role == "photo" and metric_spec.function is not None:
        spec = native.specs[native.target]
        note = note.replace("RGB channels", "all bands") + (f"; all {spec.channels} band(s) of {spec.dtype}, each "
                                                            "put on 0-255 by the dataset's range, not clipped")
    elif native is not None and metric_spec.function is None:  # the networks' metrics
        note += "; on the RGB view (bands 1-3, or band 1 as gray)"
    return note


def _undefined_note(column: str, values: pd.Series) -> str:
    """``; NaN for k of n image(s): why`` when some values of ``column`` are NaN (the metric's ``undefined``)."""
    spec, missing = spec_of(column), int(values.isna().sum())
    if not missing or spec is None or not spec.undefined:
        return ""
    log.warning("%s: NaN for %d of %d image(s) (%s)", column, missing, len(values), spec.undefined)
    return f"; NaN for {missing} of {len(values)} image(s): {spec.undefined}"


def _split_rows(groups: list[list[dict[str, Any]]], rows: list[dict[str, Any]]):
    i = 0
    for g in groups:
        yield g, rows[i : i + len(g)]
        i += len(g)


def _read_summary(rep: Path) -> pd.DataFrame:
    """``rep/summary.csv`` of an evaluate report (columns label, metric, mean, std, n).

    Raises:
        InputError: when it is missing, unreadable, or lacks those columns.
    """
    path = rep / "summary.csv"
    if not path.is_file():
        raise InputError(f"{rep}: no summary.csv (run p2ptools evaluate --out {rep} first)")
    try:
        s = read_frame_csv(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # pandas' parser and empty-file errors are ValueErrors
        raise InputError(f"{path}: not a readable evaluate summary ({' '.join(str(exc).split())}); run p2ptools "
                         f"evaluate --out {rep} again") from None
    missing = [c for c in ("label", "metric", "mean", "std", "n") if c not in s.columns]
    if missing:
        raise InputError(f"{path}: not an evaluate summary (no {', '.join(missing)} column); run p2ptools evaluate "
                         f"--out {rep} again")
    numbers = s[["mean", "std", "n"]].apply(pd.to_numeric, errors="coerce")
    bad = ~s["metric"].map(lambda m: isinstance(m, str) and bool(m)) | numbers["mean"].isna() & s["mean"].notna() \
        | numbers["n"].isna() | (numbers["n"] % 1 != 0)
    if bad.any():
        row = int(bad.idxmax()) + 2  # the file's line: a header, then rows from 0
        raise InputError(f"{path}: line {row} is not an evaluate summary row (a metric name, a number for mean and "
                         f"a count for n); run p2ptools evaluate --out {rep} again")
    return s.assign(mean=numbers["mean"], std=numbers["std"], n=numbers["n"].astype(int))


def compare_reports(reports: list[Path], out: Path) -> pd.DataFrame:
    """One table, a row per run (its label), a column per metric (means; ``kid_std`` beside KID).

    Raises:
        InputError: if a report folder has no summary.csv, or a damaged summary.csv or report.json
            (before anything is written).
    """
    from p2ptools.evaluation.report import read_report_doc

    claim_folder(out, {"comparison.csv", "comparison.html"})
    rows = []
    for rep in reports:
        s = _read_summary(Path(rep))
        read_report_doc(Path(rep))  # a damaged one is told now, before anything is written
        row: dict[str, Any] = {"run": s["label"].iloc[0] if len(s) else Path(rep).name}
        for r in s.itertuples():
            row[r.metric] = r.mean
            if r.metric == "kid":
                row["kid_std"] = r.std
        row["n"] = int(s["n"].max()) if len(s) else 0
        rows.append(row)
    table = pd.DataFrame(rows)
    door.ensure_folder(out)
    atomic_write_text(out / "comparison.csv", frame_csv(table))
    write_comparison_page(out, table, [Path(r) for r in reports])
    return table
