"""Dataset archives p2ptools knows (the pix2pix facades and maps): downloaded on first use, checked.

``p2ptools run facades`` (and ``maps``) finds ``data/facades`` missing and fetches the archive the
official pix2pix code downloads, then unpacks it there. The fetch goes through the machinery the
pretrained weights use (:mod:`p2ptools.runtime.download`): ``$P2PTOOLS_DATA_URL/<archive name>``
replaces the location (an internal mirror, a test server), ``--offline`` / ``P2PTOOLS_OFFLINE=1``
never touches the network and says what to fetch by hand.

What is checked, before anything is moved into place:

- the archive's SHA-256 when the entry pins one (``sha256``);
- every member: a regular file or folder under the archive's one top folder; links, devices,
  absolute names and ``..`` are refused (nothing is written outside the destination);
- the layout: each split's image count (facades 400/100/106, maps 1096/1098);
- every image decodes and has the dataset's size (facades 512×256, maps 1200×600);
- the SHA-256 of every file listed in the bundled manifest (``archive_manifests/NAME.sha256``,
  ``sha256sum`` format), taken from copies of the distributed files.

The publishers give no checksum for these archives, so the entries pin the content p2ptools has
seen (400 of facades' 606 files, 400 of maps' 2194) rather than the archive's bytes; the archive's
own SHA-256 and size are printed and kept in ``DEST/.p2ptools/source.json`` so that a maintainer
can pin them. The archive is unpacked into a hidden folder beside the destination and renamed into
place only when every check passed; the downloaded archive is deleted afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from p2ptools.errors import P2PError
from p2ptools.runtime.download import DownloadFailed, fetch, is_offline, part_path, sha256_of
from p2ptools.runtime.output import STATE_DIR, atomic_write_text
from p2ptools.runtime.progress import report
from p2ptools.runtime.space import free_bytes, human_bytes

log = logging.getLogger(__name__)

MANIFEST_DIR = Path(__file__).parent / "archive_manifests"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class ArchiveError(P2PError):
    """A dataset archive could not be fetched, or is not the expected archive."""


@dataclass(frozen=True)
class DatasetArchive:
    """A dataset archive p2ptools can fetch.

    Args:
        name: the dataset's name (``facades``); also the archive's top folder.
        what: what it is, in words.
        url: where it is downloaded from.
        file: the archive's file name (under ``$P2PTOOLS_DATA_URL``).
        approx_bytes: about how big the archive is (for the free-space check and messages).
        splits: expected image count per split folder.
        image_size: ``(width, height)`` of every image (the AB pair side by side).
        sha256: the archive's full SHA-256 when pinned; None: the content is checked instead.
        manifest: ``sha256sum``-format file of known members, or None.
    """

    name: str
    what: str
    url: str
    file: str
    approx_bytes: int
    splits: dict[str, int] = field(default_factory=dict)
    image_size: tuple[int, int] = (0, 0)
    sha256: str | None = None
    manifest: Path | None = None


_BERKELEY = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/"

KNOWN_ARCHIVES: dict[str, DatasetArchive] = {a.name: a for a in (
    DatasetArchive("facades", "the CMP facades as distributed for pix2pix (photo | label colours)",
                   _BERKELEY + "facades.tar.gz", "facades.tar.gz", 30_000_000,
                   {"train": 400, "val": 100, "test": 106}, (512, 256), manifest=MANIFEST_DIR / "facades.sha256"),
    DatasetArchive("maps", "the pix2pix maps dataset (aerial photo | Google map, 600×600 halves)",
                   _BERKELEY + "maps.tar.gz", "maps.tar.gz", 250_000_000,
                   {"train": 1096, "val": 1098}, (1200, 600), manifest=MANIFEST_DIR / "maps.sha256"),
)}


def known_archive(name: str) -> DatasetArchive:
    """The archive called ``name``.

    Raises:
        ArchiveError: listing the known names.
    """
    if name not in KNOWN_ARCHIVES:
        raise ArchiveError(f"unknown dataset archive {name!r}; known: {', '.join(KNOWN_ARCHIVES)}")
    return KNOWN_ARCHIVES[name]


def archive_url(spec: DatasetArchive) -> str:
    """``$P2PTOOLS_DATA_URL/<file>`` when set, else the archive's URL."""
    base = os.environ.get("P2PTOOLS_DATA_URL", "").strip()
    return f"{base.rstrip('/')}/{spec.file}" if base else spec.url


def read_manifest(path: Path) -> dict[str, str]:
    """``{member name: sha256}`` from a ``sha256sum`` file (``HEX  name`` per line)."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.lstrip("*")] = digest.lower()
    return out


def fetch_dataset(spec: DatasetArchive, dest: Path, offline: bool | None = None,
                  progress: bool | None = None) -> Path:
    """Download ``spec``, check it, and unpack it so that ``dest`` holds its split folders.

    Args:
        spec: the archive.
        dest: the dataset folder to create (``data/facades``); it must not hold a dataset yet.
        offline: never touch the network (default: ``P2PTOOLS_OFFLINE``).
        progress: a download progress bar (default: on a terminal).

    Returns:
        ``dest``.

    Raises:
        ArchiveError: offline, the download failed, or the archive is not the expected one; nothing
            is left in ``dest``'s folder but what was there before.
    """
    dest = Path(dest)
    url = archive_url(spec)
    by_hand = (f"download {url} by hand, unpack it, and give the {spec.name}/ folder "
               f"(p2ptools run {spec.name} --set data.dataset=PATH)")
    if is_offline(offline):
        raise ArchiveError(f"{dest} does not exist and nothing is downloaded offline (--offline / P2PTOOLS_OFFLINE); "
                           + by_hand)
    _check_space(spec, dest)
    made_parent = not dest.parent.exists()
    part = part_path(dest.parent / spec.file)
    work = dest.parent / f".{dest.name}.{os.getpid()}.unpacking"  # the archive's top folder goes here first
    report("downloading %s (%s, about %s) from %s", spec.file, spec.what, human_bytes(spec.approx_bytes), url)
    try:
        fetch(url, part, progress)
        digest, size = sha256_of(part), part.stat().st_size
        if spec.sha256 and digest != spec.sha256:
            raise ArchiveError(f"{spec.file} from {url} is not the expected archive (SHA-256 {digest}, expected "
                               f"{spec.sha256}); nothing was kept; {by_hand}")
        checked = unpack_checked(spec, part, work, url)
        _write_source(work / spec.name, spec, url, digest, size, checked)
        try:
            os.replace(work / spec.name, dest)
        except OSError:
            if not (dest / next(iter(spec.splits))).is_dir():
                raise ArchiveError(f"{dest}: appeared while {spec.file} was unpacked and is not a {spec.name} "
                                   "dataset; nothing was written into it") from None
            report("%s: another command unpacked %s first; using it", dest, spec.file)  # ours is removed below
            return dest
    except DownloadFailed as exc:
        raise ArchiveError(f"{spec.file}: cannot download from {url} ({exc}); {by_hand}") from exc
    finally:
        part.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        if made_parent and dest.parent.is_dir() and not any(dest.parent.iterdir()):
            dest.parent.rmdir()  # the folder this call made for a download that did not happen
    pinned = "" if spec.sha256 else " (not pinned by p2ptools: no checksum is published; kept in .p2ptools/source.json)"
    report("%s: %s, SHA-256 %s%s; %s checked against the known copies, every image decoded at %d×%d; unpacked in %s",
           spec.file, human_bytes(size), digest, pinned, checked["known_files"], *spec.image_size, dest)
    return dest


def _check_space(spec: DatasetArchive, dest: Path) -> None:
    free = free_bytes(dest.parent)
    need = 2 * spec.approx_bytes  # the archive and its unpacked files, at once
    if free is not None and free < need:
        from p2ptools.errors import DiskFullError

        raise DiskFullError(f"{dest.parent}: {human_bytes(free)} free; {spec.file} needs about {human_bytes(need)} "
                            "while it is unpacked (the archive is deleted afterwards): free some space or give "
                            f"another folder (p2ptools run {spec.name} --set data.dataset=PATH)")


def _safe_members(tar: tarfile.TarFile, top: str, source: str) -> list[tarfile.TarInfo]:
    """The archive's members, each a file or folder under ``top/``; anything else is refused."""
    members = tar.getmembers()
    for m in members:
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts or (p.parts[:1] != (top,)) or not (m.isfile() or m.isdir()):
            kind = "a link" if (m.issym() or m.islnk()) else "a special file" if not (m.isfile() or m.isdir()) else \
                "outside its top folder"
            raise ArchiveError(f"{source}: member {m.name!r} is {kind}; a {top} archive holds only files and folders "
                               f"under {top}/, so nothing was unpacked")
    return members


def unpack_checked(spec: DatasetArchive, archive: Path, work: Path, source: str) -> dict[str, int]:
    """Unpack ``archive`` into ``work`` (its top folder, ``work/NAME``, becomes the dataset) and check it.

    Returns:
        ``{"files": n, "known_files": k}``: images found, and those checked against the manifest.

    Raises:
        ArchiveError: naming the first problem (a member, a count, an image, a digest).
    """
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"{source}: not a readable tar archive ({exc})") from None
    with tar:
        members = _safe_members(tar, spec.name, source)
        work.mkdir(parents=True, exist_ok=True)
        try:
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(work, members=members, **kwargs)  # noqa: S202 (members checked above)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError(f"{source}: the archive is damaged ({exc})") from None
    _follow_umask(work / spec.name)
    return check_content(spec, work / spec.name, source)


def _follow_umask(root: Path) -> None:
    """Give the unpacked files and folders the modes this user's umask gives new ones (the archive's
    own modes are the publisher's)."""
    from p2ptools.runtime.output import current_umask

    mask = current_umask()
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def check_content(spec: DatasetArchive, root: Path, source: str) -> dict[str, int]:
    """Check an unpacked dataset folder against ``spec``: split counts, image sizes, known digests.

    Raises:
        ArchiveError: naming the split, the file and what is wrong.
    """
    images: list[Path] = []
    for split, count in spec.splits.items():
        found = sorted(p for p in (root / split).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) \
            if (root / split).is_dir() else []
        if len(found) != count:
            raise ArchiveError(f"{source}: {spec.name}/{split} has {len(found)} images; the {spec.name} archive has "
                               f"{count}, so this is not it (or it is incomplete)")
        images += found
    known = read_manifest(spec.manifest) if spec.manifest else {}
    names = [path.relative_to(root.parent).as_posix() for path in images]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        inspected = pool.map(lambda p, n: _inspect(p, spec.image_size, n in known), images, names)
        digests = {}
        for name, (problem, digest) in zip(names, inspected, strict=True):
            if problem:
                raise ArchiveError(f"{source}: {name}: {problem}")
            digests[name] = digest
    for name, digest in known.items():
        got = digests.get(name, "missing")
        if got != digest:
            raise ArchiveError(f"{source}: {name} is not the distributed file (SHA-256 {got}, expected {digest})")
    return {"files": len(images), "known_files": len(known)}


def _inspect(path: Path, size: tuple[int, int], digest: bool) -> tuple[str, str]:
    """``(problem, SHA-256)`` of one image, read once: the problem is "" when it decodes at ``size``;
    the digest is "" unless asked for."""
    import cv2
    import numpy as np

    data = path.read_bytes()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    sha = hashlib.sha256(data).hexdigest() if digest else ""
    if img is None:
        return "cannot be decoded as an image", sha
    if (img.shape[1], img.shape[0]) != tuple(size):
        return f"is {img.shape[1]}×{img.shape[0]}, every image of this dataset is {size[0]}×{size[1]}", sha
    return "", sha


def _write_source(root: Path, spec: DatasetArchive, url: str, digest: str, size: int, checked: dict[str, int]) -> None:
    record = {"dataset": spec.name, "url": url, "archive": spec.file, "sha256": digest, "bytes": size,
              "sha256_pinned": bool(spec.sha256), "images": checked["files"],
              "checked_against_manifest": checked["known_files"], "fetched": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_text(root / STATE_DIR / "source.json", json.dumps(record, indent=2) + "\n")
