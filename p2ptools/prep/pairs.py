"""``p2ptools pair`` and ``p2ptools unpair``: join two folders into AB images, and split them back.

``pair`` does what pix2pix's ``combine_A_and_B.py`` does, with checks: images are matched by file
stem (per split when both folders have ``train/``, ``val/``, ``test/``), and every unmatched name
and size mismatch is listed before anything is written. ``unpair`` does the reverse, like the
TensorFlow pix2pix tutorial's split of the facades images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2ptools.contract import DataContract
from p2ptools.errors import DiskFullError, InputError, P2PError
from p2ptools.prep.images import IMAGE_EXTENSIONS, image_size, images_by_stem, list_images, load_rgb8, resize
from p2ptools.prep.splits import SPLITS
from p2ptools.prep.tiling import compose_ab, split_ab
from p2ptools.runtime.output import (
    check_distinct_outputs,
    inputs_digest,
    prepare_output,
    record_plan,
    write_dataset_json,
    write_image,
)
from p2ptools.runtime.parallel import imap_unordered
from p2ptools.runtime.progress import bar as progress_bar

log = logging.getLogger(__name__)

#: How many names an error message lists before it says "and N more".
LIST_LIMIT = 20


@dataclass
class PairReport:
    """What a pair/unpair run did.

    Args:
        out: output folder.
        written: images written now.
        existing: outputs already there (resumed).
        skipped: (file, reason) of inputs that were skipped.
    """

    out: Path
    written: int = 0
    existing: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _listing(title: str, items: list[str]) -> str:
    more = f" … and {len(items) - LIST_LIMIT} more" if len(items) > LIST_LIMIT else ""
    return f"{title} ({len(items)}): " + ", ".join(items[:LIST_LIMIT]) + more


def match_folders(a_dir: Path, b_dir: Path, check_sizes: bool = False) -> list[tuple[str, Path, Path]]:
    """Match images of two folders by stem, per split when both have split subfolders.

    Args:
        a_dir: the A folder.
        b_dir: the B folder.
        check_sizes: also require each matched A and B to have one size.

    Returns:
        ``(split, a_file, b_file)`` triples; ``split`` is "" for flat folders.

    Raises:
        InputError: listing, in one message, every name found on one side only and (with
            ``check_sizes``) every pair whose sizes differ.
    """
    for d in (a_dir, b_dir):
        if not d.is_dir():
            raise InputError(f"{d}: no such folder")
    splits = [s for s in SPLITS if (a_dir / s).is_dir() and (b_dir / s).is_dir()]
    units = [(s, a_dir / s, b_dir / s) for s in splits] or [("", a_dir, b_dir)]
    triples: list[tuple[str, Path, Path]] = []
    only_a: list[str] = []
    only_b: list[str] = []
    for split, ad, bd in units:
        a, b = images_by_stem(ad), images_by_stem(bd)
        prefix = f"{split}/" if split else ""
        only_a += [prefix + a[k].name for k in sorted(set(a) - set(b))]
        only_b += [prefix + b[k].name for k in sorted(set(b) - set(a))]
        triples += [(split, a[k], b[k]) for k in sorted(set(a) & set(b))]
    problems = []
    if only_a:
        problems.append(_listing(f"only in {a_dir}", only_a))
    if only_b:
        problems.append(_listing(f"only in {b_dir}", only_b))
    if check_sizes:
        mismatched = []
        for split, a, b in triples:
            sa, sb = image_size(a), image_size(b)
            if sa != sb:
                mismatched.append(f"{split + '/' if split else ''}{a.stem} (A {sa[0]}×{sa[1]}, B {sb[0]}×{sb[1]})")
        if mismatched:
            problems.append(_listing("A and B differ in size (use --resize to resize B to A)", mismatched))
    if problems:
        raise InputError(f"{len(problems)} problem(s) with the pairs: " + "; ".join(problems))
    if not triples:
        raise InputError(f"{a_dir} and {b_dir}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return triples


@dataclass(frozen=True)
class _PairTask:
    a: str
    b: str
    out: str
    resize: bool
    fmt: str
    jpeg_quality: int


def _pair_one(task: _PairTask) -> tuple[str, str]:
    try:
        a, b = load_rgb8(Path(task.a)), load_rgb8(Path(task.b))
        if a.shape != b.shape:
            if not task.resize:
                return task.b, f"{task.b}: {b.shape[1]}×{b.shape[0]} differs from {Path(task.a).name}"
            b = resize(b, a.shape[1], a.shape[0])
        write_image(Path(task.out), compose_ab(a, b), task.fmt, task.jpeg_quality)
    except DiskFullError:
        raise  # the output's disk, not this input: the run stops
    except (P2PError, OSError) as exc:
        return task.a, str(exc)
    return task.a, ""


@dataclass
class PairOptions:
    """Options of ``p2ptools pair``.

    Args:
        a_dir: folder of A images (optionally with train/val/test subfolders).
        b_dir: folder of B images, same layout.
        out: output folder.
        resize_b: resize B to A's size where they differ (area when shrinking, bicubic when
            growing); without it, size mismatches are an error.
        format: ``png`` or ``jpg``.
        jpeg_quality: JPEG quality.
        workers: processes.
        overwrite: start over in a folder that holds an earlier dataset.
    """

    a_dir: Path
    b_dir: Path
    out: Path
    resize_b: bool = False
    format: str = "png"
    jpeg_quality: int = 95
    workers: int = 1
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.a_dir, self.b_dir, self.out = Path(self.a_dir), Path(self.b_dir), Path(self.out)


def pair_folders(options: PairOptions, progress: bool = True) -> PairReport:
    """Join same-named images of ``a_dir`` and ``b_dir`` into ``OUT/[split/]<stem>.<format>`` A|B images.

    Args:
        options: the folders, the output's format and how to run.
        progress: show a progress bar.

    Raises:
        InputError: listing unmatched names, or size mismatches when ``resize_b`` is False;
            nothing is written then.
    """
    a_dir, b_dir, out = options.a_dir, options.b_dir, options.out
    resize_b, fmt, jpeg_quality = options.resize_b, options.format, options.jpeg_quality
    workers, overwrite = options.workers, options.overwrite
    triples = match_folders(a_dir, b_dir, check_sizes=not resize_b)
    params: dict[str, Any] = {
        "a": str(a_dir.resolve()), "b": str(b_dir.resolve()), "resize": resize_b, "format": fmt,
        "inputs": inputs_digest([f"{s}/{a.stem}" for s, a, _ in triples]),
    }
    names = [f"{s}/{a.stem}" for s, a, _ in triples]
    prepare_output(out, "pairs", params, overwrite, inputs=[a_dir, b_dir], input_names=names)
    contract = DataContract(kind="pairs", a="image", b="image").to_dict()
    write_dataset_json(out, {"kind": "pairs", "params": params, "A": "image", "B": "image", "complete": False,
                             "input_names": names, "contract": contract})
    record_plan(out, (f"{split + '/' if split else ''}{a.stem}.{fmt}" for split, a, _ in triples))
    report = PairReport(out)
    tasks = []
    for split, a, b in triples:
        target = out / split / f"{a.stem}.{fmt}"
        if target.exists():
            report.existing += 1
        else:
            tasks.append(_PairTask(str(a), str(b), str(target), resize_b, fmt, jpeg_quality))
    _run(tasks, _pair_one, workers, progress, "pair", report)
    write_dataset_json(out, {"kind": "pairs", "params": params, "A": "image", "B": "image",
                             "count": len(triples) - len(report.skipped), "complete": not report.skipped,
                             "input_names": names, "contract": contract})
    return report


def _run(tasks: list[Any], fn: Any, workers: int, progress: bool, desc: str, report: PairReport) -> None:
    with progress_bar(len(tasks), desc, "img", progress) as bar:
        for src, error in imap_unordered(fn, tasks, workers):
            bar.update(1)
            if error:
                report.skipped.append((src, error))
            else:
                report.written += 1


@dataclass(frozen=True)
class _UnpairTask:
    src: str
    a: str
    b: str
    jpeg_quality: int


def _unpair_one(task: _UnpairTask) -> tuple[str, str]:
    try:
        ab = load_rgb8(Path(task.src))
        if ab.shape[1] % 2:
            return task.src, f"{task.src}: width {ab.shape[1]} is odd; not an A|B image"
        a, b = split_ab(ab)
        fmt = "jpg" if Path(task.a).suffix == ".jpg" else "png"
        write_image(Path(task.a), a, fmt, task.jpeg_quality)
        write_image(Path(task.b), b, fmt, task.jpeg_quality)
    except DiskFullError:
        raise  # the output's disk, not this input: the run stops
    except (P2PError, OSError) as exc:
        return task.src, str(exc)
    return task.src, ""


def unpair_folder(
    ab_dir: Path, out: Path, jpeg_quality: int = 95, workers: int = 1, overwrite: bool = False, progress: bool = True
) -> PairReport:
    """Split every A|B image under ``ab_dir`` into ``OUT/A/<rel>`` and ``OUT/B/<rel>``.

    Sub-folders (``train/``, ``val/`` …) are kept. PNG (and other lossless inputs) are written as
    PNG, so the round trip with :func:`pair_folders` is pixel-exact; JPEG inputs are written as JPEG
    at ``jpeg_quality`` (a re-encoding, so not exact).

    Raises:
        InputError: if ``ab_dir`` holds no images.
    """
    ab_dir, out = Path(ab_dir), Path(out)
    files = list_images(ab_dir, exclude=out)
    if not files:
        raise InputError(f"{ab_dir}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    rels = [p.relative_to(ab_dir) for p in files]
    names = [r.as_posix() for r in rels]
    exts = [".jpg" if p.suffix.lower() in (".jpg", ".jpeg") else ".png" for p in files]
    check_distinct_outputs(out, ((n, r.with_suffix(e).as_posix()) for n, r, e in zip(names, rels, exts, strict=True)))
    params = {"ab": str(ab_dir.resolve()), "inputs": inputs_digest([str(r) for r in rels])}
    prepare_output(out, "unpaired", params, overwrite, inputs=[ab_dir], input_names=names)
    write_dataset_json(out, {"kind": "unpaired", "params": params, "complete": False, "input_names": names})
    record_plan(out, (f"{half}/{rel.with_suffix(ext).as_posix()}" for rel, ext in zip(rels, exts, strict=True)
                      for half in ("A", "B")))
    report = PairReport(out)
    tasks = []
    for p, rel, ext in zip(files, rels, exts, strict=True):
        a, b = out / "A" / rel.with_suffix(ext), out / "B" / rel.with_suffix(ext)
        if a.exists() and b.exists():
            report.existing += 1
        else:
            tasks.append(_UnpairTask(str(p), str(a), str(b), jpeg_quality))
    _run(tasks, _unpair_one, workers, progress, "unpair", report)
    write_dataset_json(out, {"kind": "unpaired", "params": params, "count": len(files) - len(report.skipped),
                             "complete": not report.skipped, "input_names": names})
    return report
