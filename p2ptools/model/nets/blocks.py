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


def _autocast_on(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (False where this torch has no autocast for it: MPS
    before torch 2.5 raises)."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except RuntimeError:
        return False


class FP32Output(nn.Sequential):
    """A generator's output layers that run in fp32 under autocast: a ``Sequential`` whose last
    ``fp32_layers`` layers (all by default) see their input cast to float32 with autocast off.

    Under bf16 autocast a tanh output has 8 significant bits: about 128 levels in [0.5, 1), so 16-bit
    and float targets would be predicted on a coarse grid in training and inference alike. The
    children and their ``state_dict`` keys are those of the plain ``Sequential`` it replaces, so
    checkpoints and the official weights load unchanged; without autocast (fp32, ONNX export) it is
    that ``Sequential``, node for node.

    Args:
        layers: the layers, in order.
        fp32_layers: how many of the last layers run in fp32 (``None``: all of them).
    """

    def __init__(self, *layers: nn.Module, fp32_layers: int | None = None) -> None:
        super().__init__(*layers)
        self.fp32_layers = len(layers) if fp32_layers is None else fp32_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        split = len(layers) - self.fp32_layers
        for layer in layers[:split]:
            x = layer(x)
        if not _autocast_on(x.device.type):
            for layer in layers[split:]:
                x = layer(x)
            return x
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            for layer in layers[split:]:
                x = layer(x)
        return x  # float32


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
