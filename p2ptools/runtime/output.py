"""The aligned output layout shared by ``tile`` and ``make-inpaint``, with atomic writes.

``OUT/{train,val,test}/<name>.png`` (A|B side by side), ``OUT/manifest.csv``,
``OUT/dataset.json`` (what made the dataset: parameters, palette, counts) and ``OUT/.p2ptools/``
(per-item progress records that make reruns resume). Every file is written to a temporary name in
its folder and renamed into place, so an interrupted run never leaves a half-written file.

Any name a file system allows is kept exactly, end to end: line breaks, tabs and other control
characters, and bytes that are not UTF-8 (which Python gives as lone surrogates, ``b"caf\\xe9"`` →
``"caf\\udce9"``). JSON files (records, ``dataset.json``) hold them as JSON escapes; CSV files
(``manifest.csv``, per-image tables) quote them and keep such bytes as they are, as ``ls`` shows them
(:func:`text_bytes`; pandas reads them back with ``encoding_errors="surrogateescape", engine="python"``).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from p2ptools import __version__
from p2ptools.errors import OutputError
from p2ptools.runtime import door
from p2ptools.runtime.formats import encode
from p2ptools.runtime.lock import LOCK_FILE, STATE_DIR, hold
from p2ptools.runtime.names import gdal_name
from p2ptools.runtime.settings import changed_settings, format_change
from p2ptools.runtime.space import disk_full, is_disk_full

DATASET_FILE = "dataset.json"
MANIFEST_FILE = "manifest.csv"

log = logging.getLogger(__name__)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, never
    through a link (:func:`p2ptools.runtime.door.write_bytes`, the one writer of p2ptools).

    The file gets the permissions the umask gives new files (0644 under 022), as a plain write would.
    """
    door.write_bytes(path, data)


def write_geotiff(path: Path, data: np.ndarray, profile: dict[str, Any],
                  colormap: dict[int, tuple[int, ...]] | None = None) -> None:
    """Atomically write ``(bands, H, W)`` ``data`` as a GeoTIFF with ``profile`` (driver, size, count and
    dtype are filled in), an optional band-1 colour table, and p2ptools' ``TIFFTAG_SOFTWARE``."""
    import rasterio

    full = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
            "dtype": data.dtype.name, **profile}
    tmp = door.temp_path(path, ".tmp.tif")  # created exclusively: GDAL writes a file p2ptools made
    try:
        with gdal_name(tmp) as name, rasterio.open(name, "w", **full) as dst:  # the file door made, any name
            dst.write(data)
            if colormap is not None:
                dst.write_colormap(1, colormap)
            dst.update_tags(TIFFTAG_SOFTWARE="p2ptools")
        door.replace(tmp, path)
    except Exception as exc:
        if is_disk_full(exc):
            raise disk_full(path, data.nbytes) from None
        raise
    finally:
        door.remove(tmp)


def text_bytes(text: str) -> bytes:
    """``text`` as UTF-8, with the file names in it kept as the file system's bytes: a name's byte that
    is not UTF-8 (a lone surrogate, as :func:`os.fsdecode` gives it) is written back as that byte."""
    return text.encode("utf-8", sys.getfilesystemencodeerrors())


def bytes_text(data: bytes) -> str:
    """The reverse of :func:`text_bytes`: UTF-8 text whose bytes that are not UTF-8 become lone surrogates.

    Raises:
        UnicodeDecodeError: only where the file system's error handler is strict about them (Windows).
    """
    return data.decode("utf-8", sys.getfilesystemencodeerrors())


def shown_name(name: str) -> str:
    """A file name for a one-line message: control characters (line breaks, tabs) and bytes that are not
    UTF-8 written as Python escapes (``a\\nb.png``, ``caf\\xe9.png``), other characters as they are."""
    from p2ptools.runtime.html import readable

    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in readable(name))


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically write UTF-8 text (file names in it kept as their bytes: :func:`text_bytes`)."""
    atomic_write_bytes(path, text_bytes(text))


def csv_line_end(values: Iterable[Any]) -> str:
    """The line end of a CSV file holding ``values``: ``"\\n"``, or ``"\\r\\n"`` when a value holds a
    carriage return (Python's CSV writer quotes a field for the characters of its line end only, and an
    unquoted carriage return would end the row when read back)."""
    return "\r\n" if any(isinstance(v, str) and "\r" in v for v in values) else "\n"


def csv_text(rows: list[dict[str, Any]], header: list[str] | None = None) -> str:
    """Rows of dicts as CSV text (header from ``header`` or the first row; empty text for no columns).

    Values with commas, quotes, line breaks or carriage returns are quoted, so any file name is one cell.
    """
    fields = header if header is not None else (list(rows[0]) if rows else [])
    if not fields:
        return ""
    buf = io.StringIO()
    end = csv_line_end([*fields, *(v for row in rows for v in row.values())])
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator=end)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV file written by :func:`csv_text` (empty for an empty file); names kept
    as written (line breaks inside quoted cells untouched, bytes that are not UTF-8 as lone surrogates)."""
    reader = csv.DictReader(io.StringIO(bytes_text(path.read_bytes()), newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def inputs_digest(names: list[str]) -> str:
    """A short fingerprint of a set of input names (stored in ``dataset.json`` params).

    Splits are drawn over the whole set, so a rerun over a different set of inputs is another
    dataset: resuming into it would put new items into splits beside outputs drawn differently.
    Names are hashed as the file system's bytes; a set with a line break in a name is hashed as a
    JSON list, which no newline-joined set of names (the fingerprint of every other set, as before) spells.
    """
    ordered = sorted(names)
    text = "\n" + json.dumps(ordered) if any("\n" in n for n in ordered) else "\n".join(ordered)
    return hashlib.sha1(os.fsencode(text)).hexdigest()[:16]


def encode_image(rgb: np.ndarray, fmt: str = "png", jpeg_quality: int = 95, bgr: bool = False) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` gray) image in a registered format
    (:mod:`p2ptools.runtime.formats`; ``bgr=True``: the channels are already in OpenCV's BGR order)."""
    return encode(rgb, fmt, jpeg_quality, bgr)


def write_image(path: Path, rgb: np.ndarray, fmt: str = "png", jpeg_quality: int = 95, bgr: bool = False) -> None:
    """Atomically write an RGB image (format from ``fmt``; ``bgr=True``: channels in BGR order)."""
    atomic_write_bytes(path, encode_image(rgb, fmt, jpeg_quality, bgr))


def read_dataset_json(out: Path) -> dict[str, Any] | None:
    """Read ``OUT/dataset.json``; None when absent.

    Raises:
        OutputError: if it exists but is not valid JSON.
    """
    path = out / DATASET_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: not a readable dataset description: {exc}") from exc
    if not isinstance(data, dict):
        raise OutputError(f"{path}: not a dataset description")
    return data


def write_dataset_json(out: Path, data: dict[str, Any]) -> None:
    """Atomically write ``OUT/dataset.json`` (adds ``created_by``)."""
    payload = {"format_version": 1, "created_by": f"p2ptools {__version__}", **data}
    atomic_write_text(out / DATASET_FILE, json.dumps(payload, indent=2, sort_keys=False) + "\n")


PLANS_DIR = "written"
#: a record of written files: one JSON string (a path relative to OUT) a line
PLAN_SUFFIX = ".jsonl"


@functools.lru_cache(maxsize=1)
def current_umask() -> int:
    """The process's umask (read once, without changing it where /proc tells it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def escapes_lexically(rel: str | Path) -> bool:
    """Whether a recorded path leaves its folder by its spelling alone: absolute, empty, the folder
    itself, or climbing out with ``..`` once normalised (the cheap part of :func:`contained`, which
    also follows symlinks)."""
    if not str(rel) or Path(rel).is_absolute():
        return True
    norm = os.path.normpath(str(rel))
    return norm == "." or norm == ".." or norm.startswith(".." + os.sep)


def contained(out: Path, rel: str | Path) -> Path | None:
    """``out/rel`` when it lies inside ``out`` once resolved (``..``, absolute paths and symlinks
    followed), else None: the one rule for every path read from a record, a manifest or a run folder
    before p2ptools removes or overwrites it.

    Args:
        out: the output folder.
        rel: a path relative to ``out`` (as records and manifests store them).

    Returns:
        The path to touch (``out/rel``, not its resolution, so a link is removed, never its target),
        or None when it would reach outside ``out`` or names ``out`` itself.
    """
    if escapes_lexically(rel):
        return None
    path = out / Path(rel)
    base = out.resolve()
    try:
        # the folder the entry sits in, resolved (a link to elsewhere in between leaves OUT), and the entry itself
        parent = path.parent.resolve()
        target = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    if parent != base and base not in parent.parents:
        return None
    if target != base and base not in target.parents:
        return None
    return path if target != base else None


def remove_inside(out: Path, rel: str | Path, what: str = "record") -> bool:
    """Remove the file ``out/rel`` if it exists and lies inside ``out`` (:func:`contained`); a path
    that reaches outside is left alone and named in a warning. Returns whether a file was removed."""
    path = contained(out, rel)
    if path is None:
        log.warning("%s: skipped %r from a %s: it lies outside the output folder, which p2ptools never "
                    "touches", out, str(rel), what)
        return False
    return door.remove(path)


def check_distinct_outputs(out: Path, pairs: Iterable[tuple[str, str]]) -> None:
    """Refuse, before anything is written, inputs that would be written to one output file.

    Args:
        out: the output folder (for the message).
        pairs: ``(input name, output path relative to out)`` for every input.

    Raises:
        InputError: listing each output file with the inputs that would share it (first five).
    """
    from p2ptools.errors import InputError

    by_output: dict[str, list[str]] = {}
    for src, rel in pairs:
        by_output.setdefault(rel, []).append(src)
    clashes = [(rel, srcs) for rel, srcs in sorted(by_output.items()) if len(srcs) > 1]
    if clashes:
        shown = "; ".join(f"{rel} ← {', '.join(srcs)}" for rel, srcs in clashes[:5])
        more = f" and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        raise InputError(f"{out}: {len(clashes)} output file(s) would each be written from several inputs ({shown}"
                         f"{more}); nothing was written: rename the inputs so that their names differ")


def record_plan(out: Path, rel_paths: Iterable[str]) -> None:
    """Record, before writing them, the files (relative to ``out``) a run is about to write.

    These records are how p2ptools knows which files of a folder are its own: ``--overwrite``
    and every cleanup remove only files recorded here or listed by the manifest.
    """
    rels = sorted(set(rel_paths))
    if not rels:
        return
    text = "".join(json.dumps(rel) + "\n" for rel in rels)  # ASCII: line breaks and odd bytes as JSON escapes
    digest = hashlib.sha1(text.encode("ascii")).hexdigest()[:16]
    atomic_write_text(out / STATE_DIR / PLANS_DIR / f"{digest}{PLAN_SUFFIX}", text)


def read_plan(path: Path) -> list[str]:
    """The relative paths a record of :func:`record_plan` names: one JSON string a line (``.jsonl``), or
    one path a line in the plain records earlier versions wrote (``.txt``, still read so that their
    output folders resume); lines that are not a path are skipped."""
    data = path.read_bytes()
    if path.suffix == ".txt":  # split on line feeds only: "\r", "\x0c", "\x85" … were part of a name
        return [line for line in bytes_text(data).split("\n") if line]
    rels = []
    for line in data.splitlines():
        with contextlib.suppress(ValueError):
            rel = json.loads(line)
            if isinstance(rel, str) and rel:
                rels.append(rel)
    return rels


def owned_files(out: Path, fixed: Iterable[str] = ()) -> set[str]:
    """Relative paths under ``out`` that p2ptools wrote or may have written (recorded plans, the
    manifest's ``file`` and ``mask_file`` columns, ``dataset.json``, ``manifest.csv`` and ``fixed``)."""
    owned = {DATASET_FILE, MANIFEST_FILE, *fixed}
    plans = out / STATE_DIR / PLANS_DIR
    if plans.is_dir():
        for plan in sorted((*plans.glob(f"*{PLAN_SUFFIX}"), *plans.glob("*.txt"))):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                owned.update(read_plan(plan))
    manifest = out / MANIFEST_FILE
    if manifest.is_file():
        with contextlib.suppress(OSError, csv.Error, UnicodeDecodeError):
            _, rows = read_csv_rows(manifest)
            for row in rows:
                owned.update(row[k] for k in ("file", "mask_file") if row.get(k))
    # spelling only (no file-system calls per path: records list every tile of a dataset); removals
    # check each path again with symlinks followed (remove_inside)
    outside = sorted(rel for rel in owned if escapes_lexically(rel))
    if outside:
        shown = ", ".join(repr(r) for r in outside[:3]) + (f" and {len(outside) - 3} more" if len(outside) > 3 else "")
        log.warning("%s: its records name %d path(s) outside the folder (%s): skipped, p2ptools never touches "
                    "anything outside the output folder", out, len(outside), shown)
    return {rel for rel in owned if rel not in outside}


def foreign_files(out: Path, owned: set[str]) -> list[str]:
    """Files under ``out`` (outside ``.p2ptools/``) that p2ptools did not write, sorted.

    A link is always foreign, even at a name p2ptools records or plans: p2ptools makes no links, and
    never writes through or replaces one (:mod:`p2ptools.runtime.door`).
    """
    if not out.is_dir():
        return []
    found = []
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        link = path.is_symlink()
        if rel == STATE_DIR or rel.startswith(STATE_DIR + "/") or (not link and path.is_dir()):
            continue
        if link or rel not in owned:
            found.append(rel)
    return found


def refuse_foreign(out: Path, foreign: list[str]) -> None:
    """Raise OutputError naming the first few foreign files of ``out`` and their count.

    Raises:
        OutputError: if ``foreign`` is not empty.
    """
    if foreign:
        shown = ", ".join(map(shown_name, foreign[:5])) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        links = [f for f in foreign if (out / f).is_symlink()]
        if links:  # named as what they are: p2ptools never makes a link, nor writes through one
            raise OutputError(f"{out}: holds {len(links)} link(s) p2ptools did not make "
                              f"({', '.join(map(shown_name, links[:5]))}); p2ptools never writes through or replaces "
                              "a link: remove them, or use another output folder")
        runs = [f for f in foreign if re.fullmatch(r"(latest|best|epoch_\d+)\.pt", f)]
        if runs:  # p2ptools wrote them, as a training run: this command's outputs go elsewhere
            raise OutputError(f"{out}: is a p2ptools training run folder ({', '.join(runs[:3])}); it is not an output "
                              "folder of this command: write to another folder (e.g. beside it)")
        raise OutputError(f"{out}: holds {len(foreign)} file(s) p2ptools did not write ({shown}); p2ptools never "
                          "removes or overwrites them: use another (or an empty) output folder, or move them away")


def _check_folder(out: Path, owned: set[str]) -> None:
    """``out`` is a folder (or does not exist yet) holding only ``owned`` files.

    Raises:
        OutputError: for a file in its place, or foreign files (named).
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    refuse_foreign(out, foreign_files(out, owned))


def remove_owned(out: Path, owned: set[str]) -> int:
    """Remove the files of ``owned`` that exist under ``out``, p2ptools's state, and the folders this
    leaves empty; returns the number of files removed. Nothing else is touched."""
    removed = sum(remove_inside(out, rel) for rel in sorted(owned))
    state = out / STATE_DIR
    if state.is_dir() and not state.is_symlink():
        for entry in state.iterdir():  # all but the lock the running command holds (runtime.lock)
            if entry.name == LOCK_FILE:
                continue
            door.remove_tree(entry)  # a link there is removed itself, never followed
    for folder in sorted((p for p in out.rglob("*") if p.is_dir() and not p.is_symlink()
                          and contained(out, p.relative_to(out)) is not None),
                         key=lambda p: len(p.parts), reverse=True):
        door.remove_empty_folder(folder)
    return removed


def check_not_inside(out: Path, inputs: Iterable[Path | None]) -> None:
    """Refuse an output folder that is, lies inside, or holds an input (before anything is written).

    Raises:
        OutputError: naming both.
    """
    o = Path(out).resolve()
    for src in inputs:
        if src is None:
            continue
        s = Path(src).resolve()
        if o == s or s in o.parents:
            raise OutputError(f"{out}: the output folder is {'the input folder' if o == s else 'inside the input'} "
                              f"{src}; write the outputs elsewhere")
        if o in s.parents and Path(src).exists():  # (a URL is no local path)
            raise OutputError(f"{out}: the output folder holds the input {src}; p2ptools writes only into a folder "
                              "of its own outputs: write them beside the input (e.g. another folder), not around it")


def prepare_output(
    out: Path, kind: str, params: dict[str, Any], overwrite: bool, inputs: Iterable[Path | None] = (),
    input_names: list[str] | None = None,
) -> bool:
    """Make ``out`` ready for a run, or refuse when it holds something else.

    An existing output made with the same ``kind`` and ``params`` is resumed. One made with other
    parameters is refused, naming what differs (settings, inputs added or removed), unless
    ``overwrite``, which removes only what p2ptools wrote there (:func:`owned_files`). A folder
    holding files p2ptools did not write is always refused, naming them. An output folder that is
    or lies inside an input folder is refused.

    Returns:
        True when an earlier run of the same dataset is being resumed.

    Raises:
        OutputError: if ``out`` holds a different dataset or foreign files.
    """
    check_not_inside(out, inputs)
    existing = read_dataset_json(out) if out.is_dir() else None
    owned = owned_files(out) if existing is not None else {DATASET_FILE, MANIFEST_FILE}
    _check_folder(out, owned)
    hold(out)  # after the checks that refuse a user's folder, so a refusal writes nothing there
    if overwrite and existing is not None:
        remove_owned(out, owned)
        existing = None
    elif existing is not None and (existing.get("kind") != kind or existing.get("params") != params):
        diff = _describe_difference(existing, kind, params, input_names)
        raise OutputError(f"{out}: holds a different {existing.get('kind')} dataset ({diff}); "
                          "use another folder, or --overwrite to replace it (only files p2ptools wrote are removed)")
    door.state_folder(out)
    return existing is not None


def claim_folder(out: Path, planned: Iterable[str], inputs: Iterable[Path | None] = ()) -> None:
    """Make ``out`` ready for a command that writes ``planned`` files (relative paths) into it.

    The folder may hold what p2ptools wrote there before (those files are rewritten), but not
    files of anyone else (refused, naming them), and may not be or lie inside an input folder.
    The plan is recorded before anything is written.

    Raises:
        OutputError: for foreign files, an output inside an input, or a file where the folder should be.
    """
    planned = set(planned)
    check_not_inside(out, inputs)
    _check_folder(out, owned_files(out) | planned)
    hold(out)  # after the checks that refuse a user's folder, so a refusal writes nothing there
    door.ensure_folder(out)
    record_plan(out, planned)


def _describe_difference(existing: dict[str, Any], kind: str, new: dict[str, Any],
                          input_names: list[str] | None) -> str:
    """``size: 256 → 512; inputs: 2 added (c, d), 1 removed (a)``: what makes two datasets differ."""
    if existing.get("kind") != kind:
        return f"made by {existing.get('kind')}, not {kind}"
    old = existing.get("params") or {}
    changes = [c for c in changed_settings(old, new) if c[0] != "inputs"]
    parts = [format_change(*c) for c in changes[:4]] + (["…"] if len(changes) > 4 else [])
    if old.get("inputs") != new.get("inputs"):
        before = existing.get("input_names")
        if before is not None and input_names is not None:
            added, removed = sorted(set(input_names) - set(before)), sorted(set(before) - set(input_names))
            for what, names in (("added", added), ("removed", removed)):
                if names:
                    more = ", …" if len(names) > 3 else ""
                    parts.append(f"inputs {what}: {len(names)} ({', '.join(names[:3])}{more})")
        else:
            parts.append("another set of inputs")
    return "; ".join(parts) or "other settings"
