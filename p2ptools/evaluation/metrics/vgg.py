"""VGG19 feature cosine similarity between real and generated images.

Features of torchvision's VGG19 (ImageNet weights from ``vgg19-dcbb9e9d.pth``, found or downloaded
by :mod:`p2ptools.evaluation.weights`) at ``relu1_2, relu2_2, relu3_4, relu4_4, relu5_4``. For each layer
the cosine similarity is taken **per spatial position** (between the two C-dimensional feature
vectors at that position) and averaged over positions; the metric is the mean over layers.

Why per position: seed 001 reported 0.99 for every model. Cosine of whole flattened feature maps is
dominated by the large, always-positive ReLU activations that any natural image shares, so it barely
moves. Per-position cosine compares what is at each place and falls steadily as images diverge
(tested). Positions where both feature vectors are zero are left out (they agree trivially).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from p2ptools.evaluation.weights import find_weights, load_state_dict

VGG_WEIGHTS = "vgg19-dcbb9e9d.pth"
#: layer name → index of that ReLU in ``torchvision.models.vgg19().features``
VGG_LAYERS: dict[str, int] = {"relu1_2": 3, "relu2_2": 8, "relu3_4": 17, "relu4_4": 26, "relu5_4": 35}
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class VGGFeatures(nn.Module):
    """``(N, 3, H, W)`` RGB in [0, 1] → the features at :data:`VGG_LAYERS` (ImageNet-normalised input)."""

    def __init__(self, vgg: torchvision.models.VGG) -> None:
        super().__init__()
        self.features = vgg.features[: max(VGG_LAYERS.values()) + 1]
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - _MEAN.to(x.device)) / _STD.to(x.device)
        out = {}
        wanted = {i: name for name, i in VGG_LAYERS.items()}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x  # (N, C_l, H_l, W_l)
        return out


def load_vgg_network(weights_dir: Path | None = None, offline: bool | None = None) -> VGGFeatures:
    """VGG19 features with ImageNet weights found or downloaded.

    Raises:
        WeightsNotFound: offline and ``vgg19-dcbb9e9d.pth`` is not on disk.
        WeightsDownloadError: the download failed.
    """
    vgg = torchvision.models.vgg19(weights=None)
    vgg.load_state_dict(load_state_dict(find_weights(VGG_WEIGHTS, weights_dir, offline)))
    return VGGFeatures(vgg)


def positionwise_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean over positions of the cosine between ``(N, C, H, W)`` feature maps; ``(N,)``.

    Positions where both vectors are (near) zero are excluded; an image with no such position gets 1.
    """
    na, nb = a.norm(dim=1), b.norm(dim=1)  # (N, H, W)
    cos = (a * b).sum(dim=1) / (na * nb).clamp_min(eps)
    keep = (na > eps) | (nb > eps)
    total = (cos * keep).flatten(1).sum(1)
    count = keep.flatten(1).sum(1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.ones_like(total))


@torch.inference_mode()
def vgg_cosine(net: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image cosine per layer (``vgg_<layer>``) and their mean (``vgg_cos``), each ``(N,)``."""
    fr, ff = net(real), net(fake)
    out = {f"vgg_{name}": positionwise_cosine(fr[name].float(), ff[name].float()) for name in VGG_LAYERS}
    out["vgg_cos"] = torch.stack(list(out.values())).mean(0)
    return out
