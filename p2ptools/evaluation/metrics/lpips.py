"""LPIPS, the learned perceptual image patch similarity of Zhang et al. (CVPR 2018), AlexNet variant.

``d(x, y) = Σ_l mean_{h,w} ‖ w_l ⊙ (f̂_l(x) − f̂_l(y)) ‖²``, where ``f_l`` are AlexNet's five ReLU
outputs on inputs in [-1, 1] shifted and scaled as the ``lpips`` package does, ``f̂_l`` is ``f_l``
divided by its channel norm at each position, and ``w_l`` the calibrated linear heads (v0.1) learned
on human 2AFC judgements. Lower is more similar; identical images give 0.

The backbone weights are torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``), the heads
the ``lpips`` package's ``v0.1/alex.pth`` (``lpips-v0.1-alex.pth`` here); both are found or
downloaded by :mod:`p2ptools.evaluation.weights`. The layers are written out here rather than taken
from the ``lpips`` package, which would download the backbone by itself; a test checks that both
give the same distance on the same weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from p2ptools.evaluation.weights import find_weights, load_state_dict

BACKBONE_WEIGHTS = "alexnet-owt-7be5be79.pth"
HEAD_WEIGHTS = "lpips-v0.1-alex.pth"
#: the slices of ``torchvision.models.alexnet().features`` that end at relu1 … relu5 (as lpips cuts them)
SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))
_SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
_SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)


class LPIPS(nn.Module):
    """``(N, 3, H, W)`` RGB pairs in [0, 1] → ``(N,)`` LPIPS distances."""

    def __init__(self, alexnet: torchvision.models.AlexNet, heads: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.slices = nn.ModuleList(nn.Sequential(*alexnet.features[a:b]) for a, b in SLICES)
        # the v0.1 heads are 1×1 convolutions without bias: weights (1, C_l, 1, 1)
        self.heads = nn.ParameterList(nn.Parameter(heads[f"lin{i}.model.1.weight"].float(), requires_grad=False)
                                      for i in range(len(SLICES)))
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """AlexNet's relu1…relu5 of ``x`` in [0, 1], each unit-normalised over channels."""
        x = (x * 2 - 1 - _SHIFT.to(x.device)) / _SCALE.to(x.device)
        out = []
        for s in self.slices:
            x = s(x)  # (N, C_l, H_l, W_l)
            out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(a.shape[0], device=a.device)
        for fa, fb, w in zip(self.features(a), self.features(b), self.heads, strict=True):
            d = (fa - fb).pow(2)  # (N, C_l, H_l, W_l)
            total = total + (d * w).sum(dim=1).mean(dim=(1, 2))
        return total


def load_lpips_network(weights_dir: Path | None = None, offline: bool | None = None) -> LPIPS:
    """LPIPS (AlexNet, v0.1) with its weights found or downloaded.

    Raises:
        WeightsNotFound: offline and a file is missing.
        WeightsDownloadError: a download failed.
    """
    alexnet = torchvision.models.alexnet(weights=None)
    alexnet.load_state_dict(load_state_dict(find_weights(BACKBONE_WEIGHTS, weights_dir, offline)))
    return LPIPS(alexnet, load_state_dict(find_weights(HEAD_WEIGHTS, weights_dir, offline)))
