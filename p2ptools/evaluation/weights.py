"""Finding pretrained weight files on disk — never downloading them.

A weights file is looked for, in order, in: the folder given explicitly (``--weights-dir``), the
folder in ``$P2PTOOLS_WEIGHTS``, and torch hub's checkpoint cache (``$TORCH_HOME/hub/checkpoints``,
by default ``~/.cache/torch/hub/checkpoints``), where ``torch.hub`` and pytorch-fid leave the
files they download. When it is in none of them the error names the file, every folder looked in,
and where to get it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from p2ptools.errors import P2PError


class WeightsNotFound(P2PError):
    """A pretrained weights file is not on this machine."""


#: file name → (what it is, where to get it)
KNOWN_WEIGHTS: dict[str, tuple[str, str]] = {
    "pt_inception-2015-12-05-6726825d.pth": (
        "the FID Inception-v3 weights (pytorch-fid's port of TensorFlow's FID network)",
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    ),
    "vgg19-dcbb9e9d.pth": (
        "torchvision's ImageNet VGG19 weights",
        "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    ),
}


def search_dirs(weights_dir: Path | None = None) -> list[Path]:
    """The folders searched for weight files, in order."""
    dirs = []
    if weights_dir is not None:
        dirs.append(Path(weights_dir))
    if os.environ.get("P2PTOOLS_WEIGHTS"):
        dirs.append(Path(os.environ["P2PTOOLS_WEIGHTS"]))
    dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    return dirs


def find_weights(filename: str, weights_dir: Path | None = None) -> Path:
    """The path of ``filename`` in the first search folder that has it.

    Raises:
        WeightsNotFound: naming the file, the folders searched and where to download it by hand.
    """
    dirs = search_dirs(weights_dir)
    for d in dirs:
        if (d / filename).is_file():
            return d / filename
    what, url = KNOWN_WEIGHTS.get(filename, ("a weights file", ""))
    where = f"; download it from {url} and put it in one of them" if url else ""
    raise WeightsNotFound(
        f"{filename} ({what}) not found; looked in {', '.join(str(d) for d in dirs)}{where}, "
        "or pass --weights-dir / set P2PTOOLS_WEIGHTS (p2ptools never downloads weights)"
    )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict saved with ``torch.save``.

    Raises:
        WeightsNotFound: if the file cannot be read as a state dict.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise WeightsNotFound(f"{path}: cannot read as a PyTorch state dict: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsNotFound(f"{path}: not a state dict")
    return state
