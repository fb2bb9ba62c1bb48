"""Pretrained weight files: found on disk, or downloaded once into torch hub's cache and verified.

A file is looked for, in order, in: the folder given explicitly (``--weights-dir``), the folder in
``$P2PTOOLS_WEIGHTS``, and torch hub's checkpoint cache (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``), where torchvision and pytorch-fid keep the same files. A known
file found nowhere is downloaded on first use into that cache (:func:`p2ptools.runtime.download.fetch`:
a progress bar on a terminal, one log line otherwise; a redirect from https or this machine to plain
http elsewhere is refused), checked, then moved into place.

Every known file is checked against its full SHA-256 (AlexNet's name carries only an 8-digit prefix;
its full digest is the one several public projects pin for torchvision's file), after a download and
before a file found on disk is given to torch, so a damaged or replaced file is named with both
digests instead of failing inside torch. A file known only by a prefix would be downloaded only over
https or from this machine.
``$P2PTOOLS_WEIGHTS_URL`` replaces the download location (``$P2PTOOLS_WEIGHTS_URL/<file name>``:
an internal mirror, or a test server). ``offline`` (``--offline``, ``P2PTOOLS_OFFLINE=1``) never
touches the network and says which files are missing and where to put them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from p2ptools.errors import P2PError
from p2ptools.evaluation.metrics.registry import METRICS
from p2ptools.runtime.download import DownloadFailed, fetch, is_offline, part_path, sha256_of, trusted_transport
from p2ptools.runtime.progress import report

log = logging.getLogger(__name__)


class WeightsNotFound(P2PError):
    """A pretrained weights file is not on this machine (and may not be downloaded)."""


class WeightsDownloadError(P2PError):
    """A weights file could not be downloaded, or the download was not the expected file."""


@dataclass(frozen=True)
class WeightsFile:
    """A pretrained weights file p2ptools knows.

    Args:
        name: file name on disk (and under ``$P2PTOOLS_WEIGHTS_URL``).
        what: what it is, in words.
        url: where it is downloaded from.
        sha256: its SHA-256 in hex (64 digits), or the prefix torchvision's file name carries where
            no full digest is published.

    Which metrics need it is said by the metrics registry (:attr:`used_by`).
    """

    name: str
    what: str
    url: str
    sha256: str

    @property
    def used_by(self) -> str:
        """The metrics that need this file (those of the registry naming it in their ``weights``)."""
        return ", ".join(m.name for m in METRICS.values() if self.name in m.weights)


KNOWN_WEIGHTS: dict[str, WeightsFile] = {w.name: w for w in (
    WeightsFile("pt_inception-2015-12-05-6726825d.pth",
                "FID Inception-v3 (pytorch-fid's port of TensorFlow's FID network)",
                "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                "pt_inception-2015-12-05-6726825d.pth",
                "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"),
    WeightsFile("vgg19-dcbb9e9d.pth", "torchvision's ImageNet VGG19",
                "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
                "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"),
    WeightsFile("alexnet-owt-7be5be79.pth", "torchvision's ImageNet AlexNet (the LPIPS backbone)",
                "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02"),
    WeightsFile("lpips-v0.1-alex.pth", "LPIPS v0.1 linear heads for AlexNet (Zhang et al. 2018)",
                "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
                "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"),
)}


def cache_dir() -> Path:
    """torch hub's checkpoint folder, where downloads go."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs(weights_dir: Path | None = None) -> list[Path]:
    """The folders searched for weight files, in order."""
    dirs = []
    if weights_dir is not None:
        dirs.append(Path(weights_dir))
    if os.environ.get("P2PTOOLS_WEIGHTS"):
        dirs.append(Path(os.environ["P2PTOOLS_WEIGHTS"]))
    dirs.append(cache_dir())
    return dirs


def download_url(spec: WeightsFile) -> str:
    """Where ``spec`` is downloaded from: ``$P2PTOOLS_WEIGHTS_URL/<name>`` when set, else its URL."""
    base = os.environ.get("P2PTOOLS_WEIGHTS_URL", "").strip()
    return f"{base.rstrip('/')}/{spec.name}" if base else spec.url


def locate(filename: str, weights_dir: Path | None = None) -> Path | None:
    """The path of ``filename`` in the first search folder that has it, or None."""
    for d in search_dirs(weights_dir):
        if (d / filename).is_file():
            return d / filename
    return None


def find_weights(filename: str, weights_dir: Path | None = None, offline: bool | None = None) -> Path:
    """The path of ``filename``: on disk, else downloaded (a known file, when not offline).

    Raises:
        WeightsNotFound: offline, or an unknown file: naming it, the folders searched and its URL.
        WeightsDownloadError: the download failed or was not the expected file (nothing is kept).
    """
    found = locate(filename, weights_dir)
    spec = KNOWN_WEIGHTS.get(filename)
    if found is not None:
        if spec is not None:
            verify(spec, found)
        return found
    dirs = ", ".join(str(d) for d in search_dirs(weights_dir))
    if spec is None or is_offline(offline):
        what = f" ({spec.what})" if spec else ""
        where = f"; download it from {download_url(spec)} and put it in one of them" if spec else ""
        why = " (offline: nothing is downloaded)" if spec else ""
        raise WeightsNotFound(f"{filename}{what} not found{why}; looked in {dirs}{where}, or pass --weights-dir / "
                              "set P2PTOOLS_WEIGHTS")
    return download(spec)


def download(spec: WeightsFile, progress: bool | None = None) -> Path:
    """Download ``spec`` into torch hub's cache, check its SHA-256, then move it into place.

    Raises:
        WeightsDownloadError: naming the URL (and the expected and received checksum), and where
            to put the file by hand; no file is left in the cache.
    """
    url = download_url(spec)
    if len(spec.sha256) < 64 and not trusted_transport(url):
        raise WeightsDownloadError(f"{spec.name}: refused to download from {url}: only a prefix of this file's SHA-256 "
                                   "is known, so it is fetched over https (or from this machine) only; download it "
                                   f"by hand and put it in {cache_dir()} (or --weights-dir / P2PTOOLS_WEIGHTS)")
    dest_dir = cache_dir()
    dest = dest_dir / spec.name
    part = part_path(dest)
    by_hand = f"download it by hand and put it in {dest_dir} (or --weights-dir / P2PTOOLS_WEIGHTS)"
    report("downloading %s (%s) from %s to %s", spec.name, spec.what, url, dest_dir)
    try:
        fetch(url, part, progress)
        got = sha256_of(part)
        if not digest_matches(spec, got):
            raise WeightsDownloadError(f"{spec.name}: the file from {url} is not the expected one (SHA-256 "
                                       f"{got}, expected {expected_text(spec)}); nothing was kept; {by_hand}")
        os.replace(part, dest)
    except DownloadFailed as exc:
        raise WeightsDownloadError(f"{spec.name}: cannot download from {url} ({exc}); {by_hand}") from exc
    finally:
        part.unlink(missing_ok=True)
    return dest


@dataclass
class WeightsStatus:
    """One known file on this machine: where it is and whether its checksum is right."""

    spec: WeightsFile
    path: Path | None
    size: int | None
    checksum_ok: bool | None


def status(weights_dir: Path | None = None, names: list[str] | None = None) -> list[WeightsStatus]:
    """Every known file (or ``names``): present or missing, where, size, checksum OK."""
    rows = []
    for name in names or list(KNOWN_WEIGHTS):
        spec = known(name)
        path = locate(name, weights_dir)
        rows.append(WeightsStatus(spec, path, path.stat().st_size if path else None,
                                  digest_matches(spec, cached_sha256(path)) if path else None))
    return rows


def digest_matches(spec: WeightsFile, digest: str) -> bool:
    """Whether ``digest`` is ``spec``'s: equal to its full SHA-256 (or starting with its known prefix)."""
    return digest == spec.sha256 if len(spec.sha256) == 64 else digest.startswith(spec.sha256)


def expected_text(spec: WeightsFile) -> str:
    """The expected digest as printed (a prefix gets an ellipsis)."""
    return spec.sha256 + ("" if len(spec.sha256) == 64 else "…")


_DIGESTS: dict[tuple[str, int, int], str] = {}


def cached_sha256(path: Path) -> str:
    """SHA-256 of ``path``, computed once per file version (path, size, mtime) in this process."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_of(path)
    return _DIGESTS[key]


class WeightsChecksumError(WeightsNotFound):
    """A weights file on disk is not the expected file (damaged, truncated or another file)."""


def mismatch_message(spec: WeightsFile, path: Path, got: str) -> str:
    """What ``p2ptools weights`` and every metric say of a file whose digest is wrong."""
    return (f"{path}: not the expected {spec.name} ({spec.what}): SHA-256 {got}, expected {expected_text(spec)}; "
            f"it was not loaded. Delete it and run `p2ptools weights --download {spec.name}`, or put the right file "
            f"(from {download_url(spec)}) in {path.parent}")


def verify(spec: WeightsFile, path: Path) -> str:
    """Check ``path`` against ``spec``'s digest before anything reads it; returns the digest.

    Raises:
        WeightsChecksumError: naming both digests and where to put the right file.
    """
    got = cached_sha256(path)
    if not digest_matches(spec, got):
        raise WeightsChecksumError(mismatch_message(spec, path, got))
    return got


def weights_digest(filename: str, weights_dir: Path | None = None) -> str:
    """The SHA-256 of the weights file in use (for feature caches and provenance); '' when absent."""
    path = locate(filename, weights_dir)
    return cached_sha256(path) if path is not None else ""


def known(name: str) -> WeightsFile:
    """The known file called ``name`` (a file name, or a metric that needs one file).

    Raises:
        WeightsNotFound: listing the known names.
    """
    if name in KNOWN_WEIGHTS:
        return KNOWN_WEIGHTS[name]
    raise WeightsNotFound(f"unknown weights file {name!r}; known: {', '.join(KNOWN_WEIGHTS)}")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict saved with ``torch.save``.

    Raises:
        WeightsNotFound: if the file cannot be read as a state dict.
    """
    from p2ptools.errors import InputError
    from p2ptools.runtime.safeload import load_torch_file

    spec = KNOWN_WEIGHTS.get(Path(path).name)
    if spec is not None:  # never give torch a file that is not the expected one
        verify(spec, Path(path))
    try:
        state = load_torch_file(Path(path), "cpu", what="weights file")
    except InputError as exc:
        raise WeightsNotFound(str(exc)) from None
    if not isinstance(state, dict):
        raise WeightsNotFound(f"{path}: not a state dict")
    return state
