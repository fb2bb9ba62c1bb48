"""Dataset archives p2ptools knows (the pix2pix facades and maps): downloaded on first use, checked.

``p2ptools run facades`` (and ``maps``) finds ``data/facades`` missing and fetches the archive the
official pix2pix code downloads, then unpacks it there. The fetch goes through the machinery the
pretrained weights use (:mod:`p2ptools.runtime.download`): ``$P2PTOOLS_DATA_URL/<archive name>``
replaces the location (an internal mirror, a test server), ``--offline`` / ``P2PTOOLS_OFFLINE=1``
never touches the network and says what to fetch by hand.

What is checked, before anything is moved into place:

- the archive's SHA-256 when the entry pins one (``sha256``);
- every member's tar header, before a byte is unpacked: a regular file or folder under the
  archive's one top folder, named once (links, devices, sparse files, absolute names and ``..`` are
  refused, so nothing is written outside the work folder), each at most what an image of the
  dataset can be, their number and total size within :class:`MemberLimits`;
- the layout: each split's image count (facades 400/100/106, maps 1096/1098);
- every image decodes and has the dataset's size (facades 512×256, maps 1200×600);
- the SHA-256 of every file listed in the bundled manifest (``archive_manifests/NAME.sha256``,
  ``sha256sum`` format), taken from copies of the distributed files;
- no image is a byte-identical copy of an image in another split.

The archives are fetched over https; from a mirror without https (``$P2PTOOLS_DATA_URL``) one line
says which splits are checked by content and which only by count, size and decode.

The publishers give no checksum for these archives, so the entries pin the content p2ptools has
seen (400 of facades' 606 files, 400 of maps' 2194) rather than the archive's bytes; the archive's
own SHA-256 and size are printed and kept in ``DEST/.p2ptools/source.json`` so that a maintainer
can pin them. The archive is unpacked into a new hidden folder beside the destination (made by
``tempfile.mkdtemp``: an unguessable name, never an existing folder or a planted link) and renamed
into place only when every check passed; the downloaded archive is deleted afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

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
        approx_bytes: about how big the archive is (for the free-space check and messages); also
            the basis of the bound on the download and on the unpacked bytes (4× plus 1 MiB).
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


_BERKELEY = "https://efrosgans.eecs.berkeley.edu/pix2pix/datasets/"

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


def transport_note(spec: DatasetArchive, url: str) -> str:
    """The one line said when ``url`` is not https: which splits are checked by content (the bundled
    manifest's SHA-256 digests) and which only by count, size and decode."""
    known = read_manifest(spec.manifest) if spec.manifest else {}
    per_split = Counter(name.split("/")[1] for name in known)
    by_content = [f"{split} ({per_split[split]} of {n})" for split, n in spec.splits.items() if per_split[split]]
    rest = [split if not per_split[split] else f"the other {n - per_split[split]} of {split}"
            for split, n in spec.splits.items() if per_split[split] < n]
    return (f"{spec.file} is not fetched over https ({url}), so its bytes are not authenticated on the way: checked "
            f"by content (SHA-256 of the distributed files): {', '.join(by_content) or 'none'}; only by count, size "
            f"and decode: {', '.join(rest) or 'none'}")


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
    work: Path | None = None  # a fresh hidden folder in dest.parent; the archive's top folder goes there first
    report("downloading %s (%s, about %s) from %s", spec.file, spec.what, human_bytes(spec.approx_bytes), url)
    if urlparse(url).scheme != "https":
        report("%s", transport_note(spec, url))
    try:
        fetch(url, part, progress, max_bytes=4 * spec.approx_bytes + (1 << 20))
        digest, size = sha256_of(part), part.stat().st_size
        if spec.sha256 and digest != spec.sha256:
            raise ArchiveError(f"{spec.file} from {url} is not the expected archive (SHA-256 {digest}, expected "
                               f"{spec.sha256}); nothing was kept; {by_hand}")
        work, checked = unpack_checked(spec, part, dest.parent, url)
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
        if work is not None:
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


#: the bytes an image member may have beyond its raw pixels: a JPEG or PNG of the dataset's size is at most
#: about its raw size (w × h × 3); twice that plus 64 KiB of headers and metadata is never reached by a real one
MEMBER_SLACK = 64 << 10
#: folders and stray files (a README, an OS's metadata file) an archive may hold beyond its images
EXTRA_MEMBERS = 16


@dataclass(frozen=True)
class MemberLimits:
    """What a dataset archive's tar headers may declare, checked before a byte is unpacked.

    Args:
        member_bytes: the largest member: ``2 × width × height × 3 + MEMBER_SLACK`` (facades: 832 KiB;
            its largest distributed image is 79 KiB).
        members: the most entries: the images of every split, the top folder and the split folders, and
            ``EXTRA_MEMBERS`` (facades: 626 for 606 images).
        total_bytes: the most bytes in all: ``4 × approx_bytes + 1 MiB`` (the images are JPEGs, which gzip
            does not shrink, so the unpacked archive is about as big as the archive; facades: 121 MB),
            and never more than ``members × member_bytes``.
    """

    member_bytes: int
    members: int
    total_bytes: int

    @classmethod
    def of(cls, spec: DatasetArchive) -> MemberLimits:
        """The limits for ``spec``."""
        width, height = spec.image_size
        member_bytes = 2 * width * height * 3 + MEMBER_SLACK
        members = sum(spec.splits.values()) + 1 + len(spec.splits) + EXTRA_MEMBERS
        return cls(member_bytes, members, min(members * member_bytes, 4 * spec.approx_bytes + (1 << 20)))


def _member_problem(m: tarfile.TarInfo, top: str) -> str:
    """What is wrong with one member's header ("" when it is a file or folder under ``top/``)."""
    p = PurePosixPath(m.name)
    if m.issym() or m.islnk():
        return "is a link"
    if not (m.isdir() or m.type in (tarfile.REGTYPE, tarfile.AREGTYPE)):
        return "is a special file (a device, a pipe or a sparse file)"
    if p.is_absolute() or ".." in p.parts or p.parts[:1] != (top,):
        return "is outside its top folder"
    return ""


def _safe_members(tar: tarfile.TarFile, spec: DatasetArchive, source: str) -> list[tarfile.TarInfo]:
    """The archive's members, read from their headers only (nothing is written): each a file or folder
    under ``NAME/``, named once, within :class:`MemberLimits`; anything else is refused at the first
    header that breaks a rule (so a bomb of headers is not read to its end)."""
    top, limits = spec.name, MemberLimits.of(spec)
    members: list[tarfile.TarInfo] = []
    names: set[str] = set()
    total = 0
    for m in tar:
        problem = _member_problem(m, top)
        if not problem and m.size > limits.member_bytes:
            problem = f"declares {m.size} bytes; no image of this dataset has more than {limits.member_bytes}"
        if not problem and m.name.rstrip("/") in names:
            problem = "appears twice"
        if problem:
            raise ArchiveError(f"{source}: member {m.name!r} {problem}; a {top} archive holds only its images and "
                               f"folders under {top}/, so nothing was unpacked")
        total += m.size
        names.add(m.name.rstrip("/"))
        members.append(m)
        if len(members) > limits.members or total > limits.total_bytes:
            what = f"more than {limits.members} members" if len(members) > limits.members else \
                f"more than {limits.total_bytes} bytes"
            raise ArchiveError(f"{source}: declares {what}; the {top} archive has {sum(spec.splits.values())} images "
                               f"({human_bytes(spec.approx_bytes)}), so nothing was unpacked")
    return members


def unpack_checked(spec: DatasetArchive, archive: Path, parent: Path, source: str) -> tuple[Path, dict[str, int]]:
    """Check ``archive``'s headers, unpack it into a new work folder in ``parent`` and check its content.

    The work folder is made by :func:`tempfile.mkdtemp` (a fresh, unguessable name, never an existing
    folder or link) only once every header passed :func:`_safe_members`; its ``NAME`` folder becomes the
    dataset.

    Returns:
        ``(work folder, {"files": n, "known_files": k})``: images found, and those checked against the
        manifest. The caller renames ``work/NAME`` into place and removes the work folder.

    Raises:
        ArchiveError: naming the first problem (a member, a count, an image, a digest); the work folder
            is removed (or was never made).
    """
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"{source}: not a readable tar archive ({exc})") from None
    with tar:
        try:
            members = _safe_members(tar, spec, source)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError(f"{source}: the archive is damaged ({exc})") from None
        work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", suffix=".unpacking", dir=parent))
        try:
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(work, members=members, **kwargs)  # noqa: S202 (members checked above)
        except (tarfile.TarError, OSError, EOFError) as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise ArchiveError(f"{source}: the archive is damaged ({exc})") from None
    try:
        _follow_umask(work / spec.name)
        return work, check_content(spec, work / spec.name, source)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _follow_umask(root: Path) -> None:
    """Give the unpacked files and folders the modes this user's umask gives new ones (the archive's
    own modes are the publisher's)."""
    from p2ptools.runtime.output import current_umask

    mask = current_umask()
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def check_content(spec: DatasetArchive, root: Path, source: str) -> dict[str, int]:
    """Check an unpacked dataset folder against ``spec``: split counts, image sizes, known digests, and
    that no image is a byte-identical copy of one in another split (a test image that is a training
    image would make every score a lie).

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
        inspected = pool.map(lambda p: _inspect(p, spec.image_size), images)
        digests = {}
        for name, (problem, digest) in zip(names, inspected, strict=True):
            if problem:
                raise ArchiveError(f"{source}: {name}: {problem}")
            digests[name] = digest
    for name, digest in known.items():
        got = digests.get(name, "missing")
        if got != digest:
            raise ArchiveError(f"{source}: {name} is not the distributed file (SHA-256 {got}, expected {digest})")
    _refuse_copies_across_splits(digests, source)
    return {"files": len(images), "known_files": len(known)}


def _refuse_copies_across_splits(digests: dict[str, str], source: str) -> None:
    """Refuse an image whose bytes are those of an image in another split (``NAME/SPLIT/FILE`` names).

    Raises:
        ArchiveError: naming both files.
    """
    first: dict[str, str] = {}
    for name, digest in digests.items():
        other = first.setdefault(digest, name)
        if other.split("/")[1] != name.split("/")[1]:
            raise ArchiveError(f"{source}: {name} is a copy of {other} (SHA-256 {digest}); an image in two splits "
                               "makes the evaluation score training images, so this is not the distributed archive")


def _inspect(path: Path, size: tuple[int, int]) -> tuple[str, str]:
    """``(problem, SHA-256)`` of one image, read once: the problem is "" when it decodes at ``size``."""
    import cv2
    import numpy as np

    data = path.read_bytes()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    sha = hashlib.sha256(data).hexdigest()
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
