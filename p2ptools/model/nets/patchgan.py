"""PatchGAN discriminators (Isola et al. 2017, sec. 3.2.2 and the receptive-field ablation)."""

from __future__ import annotations

import torch
from torch import nn

from p2ptools.errors import ConfigError
from p2ptools.model.nets.blocks import ResidualSEBlock, norm_layer


class PatchDiscriminator(nn.Module):
    """``C64-C128-C256-C512`` convolutional patch classifier on the concatenated (A, B) pair.

    ``n_layers`` stride-2 4×4 convolutions, then a stride-1 one and a 1-channel output: each output
    logit sees a ``receptive_field(n_layers)`` square of the input: 1 → 16×16, 3 → 70×70
    (default), 5 → 286×286. No norm on the first layer; LeakyReLU 0.2.

    Args:
        in_channels: channels of A and B together (6 for RGB pairs).
        ndf: filters of the first layer.
        n_layers: stride-2 layers.
        norm: ``batch``, ``instance`` or ``none`` (use ``none`` for WGAN-GP, whose penalty is per sample).
        se_res: add a residual squeeze-and-excitation block after every inner layer (seed 001).
    """

    def __init__(self, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch",
                 se_res: bool = False) -> None:
        super().__init__()
        if n_layers < 1:
            raise ConfigError(f"n_layers must be at least 1, got {n_layers}")
        make_norm = norm_layer(norm)
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        c = ndf
        for i in range(1, n_layers + 1):
            c_prev, c = c, ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(c_prev, c, 4, stride, 1, bias=bias), make_norm(c), nn.LeakyReLU(0.2, inplace=True)]
            if se_res:
                layers.append(ResidualSEBlock(c, norm, act="leaky"))
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)
        self.n_layers = n_layers
        self.se_res = se_res

    def forward(self, ab: torch.Tensor) -> torch.Tensor:
        return self.model(ab)  # (B, 6, H, W) → (B, 1, H', W') logits, one per patch


class PixelDiscriminator(nn.Module):
    """The 1×1 "PixelGAN": 1×1 convolutions only, each logit judges one pixel (receptive field 1)."""

    def __init__(self, in_channels: int = 6, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        bias = norm != "batch"
        self.model = nn.Sequential(
            nn.Conv2d(in_channels, ndf, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias), norm_layer(norm)(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 1),
        )

    def forward(self, ab: torch.Tensor) -> torch.Tensor:
        return self.model(ab)  # (B, 6, H, W) → (B, 1, H, W)


def receptive_field(module: nn.Module) -> int:
    """Receptive field (pixels along one side) of a plain stack of convolutions.

    Walks the convolutions from the output back: ``r ← (r − 1) · stride + kernel``. The residual
    SE blocks are skipped: their 3×3 convolutions widen the field (their skip path does not).
    """
    r = 1
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    for conv in reversed(convs):
        if any(conv is c for blk in module.modules() if isinstance(blk, ResidualSEBlock) for c in blk.modules()):
            continue
        k, s = conv.kernel_size[0], conv.stride[0]
        r = (r - 1) * s + k
    return r
