"""How big a network is, computed from its settings alone (nothing is built or allocated).

:class:`~p2ptools.model.config.ModelConfig` checks a configuration with these counts before any network is
built, so a checkpoint, preset or ``--set`` asking for ``ngf=100000`` is refused with what it would
need instead of an allocator's traceback. Each ``*_parameters`` function takes the keyword arguments
of its network's constructor and returns exactly ``sum(p.numel() for p in net.parameters())``
(tests/model/test_footprint.py checks every variant); each ``*_activations`` function is a rough
count of the values one forward pass of one ``size × size`` image produces (the outputs of its
convolutions, norms and activations, and the U-Net's skip concatenations: within ~20% of a count of
every layer's output), the least that training one image holds.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

#: bytes of one float32 value
FLOAT_BYTES = 4


def _norm(norm: str, channels: int) -> int:
    """Parameters of a norm layer: BatchNorm's affine weight and bias; InstanceNorm (no affine), none: 0."""
    return 2 * channels if norm == "batch" else 0


def _conv(c_in: int, c_out: int, k: int, bias: bool) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def _se_res(channels: int, norm: str) -> int:
    """A :class:`~p2ptools.model.nets.blocks.ResidualSEBlock`: two 3×3 convs with norms, an SE bottleneck."""
    bias = norm != "batch"
    hidden = max(1, channels // 16)
    return 2 * (_conv(channels, channels, 3, bias) + _norm(norm, channels)) + \
        _conv(channels, hidden, 1, True) + _conv(hidden, channels, 1, True)


def unet_parameters(in_channels: int = 3, out_channels: int = 3, num_downs: int = 8, ngf: int = 64,
                    norm: str = "batch", dropout: float = 0.5, n_dropout: int = 3, block: str = "conv") -> int:
    """Parameters of :class:`~p2ptools.model.nets.unet.UNetGenerator` (same arguments)."""
    bias = norm != "batch"
    se = block == "se_res"
    chans = [ngf * min(2**i, 8) for i in range(num_downs)]
    n = 0
    for i, c in enumerate(chans):  # encoder: 4×4 stride-2 convs; norm (and SE) on the inner ones
        n += _conv(in_channels if i == 0 else chans[i - 1], c, 4, bias or i in (0, num_downs - 1))
        if 0 < i < num_downs - 1:
            n += _norm(norm, c) + (_se_res(c, norm) if se else 0)
    for i in range(num_downs):  # decoder: the transposed conv undoing down[i] takes its skip too
        c_in = chans[i] if i == num_downs - 1 else 2 * chans[i]
        if i == 0:
            n += _conv(c_in, out_channels, 4, True)
        else:
            n += _conv(c_in, chans[i - 1], 4, bias) + _norm(norm, chans[i - 1])
            n += _se_res(chans[i - 1], norm) if se else 0
    return n


def resnet_parameters(in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                      norm: str = "instance", dropout: float = 0.0) -> int:
    """Parameters of :class:`~p2ptools.model.nets.resnet.ResnetGenerator` (same arguments)."""
    bias = norm != "batch"
    n = _conv(in_channels, ngf, 7, bias) + _norm(norm, ngf)
    for i in range(2):  # two stride-2 convs, then their mirrors as transposed convs
        c = ngf * 2**i
        n += _conv(c, 2 * c, 3, bias) + _norm(norm, 2 * c)
        n += _conv(2 * c, c, 3, bias) + _norm(norm, c)
    n += n_blocks * 2 * (_conv(4 * ngf, 4 * ngf, 3, bias) + _norm(norm, 4 * ngf))
    return n + _conv(ngf, out_channels, 7, True)


def patch_parameters(in_channels: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch",
                     se_res: bool = False) -> int:
    """Parameters of :class:`~p2ptools.model.nets.patchgan.PatchDiscriminator` (same arguments)."""
    bias = norm != "batch"
    n = _conv(in_channels, ndf, 4, True)
    c = ndf
    for i in range(1, n_layers + 1):
        c_prev, c = c, ndf * min(2**i, 8)
        n += _conv(c_prev, c, 4, bias) + _norm(norm, c) + (_se_res(c, norm) if se_res else 0)
    return n + _conv(c, 1, 4, True)


def pixel_parameters(in_channels: int = 6, ndf: int = 64, norm: str = "batch") -> int:
    """Parameters of :class:`~p2ptools.model.nets.patchgan.PixelDiscriminator` (same arguments)."""
    bias = norm != "batch"
    return _conv(in_channels, ndf, 1, True) + _conv(ndf, 2 * ndf, 1, bias) + _norm(norm, 2 * ndf) + \
        _conv(2 * ndf, 1, 1, True)


def unet_activations(size: int, in_channels: int = 3, out_channels: int = 3, num_downs: int = 8, ngf: int = 64,
                     **_: Any) -> int:
    """Rough count of the values a U-Net's forward pass of one ``size``-px image produces."""
    chans = [ngf * min(2**i, 8) for i in range(num_downs)]
    down = sum(c * (size >> (i + 1)) ** 2 for i, c in enumerate(chans))
    up = out_channels * size**2 + sum(chans[i - 1] * (size >> i) ** 2 for i in range(1, num_downs))
    return 2 * (down + up) + 2 * down  # conv outputs, their norm/activation, the concatenated skips


def resnet_activations(size: int, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                       **_: Any) -> int:
    """Rough count of the values a ResNet generator's forward pass of one ``size``-px image produces."""
    s2, s4 = (size // 2) ** 2, (size // 4) ** 2
    outer = 2 * ngf * size**2 + 2 * 2 * ngf * s2 + 4 * ngf * s4  # stem, downs, ups: conv, norm, ReLU each
    return 3 * outer + n_blocks * 7 * 4 * ngf * s4 + 2 * out_channels * size**2  # a block: 7 layers


def patch_activations(size: int, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, **_: Any) -> int:
    """Rough count of the values a PatchGAN's forward pass of one ``size``-px pair produces."""
    n = 2 * ndf * (size // 2) ** 2  # conv, LeakyReLU
    for i in range(1, n_layers + 1):  # conv, norm, LeakyReLU
        n += 3 * ndf * min(2**i, 8) * (size >> min(i + 1, n_layers)) ** 2
    return n


def pixel_activations(size: int, in_channels: int = 6, ndf: int = 64, **_: Any) -> int:
    """Rough count of the values a PixelGAN's forward pass of one ``size``-px pair produces."""
    return 2 * (3 * ndf + 1) * size**2


#: registered network name → (parameter count, activation count); the keys are those of
#: :data:`p2ptools.model.nets.GENERATORS` and :data:`~p2ptools.model.nets.DISCRIMINATORS`
GENERATOR_SIZES: dict[str, tuple[Callable[..., int], Callable[..., int]]] = {
    "unet": (unet_parameters, unet_activations), "resnet": (resnet_parameters, resnet_activations)}
DISCRIMINATOR_SIZES: dict[str, tuple[Callable[..., int], Callable[..., int]]] = {
    "patch": (patch_parameters, patch_activations), "pixel": (pixel_parameters, pixel_activations)}


def count(number: int) -> str:
    """``2.1e12`` (any size of integer: no float overflow)."""
    return f"{Decimal(number):.1e}".replace("e+", "e") if number >= 10_000 else str(number)


def size_of(n_bytes: int) -> str:
    """``7.8 TiB`` (any size of integer: no float overflow)."""
    value, units = Decimal(n_bytes), ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
    i = 0
    while value >= 1024 and i < len(units) - 1:
        value, i = value / 1024, i + 1
    return f"{value:.1f} {units[i]}" if value < 10**6 else f"{value:.1e} {units[i]}".replace("e+", "e")
