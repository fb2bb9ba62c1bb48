"""Images to network tensors and back, and the generator's inference mode: what training, prediction
and export agree on (``[-1, 1]`` floats, bicubic resizing as pix2pix does)."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 → ``(3, H, W)`` float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def to_uint8_tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` uint8 → ``(C, H, W)`` uint8 (a view): what crosses from DataLoader workers, a
    quarter of the bytes of :func:`to_tensor`'s floats; :func:`uint8_to_unit` makes it those floats."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)


#: :func:`to_tensor`'s value of each byte, computed by its own formula on the CPU: a look-up in it is
#: bit-identical to ``x.float().div_(127.5).sub_(1.0)`` on any device (CUDA divides by a scalar as a
#: multiplication by its reciprocal, which can differ in the last bit).
_UNIT_OF_BYTE = torch.arange(256, dtype=torch.uint8).float().div_(127.5).sub_(1.0)


def uint8_to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 tensor (any shape, any device) → float32 in [-1, 1], bit-identical to :func:`to_tensor`:
    its own formula on the CPU (a look-up there is ~10× slower), a look-up elsewhere."""
    return x.float().div_(127.5).sub_(1.0) if x.device.type == "cpu" else unit_by_lookup(x)


_UNIT_ON: dict[torch.device, torch.Tensor] = {}  # the table on each device, copied there once


def unit_by_lookup(x: torch.Tensor) -> torch.Tensor:
    """:func:`uint8_to_unit` on a GPU: each byte's float looked up in :data:`_UNIT_OF_BYTE` (copied to
    the device once: a copy per call would make the host wait for the device at every step)."""
    table = _UNIT_ON.get(x.device)
    if table is None:
        table = _UNIT_ON[x.device] = _UNIT_OF_BYTE.to(x.device)
    return table.index_select(0, x.reshape(-1).to(torch.int32)).view(x.shape)


def to_image(t: torch.Tensor, truncate: bool = False) -> np.ndarray:
    """``(3, H, W)`` tensor in [-1, 1] → ``(H, W, 3)`` uint8 (rounded, clipped; ``truncate``: rounded
    down, as the official pix2pix code's ``tensor2im`` does). Other channel counts are shown as their
    first three channels (RGB of RGBN), or one channel as gray."""
    t = t[:3] if t.shape[0] >= 3 else t[:1].expand(3, -1, -1)
    arr = (t.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5
    return (arr if truncate else arr.round()).byte().permute(1, 2, 0).numpy()


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size × size`` with bicubic interpolation (as pix2pix does); no-op when already so."""
    return img if img.shape[:2] == (size, size) else cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)


def folded_for_inference(G: nn.Module) -> nn.Module:
    """``G`` in eval mode with its BatchNorm folded into the convolutions (in place; returned): an
    eval-mode BatchNorm is an affine map, so the outputs stay the same within float rounding.

    Only for inference with running statistics (not with ``--batch-stats on``, nor for training).
    """
    set_inference_mode(G)
    fold = getattr(G, "fold_batchnorm", None)
    if fold is not None:
        fold()
    return G


def set_inference_mode(G: nn.Module, dropout: bool = False, batch_stats: bool = False) -> None:
    """Eval mode, then optionally dropout and/or BatchNorm batch statistics back on (the paper's test mode)."""
    G.eval()
    for mod in G.modules():
        if dropout and isinstance(mod, nn.Dropout):
            mod.train()
        if batch_stats and isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.train()
            mod.momentum = 0.0  # use batch statistics without changing the stored running ones
