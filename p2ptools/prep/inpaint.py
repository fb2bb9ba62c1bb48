"""``p2ptools make-inpaint``: hole masks and inpainting AB pairs from any folder of photos.

The seed protocol (pix2pix-tensorflow's inpainting): every photo becomes a 3-channel 8-bit square
of one size; a copy gets a white rectangle a third of the width by a third of the height in its
centre (1/9 of the area); A = the copy with the hole, B = the original, glued side by side.

The run has two parallel passes. The scan decodes every file once to check it and hash its
pixels (cached in ``OUT/.p2ptools/scan.csv`` by path, size and mtime, so reruns do not decode
again); images with identical pixels are duplicates and always share a split. The write pass
makes the pairs that are not on disk yet. Hole geometry depends only on the seed and the pair's
name, so it is the same on every run and in any worker.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p2ptools.config import InpaintConfig
from p2ptools.contract import DataContract
from p2ptools.errors import DiskFullError, InputError, P2PError
from p2ptools.prep.images import IMAGE_EXTENSIONS, fit_square, list_images, load_rgb8
from p2ptools.prep.splits import SPLITS, assign_splits
from p2ptools.prep.tiling import compose_ab
from p2ptools.runtime.output import (
    MANIFEST_FILE,
    STATE_DIR,
    atomic_write_text,
    check_distinct_outputs,
    check_not_inside,
    csv_text,
    inputs_digest,
    prepare_output,
    read_csv_rows,
    record_plan,
    write_dataset_json,
    write_image,
)
from p2ptools.runtime.parallel import imap_unordered
from p2ptools.runtime.progress import bar as progress_bar
from p2ptools.runtime.progress import report as say

log = logging.getLogger(__name__)

MASK_DIR = "masks"


@dataclass(frozen=True)
class Box:
    """A rectangle in pixel coordinates of the output square: columns ``x..x+w``, rows ``y..y+h``."""

    x: int
    y: int
    w: int
    h: int

    def __str__(self) -> str:
        return f"{self.x} {self.y} {self.w} {self.h}"


def hole_side(size: int, area: float = 1.0 / 9.0) -> int:
    """Side of the centred square hole covering ``area`` of a ``size × size`` image: ``round(size·√area)``."""
    return max(1, round(size * math.sqrt(area)))


def center_box(size: int, area: float = 1.0 / 9.0) -> Box:
    """The centred square hole: side ``round(size·√area)``, offset ``(size − side) // 2``.

    At the default area it is a third of the width by a third of the height; for sizes divisible
    by 3 it covers exactly 1/9 of the image (96 px → a 32-px hole at (32, 32)).
    """
    side = hole_side(size, area)
    off = (size - side) // 2
    return Box(off, off, side, side)


def random_box(size: int, area: float, rng: np.random.Generator) -> Box:
    """A rectangle of ``area·size²`` pixels (±rounding), aspect ratio log-uniform in [1/2, 2], anywhere."""
    pixels = area * size * size
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    w = min(size, max(1, round(math.sqrt(pixels * aspect))))
    h = min(size, max(1, round(pixels / w)))
    x = int(rng.integers(0, size - w + 1))
    y = int(rng.integers(0, size - h + 1))
    return Box(x, y, w, h)


def hole_boxes(kind: str, size: int, area: float, rng: np.random.Generator) -> list[Box]:
    """The hole rectangles of one pair.

    Args:
        kind: ``center``, ``random`` or ``random-multi`` (2–5 rectangles of ``area / k`` each;
            they may overlap, so the union can be smaller than ``area``).
        size: side of the square image.
        area: fraction of the image to cover.
        rng: the pair's random generator.
    """
    if kind == "center":
        return [center_box(size, area)]
    if kind == "random":
        return [random_box(size, area, rng)]
    if kind == "random-multi":
        k = int(rng.integers(2, 6))
        return [random_box(size, area / k, rng) for _ in range(k)]
    raise ValueError(f"unknown hole kind {kind!r}")


def hole_mask(size: int, boxes: list[Box]) -> np.ndarray:
    """``(size, size)`` bool mask, True inside the hole."""
    mask = np.zeros((size, size), dtype=bool)
    for b in boxes:
        mask[b.y : b.y + b.h, b.x : b.x + b.w] = True
    return mask


def fill_hole(img: np.ndarray, mask: np.ndarray, fill: str, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``img`` with the masked pixels replaced.

    Args:
        fill: ``white`` (255), ``black`` (0), ``noise`` (uniform random colours) or ``mean``
            (the image's mean colour, rounded).
    """
    out = img.copy()
    if fill == "white":
        out[mask] = 255
    elif fill == "black":
        out[mask] = 0
    elif fill == "noise":
        out[mask] = rng.integers(0, 256, size=(int(mask.sum()), 3), dtype=np.uint8)
    elif fill == "mean":
        out[mask] = np.round(img.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
    else:
        raise ValueError(f"unknown fill {fill!r}")
    return out


def pair_rng(seed: int, name: str) -> np.random.Generator:
    """The random generator of one pair: a function of the seed and the pair's name only."""
    digest = hashlib.blake2b(os.fsencode(f"{seed}:{name}"), digest_size=8).digest()  # any file name
    return np.random.default_rng(int.from_bytes(digest, "big"))


def make_pair(img: np.ndarray, cfg: InpaintConfig, name: str) -> tuple[np.ndarray, np.ndarray, list[Box]]:
    """Fit a photo to the square and make its inpainting pair.

    Returns:
        ``(size, 2·size, 3)`` AB image (A = with hole, B = original), the hole mask, the boxes.
    """
    square = fit_square(img, cfg.size, cfg.fit)
    rng = pair_rng(cfg.seed, name)
    boxes = hole_boxes(cfg.hole, cfg.size, cfg.hole_area, rng)
    mask = hole_mask(cfg.size, boxes)
    return compose_ab(fill_hole(square, mask, cfg.fill, rng), square), mask, boxes


# --- the pipeline -------------------------------------------------------------------------------

@dataclass
class ScanResult:
    """What the scan learnt of one file."""

    rel: str
    size: int
    mtime_ns: int
    sha1: str = ""
    width: int = 0
    height: int = 0
    error: str = ""


@dataclass
class InpaintReport:
    """What a make-inpaint run did.

    Args:
        out: output folder.
        pairs: pairs per split.
        written: pairs written in this run.
        existing: pairs found already written.
        skipped: (file, reason) of every input skipped.
        duplicates: groups of relative paths with identical pixels.
    """

    out: Path
    pairs: dict[str, int] = field(default_factory=dict)
    written: int = 0
    existing: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)

    def summary(self) -> str:
        """A few human-readable lines."""
        pairs = ", ".join(f"{s} {self.pairs.get(s, 0)}" for s in SPLITS)
        lines = [
            f"{sum(self.pairs.values())} inpainting pairs in {self.out} ({pairs})",
            f"written now: {self.written}, already there: {self.existing}; manifest: {self.out / MANIFEST_FILE}",
        ]
        if self.duplicates:
            lines.append(f"{len(self.duplicates)} group(s) of duplicate images (kept in one split each):")
            lines += ["  " + " = ".join(g) for g in self.duplicates[:20]]
            if len(self.duplicates) > 20:
                lines.append(f"  … and {len(self.duplicates) - 20} more (see the manifest's duplicate_of)")
        return "\n".join(lines)


def _scan_one(args: tuple[str, str]) -> ScanResult:
    root, rel = args
    path = Path(root) / rel
    st = path.stat()
    res = ScanResult(rel, st.st_size, st.st_mtime_ns)
    try:
        img = load_rgb8(path)
    except P2PError as exc:
        res.error = str(exc)
        return res
    res.height, res.width = img.shape[:2]
    res.sha1 = hashlib.sha1(img.tobytes() + repr(img.shape).encode()).hexdigest()
    return res


def _scan(cfg: InpaintConfig, rels: list[str], progress: bool) -> dict[str, ScanResult]:
    cache_path = cfg.out / STATE_DIR / "scan.csv"
    cached: dict[str, ScanResult] = {}
    if cache_path.is_file():
        for row in read_csv_rows(cache_path)[1]:
            r = ScanResult(row["rel"], int(row["size"]), int(row["mtime_ns"]), row["sha1"],
                           int(row["width"]), int(row["height"]), row["error"])
            cached[r.rel] = r
    results: dict[str, ScanResult] = {}
    todo = []
    for rel in rels:
        st = (cfg.src / rel).stat()
        old = cached.get(rel)
        if old is not None and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns):
            results[rel] = old
        else:
            todo.append((str(cfg.src), rel))
    with progress_bar(len(todo), "scan", "img", progress) as bar:
        for res in imap_unordered(_scan_one, todo, cfg.workers, cfg.dask,
                                  on_error=lambda a, exc: ScanResult(a[1], 0, 0, error=f"task failed: {exc!r}")):
            results[res.rel] = res
            bar.update(1)
    atomic_write_text(cache_path, csv_text([vars(results[rel]) for rel in rels]))
    return results


def _names(rels: list[str]) -> dict[str, str]:
    """Output names: the file stem, or the relative path joined by ``__`` where stems collide."""
    stems = Counter(Path(r).stem for r in rels)
    return {r: Path(r).stem if stems[Path(r).stem] == 1 else str(Path(r).with_suffix("")).replace("/", "__")
            for r in rels}


@dataclass(frozen=True)
class _WriteTask:
    src: str
    rel: str
    name: str
    split: str
    cfg: InpaintConfig


def _write_one(task: _WriteTask) -> tuple[str, str]:
    """Make and write one pair (and its mask); returns (rel, error or "")."""
    cfg = task.cfg
    try:
        img = load_rgb8(Path(task.src) / task.rel)
        ab, mask, _ = make_pair(img, cfg, task.name)
        write_image(cfg.out / task.split / f"{task.name}.{cfg.format}", ab, cfg.format, cfg.jpeg_quality)
        if cfg.save_masks:
            write_image(cfg.out / MASK_DIR / task.split / f"{task.name}.png", mask.astype(np.uint8) * 255, "png")
    except DiskFullError:
        raise  # the output's disk, not this input: the run stops
    except (P2PError, OSError) as exc:
        return task.rel, str(exc)
    return task.rel, ""


def make_inpaint_dataset(cfg: InpaintConfig, progress: bool = True) -> InpaintReport:
    """Build inpainting AB pairs from every image under ``cfg.src`` (see the module docstring).

    Returns:
        The report; ``report.skipped`` lists inputs that were skipped, with the reason.

    Raises:
        InputError: if the source has no images.
        OutputError: if the output folder holds another dataset, or is or holds the input folder.
    """
    check_not_inside(cfg.out, [cfg.src])  # before the scan, which leaves the output folder out
    files = list_images(cfg.src, exclude=cfg.out)
    if not files:
        raise InputError(f"{cfg.src}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    rels = [str(p.relative_to(cfg.src)) for p in files]
    names = _names(rels)
    check_distinct_outputs(cfg.out, names.items())
    meta = _start_output(cfg, rels)
    scans = _scan(cfg, rels, progress)
    report = InpaintReport(out=cfg.out)
    plan = _plan_pairs(cfg, rels, scans, report)
    _write_pairs(cfg, plan, names, report, progress)
    rows = _manifest_rows(cfg, rels, names, scans, plan)
    atomic_write_text(cfg.out / MANIFEST_FILE, csv_text(rows))
    report.skipped = [(str(cfg.src / rel), plan.reasons[rel]) for rel in rels if rel in plan.reasons]
    counts = Counter(r["split"] for r in rows if r["status"] == "ok")
    report.pairs = {s: counts.get(s, 0) for s in SPLITS}
    meta.update({"counts": report.pairs, "skipped": [{"file": f, "reason": r} for f, r in report.skipped],
                 "duplicates": report.duplicates, "complete": not report.skipped})
    write_dataset_json(cfg.out, meta)
    return report


def _start_output(cfg: InpaintConfig, rels: list[str]) -> dict[str, Any]:
    """Claim OUT (resume, refuse or --overwrite) and write the first dataset.json; returns it."""
    params = {**cfg.output_params(), "inputs": inputs_digest(rels)}
    prepare_output(cfg.out, "inpaint", params, cfg.overwrite, inputs=[cfg.src], input_names=rels)
    contract = DataContract(kind="inpaint", a="photo with hole", b="photo", size=cfg.size)
    meta: dict[str, Any] = {"kind": "inpaint", "params": params, "A": "photo with hole", "B": "photo",
                            "complete": False, "input_names": rels, "contract": contract.to_dict()}
    write_dataset_json(cfg.out, meta)
    say("make-inpaint: %d image(s) of %s → %s (%d px, %s holes)", len(rels), cfg.src, cfg.out, cfg.size, cfg.hole)
    return meta


@dataclass
class _PairPlan:
    """Which inputs make pairs, their split (duplicates together), and why the others do not."""

    good: list[str]
    split_of: dict[str, str]
    groups: dict[str, list[str]]
    reasons: dict[str, str]


def _plan_pairs(cfg: InpaintConfig, rels: list[str], scans: dict[str, Any], report: InpaintReport) -> _PairPlan:
    """Leave out unreadable and too-small images; split by content so duplicates share a split."""
    side = hole_side(cfg.size, cfg.hole_area)
    good: list[str] = []
    reasons: dict[str, str] = {}
    for rel in rels:
        s = scans[rel]
        if s.error:
            reasons[rel] = s.error
        elif min(s.width, s.height) < side:
            reasons[rel] = (f"{cfg.src / rel}: {s.width}×{s.height} is smaller than the {side}-px hole "
                            f"of a {cfg.size}-px pair")
        else:
            good.append(rel)
    groups: dict[str, list[str]] = defaultdict(list)
    for rel in good:
        groups[scans[rel].sha1].append(rel)
    report.duplicates = [g for g in groups.values() if len(g) > 1]
    group_split = assign_splits(list(groups), cfg.split, cfg.seed)
    return _PairPlan(good, {rel: group_split[scans[rel].sha1] for rel in good}, groups, reasons)


def _write_pairs(cfg: InpaintConfig, plan: _PairPlan, names: dict[str, str], report: InpaintReport,
                 progress: bool) -> None:
    """Record the plan, then write the pairs not already there (workers or Dask); failures go to reasons."""
    record_plan(cfg.out, (f"{d}{plan.split_of[rel]}/{names[rel]}.{ext}" for rel in plan.good
                          for d, ext in (("", cfg.format), (f"{MASK_DIR}/", "png"))))
    tasks = []
    for rel in plan.good:
        out_file = cfg.out / plan.split_of[rel] / f"{names[rel]}.{cfg.format}"
        mask_file = cfg.out / MASK_DIR / plan.split_of[rel] / f"{names[rel]}.png"
        if out_file.exists() and (not cfg.save_masks or mask_file.exists()):
            report.existing += 1
        else:
            tasks.append(_WriteTask(str(cfg.src), rel, names[rel], plan.split_of[rel], cfg))
    with progress_bar(len(tasks), "make-inpaint", "pair", progress) as bar:
        for rel, error in imap_unordered(_write_one, tasks, cfg.workers, cfg.dask,
                                         on_error=lambda task, exc: (task.rel, f"task failed: {exc!r}")):
            bar.update(1)
            if error:
                plan.reasons[rel] = error
            else:
                report.written += 1


def _manifest_rows(cfg: InpaintConfig, rels: list[str], names: dict[str, str], scans: dict[str, Any],
                   plan: _PairPlan) -> list[dict[str, Any]]:
    """A manifest row per input: its pair (split, hole boxes, hole fraction) or why it was skipped."""
    rows = []
    for rel in rels:
        s, name = scans[rel], names[rel]
        ok = rel in plan.split_of and rel not in plan.reasons
        boxes = hole_boxes(cfg.hole, cfg.size, cfg.hole_area, pair_rng(cfg.seed, name)) if ok else []
        group = plan.groups.get(s.sha1, []) if ok else []
        rows.append({
            "source": rel, "name": name if ok else "", "split": plan.split_of.get(rel, "") if ok else "",
            "src_width": s.width, "src_height": s.height, "hole": "; ".join(map(str, boxes)),
            "hole_fraction": round(float(hole_mask(cfg.size, boxes).mean()), 6) if ok else "",
            "duplicate_of": group[0] if ok and group[0] != rel else "",
            "status": "ok" if ok else "skipped", "reason": plan.reasons.get(rel, ""),
            "file": f"{plan.split_of[rel]}/{name}.{cfg.format}" if ok else "",
        })
    return rows
