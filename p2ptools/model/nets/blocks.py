"""Building blocks shared by the generators and discriminators."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from p2ptools.config import NORMS
from p2ptools.errors import ConfigError


def norm_layer(kind: str) -> Callable[[int], nn.Module]:
    """A factory ``channels → normalisation module``.

    ``batch`` is the paper's BatchNorm (affine, running statistics); ``instance`` is InstanceNorm
    without affine parameters or running statistics, as in the official pix2pix code; ``none``
    is the identity.

    Raises:
        ConfigError: for an unknown kind.
    """
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if kind == "none":
        return lambda channels: nn.Identity()
    raise ConfigError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


class SqueezeExcitation(nn.Module):
    """Channel attention of Hu et al. (2018): global average pool → bottleneck MLP → sigmoid gates.

    Args:
        channels: input and output channels.
        reduction: bottleneck ratio (at least 1 hidden unit).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x)  # (B, C, H, W) * (B, C, 1, 1)


class ResidualSEBlock(nn.Module):
    """``x + SE(conv3×3 → norm → act → conv3×3 → norm)(x)``: a residual block with SE attention.

    Args:
        channels: input and output channels.
        norm: normalisation kind (see :func:`norm_layer`).
        act: ``relu`` or ``leaky`` (LeakyReLU 0.2).
    """

    def __init__(self, channels: int, norm: str = "batch", act: str = "relu") -> None:
        super().__init__()
        make_norm = norm_layer(norm)
        bias = norm != "batch"
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=bias),
            make_norm(channels),
            nn.ReLU(inplace=True) if act == "relu" else nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=bias),
            make_norm(channels),
            SqueezeExcitation(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """The pix2pix initialisation: conv weights ~ N(0, std), biases 0, BatchNorm weights ~ N(1, std)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def fold_batchnorm_into(seq: nn.Sequential) -> None:
    """Fold every eval-mode BatchNorm of ``seq`` into the (transposed) convolution right before it, in
    place (the BatchNorm becomes an Identity): inference with running statistics only."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    layers = list(seq)
    for i in range(len(layers) - 1):
        conv, bn = layers[i], layers[i + 1]
        if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d):
            seq[i] = fuse_conv_bn_eval(conv.eval(), bn.eval(), transpose=isinstance(conv, nn.ConvTranspose2d))
            seq[i + 1] = nn.Identity().train(bn.training)  # in the mode of what it replaces (eval)
