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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from p2ptools.errors import ConfigError, InputError, P2PError
from p2ptools.evaluation.metrics import pixel
from p2ptools.evaluation.native import NativeSplit, find_native_split, load_pair
from p2ptools.evaluation.report import thumb_names, write_comparison_page, write_report_page, write_thumbs
from p2ptools.pix2pix.predict import detect_input_kind
from p2ptools.prep.images import image_size, images_by_stem, load_rgb8, resize
from p2ptools.runtime.device import select_device
from p2ptools.runtime.output import atomic_write_bytes, atomic_write_text, claim_folder
from p2ptools.runtime.progress import Ticker, report

log = logging.getLogger(__name__)

#: The files ``evaluate`` writes into its output folder.
REPORT_FILES: tuple[str, ...] = ("per_image.csv", "summary.csv", "fcn.csv", "evaluate.json", "report.html",
                                  "report.json")

PER_IMAGE_METRICS = ("l1", "l2", "psnr", "ssim", "vgg", "lpips")
SET_METRICS = ("fid", "kid", "fcn")
ALL_METRICS = PER_IMAGE_METRICS + SET_METRICS
NOTES = {
    "fid": "Fréchet Inception distance (pytorch-fid network, 2048-d pool features, fp32, bilinear resize to 299); "
           "biased upwards at small n: compare only at equal n, prefer KID for a few hundred images",
    "kid": "kernel Inception distance ×1 (unbiased MMD², cubic polynomial kernel), mean ± std over subsets",
    "vgg_cos": "VGG19 feature cosine per spatial position, mean over relu1_2, relu2_2, relu3_4, relu4_4, relu5_4",
    "lpips": "LPIPS v0.1 (AlexNet, Zhang et al. 2018): learned perceptual distance, lower is closer, 0 = identical",
}


@dataclass
class EvalConfig:
    """Options of ``p2ptools evaluate``.

    Args:
        real: real targets: a folder of images or an aligned A|B split.
        fake: generated images, named like the real ones.
        out: report folder.
        metrics: metric names (see :data:`ALL_METRICS`).
        label: the run's name in the reports.
        real_side: for an A|B ``real``: the half holding the target (``B`` unless the dataset was
            trained BtoA).
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
    metrics: tuple[str, ...] = ("l1", "l2", "psnr", "ssim")
    label: str = ""
    real_side: str = "B"
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
        unknown = [m for m in self.metrics if m not in ALL_METRICS]
        if unknown:
            raise ConfigError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(ALL_METRICS)}")
        if not self.metrics:
            raise ConfigError("no metrics asked for")
        if self.real_side not in ("A", "B") or self.real_kind not in ("auto", "image", "ab"):
            raise ConfigError("real_side must be A or B, real_kind auto, image or ab")
        if self.resize not in ("none", "real", "fake"):
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
    fake = images_by_stem(cfg.fake)
    only_r, only_f = sorted(set(real) - set(fake)), sorted(set(fake) - set(real))
    if only_r or only_f:
        parts = []
        if only_r:
            parts.append(f"only in {cfg.real} ({len(only_r)}): {', '.join(only_r[:20])}")
        if only_f:
            parts.append(f"only in {cfg.fake} ({len(only_f)}): {', '.join(only_f[:20])}")
        raise InputError("real and fake images do not match by name; " + "; ".join(parts))
    if not real:
        raise InputError(f"{cfg.real}: no images")
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
    """uint8 ``(H, W, 3)`` images → ``(N, 3, H, W)`` float32 in [0, 1] (``ToTensor`` semantics)."""
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).to(device, torch.float32).div_(255.0)


@dataclass
class EvalResult:
    """Per-image table, summary table and the FCN table (if asked)."""

    per_image: pd.DataFrame
    summary: pd.DataFrame
    fcn: pd.DataFrame | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)


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
    h = hashlib.sha256(what.encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    if resized_to is not None:
        for p in resized_to:
            try:
                h.update(f"{image_size(p)}\n".encode())
            except P2PError:
                h.update(b"?\n")
    return h.hexdigest()[:24]


def evaluate(cfg: EvalConfig, progress: bool = True) -> EvalResult:
    """Compute the metrics of ``cfg`` and write the reports to ``cfg.out`` (see the module docstring).

    Raises:
        InputError: for unmatched names, unreadable or differently sized images (listed).
        WeightsNotFound: if weights are missing offline (before any image is processed).
        WeightsDownloadError: if a weights download failed.
    """
    pairs, ab, native = match_pairs(cfg)
    with_input = ab or cfg.labels is not None or native is not None
    thumbs = {rel for i in range(len(pairs)) for rel in thumb_names(i, with_input).values()}
    claim_folder(cfg.out, set(REPORT_FILES) | thumbs, inputs=[cfg.real, cfg.fake])
    device = select_device(cfg.device)
    want = set(cfg.metrics)
    fid_net = vgg_net = lpips_net = seg = None
    if want & {"fid", "kid"}:
        from p2ptools.evaluation.metrics.fid import load_fid_network

        fid_net = load_fid_network(cfg.weights_dir, cfg.fid_dims, offline=cfg.offline).to(device)
    if "vgg" in want:
        from p2ptools.evaluation.metrics.vgg import load_vgg_network

        vgg_net = load_vgg_network(cfg.weights_dir, cfg.offline).to(device)
    if "lpips" in want:
        from p2ptools.evaluation.metrics.lpips import load_lpips_network

        lpips_net = load_lpips_network(cfg.weights_dir, cfg.offline).to(device)
    if "fcn" in want:
        from p2ptools.evaluation.segment import load_segmenter

        seg = load_segmenter(cfg.segmenter, device)  # type: ignore[arg-type]
        if not ab and cfg.labels is None and native is None:
            raise ConfigError("the fcn metric needs labels: give --real as an A|B split or --labels DIR")
    cache: dict[str, np.ndarray] = {}
    real_key = ""
    if fid_net is not None and cfg.cache_dir is not None:
        from p2ptools.evaluation.metrics.fid import FID_WEIGHTS
        from p2ptools.evaluation.weights import weights_digest

        real_key = _feature_cache_key(
            [r for _, r, _ in pairs],
            f"fid{cfg.fid_dims}|{weights_digest(FID_WEIGHTS, cfg.weights_dir)}|{cfg.real_side}|{ab}|{cfg.resize}",
            [f for _, _, f in pairs] if cfg.resize == "real" else None)
        cached = cfg.cache_dir / f"fid-{real_key}.npy"
        if cached.is_file():
            cache["real"] = np.load(cached)

    ds = _PairSet(pairs, cfg, ab, native)
    loader = DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.workers, collate_fn=_collate)
    rows: list[dict[str, Any]] = []
    errors: list[tuple[str, str]] = []
    feats: dict[str, list[np.ndarray]] = {"real": [], "fake": []}
    conf_fake = conf_real = None
    with Ticker(len(ds), "evaluate", "images", show_bar=progress) as ticker, torch.inference_mode():
        for items in loader:
            ticker.update(len(items))
            good = [it for it in items if not it["error"]]
            errors += [(it["stem"], it["error"]) for it in items if it["error"]]
            if not good:
                continue
            for it in good:
                write_thumbs(cfg.out, len(rows), it)
                row: dict[str, Any] = {"name": it["stem"]}
                real_px, fake_px = it.get("real_all", it["real"]), it.get("fake_all", it["fake"])
                for name in ("l1", "l2", "psnr", "ssim"):
                    if name in want:
                        row[name] = pixel.PIXEL_METRICS[name](real_px, fake_px, it.get("mask"))
                if "l1" in want and native is not None and native.per_band():
                    for b in range(real_px.shape[-1]):
                        row[f"l1_band{b + 1}"] = pixel.l1(real_px[..., b], fake_px[..., b], it.get("mask"))
                rows.append(row)
            batch_rows = rows[-len(good):]
            sizes = {it["real"].shape for it in good}
            groups = [good] if len(sizes) == 1 else [[it] for it in good]
            for group, grow in _split_rows(groups, batch_rows):
                real_t = _to_batch([it["real"] for it in group], device)
                fake_t = _to_batch([it["fake"] for it in group], device)
                if fid_net is not None:
                    if "real" not in cache:
                        feats["real"].append(fid_net(real_t).double().cpu().numpy())
                    feats["fake"].append(fid_net(fake_t).double().cpu().numpy())
                if vgg_net is not None:
                    from p2ptools.evaluation.metrics.vgg import vgg_cosine

                    for k, v in vgg_cosine(vgg_net, real_t, fake_t).items():
                        for r, x in zip(grow, v.cpu().tolist(), strict=True):
                            r[k] = x
                if lpips_net is not None:
                    for r, x in zip(grow, lpips_net(real_t, fake_t).cpu().tolist(), strict=True):
                        r["lpips"] = x
                if seg is not None:
                    from p2ptools.evaluation.segment import fcn_confusions

                    cf, cr = fcn_confusions(seg, group, device)
                    conf_fake = cf if conf_fake is None else conf_fake + cf
                    conf_real = cr if conf_real is None else conf_real + cr
    if errors:  # the others are scored and written; the command then lists these and exits 1
        log.warning("%d of %d pair(s) cannot be evaluated and are left out: %s", len(errors), len(pairs),
                    "; ".join(f"{s}: {e}" for s, e in errors[:5]) + (" …" if len(errors) > 5 else ""))
    if not rows:
        lines = "\n".join(f"  {s}: {e}" for s, e in errors[:30])
        raise InputError(f"no pair could be evaluated ({len(errors)} failed):\n{lines}")

    per_image = pd.DataFrame(rows)
    summary_rows = []
    for col in per_image.columns:
        if col == "name":
            continue
        summary_rows.append({"label": cfg.label, "metric": col, **summarize(per_image[col]),
                             "note": _note(col, native)})
    if fid_net is not None:
        from p2ptools.evaluation.metrics.fid import fid_from_activations, kernel_inception_distance

        real_acts = cache["real"] if "real" in cache else np.concatenate(feats["real"])
        fake_acts = np.concatenate(feats["fake"])
        if real_key and "real" not in cache and cfg.cache_dir is not None:
            cfg.cache_dir.mkdir(parents=True, exist_ok=True)
            import io

            buf = io.BytesIO()
            np.save(buf, real_acts)
            atomic_write_bytes(cfg.cache_dir / f"fid-{real_key}.npy", buf.getvalue())
        n = len(fake_acts)
        if "fid" in want:
            value = fid_from_activations(real_acts, fake_acts) if min(n, len(real_acts)) >= 2 else math.nan
            summary_rows.append({"label": cfg.label, "metric": "fid", "mean": value, "std": math.nan,
                                 "ci95_low": math.nan, "ci95_high": math.nan, "n": n,
                                 "note": _set_metric_note("fid", n, len(real_acts), real_acts.shape[1])})
        if "kid" in want:
            mean, std = kernel_inception_distance(real_acts, fake_acts, cfg.kid_subsets, cfg.kid_subset_size)
            summary_rows.append({"label": cfg.label, "metric": "kid", "mean": mean, "std": std,
                                 "ci95_low": math.nan, "ci95_high": math.nan, "n": n,
                                 "note": _set_metric_note("kid", n, len(real_acts), real_acts.shape[1], std)})
    fcn_table = None
    if seg is not None and conf_fake is not None and conf_real is not None:
        from p2ptools.evaluation.segment import fcn_table as make_fcn_table

        fcn_table = make_fcn_table(cfg.label, conf_fake, conf_real, seg.class_names)
        for r in fcn_table[fcn_table["class"] == "all"].itertuples():
            for metric in ("per_pixel_acc", "mean_class_acc", "mean_class_iou"):
                summary_rows.append({"label": cfg.label, "metric": f"fcn_{metric}" + ("" if r.images == "generated"
                                                                                   else "_ground_truth"),
                                     "mean": getattr(r, metric), "std": math.nan, "ci95_low": math.nan,
                                     "ci95_high": math.nan, "n": len(per_image),
                                     "note": f"FCN-score on {r.images} images"})
    summary = pd.DataFrame(summary_rows)
    for r in summary_rows:
        spread = f" ± {r['std']:.4g}" if math.isfinite(r.get("std", math.nan)) else ""
        report("evaluate %s: %s = %.4g%s (n %d)", cfg.label, r["metric"], r["mean"], spread, r["n"])
    cfg.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg.out / "per_image.csv", per_image.to_csv(index=False))
    atomic_write_text(cfg.out / "summary.csv", summary.to_csv(index=False))
    if fcn_table is not None:
        atomic_write_text(cfg.out / "fcn.csv", fcn_table.to_csv(index=False))
    confusion = (conf_fake, list(seg.class_names)) if seg is not None and conf_fake is not None else None
    write_report_page(cfg.out, cfg.label, per_image, summary, with_input,
                      {"real": cfg.real, "fake": cfg.fake, "masked": cfg.mask_dir is not None}, fcn_table, confusion)
    atomic_write_text(cfg.out / "evaluate.json", json.dumps({
        "label": cfg.label, "real": str(cfg.real), "fake": str(cfg.fake), "real_is_ab": ab,
        "real_side": cfg.real_side, "metrics": list(cfg.metrics), "n": len(per_image),
        "pixel_scale": "all bands, each on 0-255 by the dataset's range (contract low/high), not clipped"
        if native is not None else "8-bit RGB",
    }, indent=2) + "\n")
    return EvalResult(per_image, summary, fcn_table, errors)


def _set_metric_note(metric: str, n_fake: int, n_real: int, dims: int, std: float = 0.0) -> str:
    """The note of FID or KID, saying when the number rests on too few images to mean much."""
    n = min(n_fake, n_real)
    if n < 2:
        return f"not available: {metric.upper()} needs at least 2 images on each side, got {n}"
    note = NOTES[metric]
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
    note = pixel.DESCRIPTIONS.get(metric, NOTES.get(metric, ""))
    if native is not None and native.specs[native.target].role == "photo" and metric in pixel.PIXEL_METRICS:
        spec = native.specs[native.target]
        note = note.replace("RGB channels", "all bands") + (f"; all {spec.channels} band(s) of {spec.dtype}, each "
                                                            "put on 0-255 by the dataset's range, not clipped")
    elif native is not None and (metric in ("fid", "kid", "lpips") or metric.startswith("vgg")):
        note += "; on the RGB view (bands 1-3, or band 1 as gray)"
    return note


def _split_rows(groups: list[list[dict[str, Any]]], rows: list[dict[str, Any]]):
    i = 0
    for g in groups:
        yield g, rows[i : i + len(g)]
        i += len(g)


def compare_reports(reports: list[Path], out: Path) -> pd.DataFrame:
    """One table, a row per run (its label), a column per metric (means; ``kid_std`` beside KID).

    Raises:
        InputError: if a report folder has no summary.csv.
    """
    claim_folder(out, {"comparison.csv", "comparison.html"})
    rows = []
    for rep in reports:
        path = Path(rep) / "summary.csv"
        if not path.is_file():
            raise InputError(f"{rep}: no summary.csv (run p2ptools evaluate --out {rep} first)")
        s = pd.read_csv(path)
        row: dict[str, Any] = {"run": s["label"].iloc[0] if len(s) else Path(rep).name}
        for r in s.itertuples():
            row[r.metric] = r.mean
            if r.metric == "kid":
                row["kid_std"] = r.std
        row["n"] = int(s["n"].max()) if len(s) else 0
        rows.append(row)
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "comparison.csv", table.to_csv(index=False))
    write_comparison_page(out, table, [Path(r) for r in reports])
    return table
