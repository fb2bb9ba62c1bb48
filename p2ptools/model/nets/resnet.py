"""The ResNet generator of Johnson et al. (2016) as used by pix2pix and CycleGAN (``resnet_6blocks``,
``resnet_9blocks``): a 7×7 stem, two stride-2 downsamplings, N residual blocks, two transposed
upsamplings and a 7×7 tanh head (in fp32 under autocast: :class:`~p2ptools.model.nets.blocks.FP32Output`).

Parameter names follow the official code's ``state_dict`` (``model.<i>`` in one sequence, blocks as
``model.<i>.conv_block.<j>``), so its ``*_net_G.pth`` files load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from p2ptools.errors import ConfigError
from p2ptools.model.nets.blocks import FP32Output, fold_batchnorm_into, norm_layer


class ResnetBlock(nn.Module):
    """``x + (pad → conv3×3 → norm → ReLU [→ dropout] → pad → conv3×3 → norm)(x)``, reflection padding."""

    def __init__(self, channels: int, norm: str, dropout: float, bias: bool) -> None:
        super().__init__()
        make_norm = norm_layer(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
                                   make_norm(channels), nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), make_norm(channels)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)  # (B, C, H, W)


class ResnetGenerator(nn.Module):
    """ResNet generator: ``c7s1-ngf, d2ngf, d4ngf, R4ngf × n_blocks, u2ngf, ungf, c7s1-out``.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        ngf: filters of the stem (the blocks have ``4 * ngf``).
        n_blocks: residual blocks (6 for 128-px CycleGAN models, 9 for 256).
        norm: ``batch``, ``instance`` (CycleGAN) or ``none``.
        dropout: dropout probability inside the residual blocks (0: none).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", dropout: float = 0.0) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ConfigError(f"n_blocks must not be negative, got {n_blocks}")
        make_norm = norm_layer(norm)
        bias = norm != "batch"  # a bias right before a BatchNorm is redundant (the official rule)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias), make_norm(ngf),
                                   nn.ReLU(True)]
        for i in range(2):  # (B, ngf·2^i, H/2^i, W/2^i) → half the size, twice the filters
            c = ngf * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), make_norm(2 * c), nn.ReLU(True)]
        layers += [ResnetBlock(4 * ngf, norm, dropout, bias) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       make_norm(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = FP32Output(*layers, fp32_layers=3)  # the 7×7 head and tanh in fp32 under autocast

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this (two stride-2 steps)."""
        return 4

    def check_input(self, x: torch.Tensor) -> None:
        """Raise an actionable error when ``x`` does not come back at its own size."""
        if torch.onnx.is_in_onnx_export():
            return
        h, w = x.shape[-2:]
        if h % 4 or w % 4:
            raise ConfigError(f"input {w}×{h}: the ResNet generator needs heights and widths that are multiples of 4")

    def fold_batchnorm(self) -> ResnetGenerator:
        """Fold eval-mode BatchNorm into the convolution before it (inference only; no-op for instance norm)."""
        fold_batchnorm_into(self.model)
        for m in self.model:
            if isinstance(m, ResnetBlock):
                fold_batchnorm_into(m.conv_block)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.model(x)  # (B, out_channels, H, W) in [-1, 1]
