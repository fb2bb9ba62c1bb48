"""The pix2pix U-Net generator (Isola et al. 2017, appendix 6.1.1), with an SE-residual variant."""

from __future__ import annotations

import torch
from torch import nn

from p2ptools.errors import ConfigError
from p2ptools.model.nets.blocks import FP32Output, ResidualSEBlock, fold_batchnorm_into, norm_layer

#: the U-Net's layer kinds: the paper's plain convolutions, or residual squeeze-and-excitation blocks
BLOCKS: tuple[str, ...] = ("conv", "se_res")


class UNetGenerator(nn.Module):
    """U-Net: 4×4 stride-2 convolutions down, transposed convolutions up, skips by concatenation.

    Encoder ``C64-C128-C256-C512-C512-C512-C512-C512`` (for ``ngf=64, num_downs=8``): LeakyReLU 0.2,
    no norm on the first layer nor on the innermost one. Decoder mirrors it: ReLU, norm, dropout 0.5
    in the ``n_dropout`` innermost decoder blocks (the paper's noise, its first three decoder
    layers), decoder block i concatenated with encoder block n−i, tanh output in [-1, 1]. The output
    layer (ReLU, transposed convolution, tanh) runs in fp32 under autocast (:class:`FP32Output`).

    Args:
        in_channels: channels of the input (3 for RGB).
        out_channels: channels of the output.
        num_downs: downsamplings; inputs must be divisible by ``2**num_downs`` (8 → 256, 9 → 512).
        ngf: filters of the first layer; layer i has ``ngf * min(2**i, 8)``.
        norm: ``batch`` (paper), ``instance`` or ``none``.
        dropout: dropout probability in the innermost decoder blocks (0 disables it).
        n_dropout: how many innermost decoder blocks get dropout.
        block: ``conv`` (paper) or ``se_res`` (a residual squeeze-and-excitation block after every
            inner encoder and decoder layer: the seed-001 variant).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
        n_dropout: int = 3,
        block: str = "conv",
    ) -> None:
        super().__init__()
        if num_downs < 2:
            raise ConfigError(f"num_downs must be at least 2, got {num_downs}")
        if block not in BLOCKS:
            raise ConfigError(f"unknown generator block {block!r}; choose one of {', '.join(BLOCKS)}")
        self.num_downs = num_downs
        make_norm = norm_layer(norm)
        bias = norm != "batch"
        chans = [ngf * min(2**i, 8) for i in range(num_downs)]
        self.down = nn.ModuleList()
        for i, c in enumerate(chans):
            layers: list[nn.Module] = []
            if i > 0:
                layers.append(nn.LeakyReLU(0.2, inplace=True))
            layers.append(nn.Conv2d(in_channels if i == 0 else chans[i - 1], c, 4, 2, 1,
                                    bias=bias or i == 0 or i == num_downs - 1))
            if 0 < i < num_downs - 1:
                layers.append(make_norm(c))
                if block == "se_res":
                    layers.append(ResidualSEBlock(c, norm, act="leaky"))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for i in reversed(range(num_downs)):  # up[k] undoes down[i], k = num_downs - 1 - i
            k = num_downs - 1 - i
            c_in = chans[i] if i == num_downs - 1 else chans[i] * 2
            layers = [nn.ReLU(inplace=True)]
            if i == 0:  # the output layer: in fp32 under autocast (FP32Output), same keys as a Sequential
                layers += [nn.ConvTranspose2d(c_in, out_channels, 4, 2, 1), nn.Tanh()]
                self.up.append(FP32Output(*layers))
                continue
            else:
                c_out = chans[i - 1]
                layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias), make_norm(c_out)]
                if block == "se_res":
                    layers.append(ResidualSEBlock(c_out, norm))
                if k < n_dropout and dropout > 0:
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def fold_batchnorm(self) -> UNetGenerator:
        """Fold every eval-mode BatchNorm into the (transposed) convolution before it, in place.

        For inference with running statistics only: the result equals the unfolded network up to
        float rounding (~1e-6) and runs ~10% faster in bf16 on CPU. Training after folding is wrong.
        """
        for seq in [*self.down, *self.up]:
            fold_batchnorm_into(seq)
        return self

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.num_downs

    def check_input(self, x: torch.Tensor) -> None:
        """Raise an actionable error when ``x`` cannot pass through the U-Net."""
        if torch.onnx.is_in_onnx_export():  # the exported graph takes any multiple; no Python check in it
            return
        h, w = x.shape[-2:]
        m = self.multiple
        if h % m or w % m:
            raise ConfigError(
                f"input {w}×{h} does not fit a U-Net with {self.num_downs} downsamplings: height and width must "
                f"be multiples of {m}; resize or crop to {max(m, h // m * m)}×{max(m, w // m * m)}, or use a "
                f"preset with fewer downsamplings (num_downs={max(2, self.num_downs - 1)} takes multiples of {m // 2})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        for layer in self.down:  # (B, C_i, H / 2**(i+1), W / 2**(i+1))
            x = layer(x)
            skips.append(x)
        x = self.up[0](skips[-1])  # innermost: (B, C, 2, 2) at 256
        for k in range(1, self.num_downs):
            x = self.up[k](torch.cat([x, skips[-1 - k]], dim=1))  # concat encoder layer n-k
        return x  # (B, out_channels, H, W) in [-1, 1]
