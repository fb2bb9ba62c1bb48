"""Networks: generators, discriminators, and a name → class registry.

``build_generator(cfg)`` and ``build_discriminator(cfg)`` turn a :class:`~p2ptools.model.config.ModelConfig`
into initialised modules; unknown names raise an error listing the valid ones.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from p2ptools.errors import ConfigError
from p2ptools.model.nets.blocks import ResidualSEBlock, SqueezeExcitation, init_weights
from p2ptools.model.nets.patchgan import PatchDiscriminator, PixelDiscriminator, receptive_field
from p2ptools.model.nets.resnet import ResnetGenerator
from p2ptools.model.nets.unet import UNetGenerator

GENERATORS: dict[str, type[nn.Module]] = {"unet": UNetGenerator, "resnet": ResnetGenerator}
DISCRIMINATORS: dict[str, type[nn.Module]] = {"patch": PatchDiscriminator, "pixel": PixelDiscriminator}


def _lookup(registry: dict[str, type[nn.Module]], name: str, what: str) -> type[nn.Module]:
    if name not in registry:
        raise ConfigError(f"unknown {what} {name!r}; choose one of {', '.join(sorted(registry))}")
    return registry[name]


def build_generator(name: str, kwargs: dict[str, Any], init_std: float = 0.02) -> nn.Module:
    """Instantiate and initialise a registered generator."""
    net = _lookup(GENERATORS, name, "generator")(**kwargs)
    init_weights(net, init_std)
    return net


def build_discriminator(name: str, kwargs: dict[str, Any], init_std: float = 0.02) -> nn.Module:
    """Instantiate and initialise a registered discriminator."""
    net = _lookup(DISCRIMINATORS, name, "discriminator")(**kwargs)
    init_weights(net, init_std)
    return net


__all__ = [
    "DISCRIMINATORS",
    "GENERATORS",
    "PatchDiscriminator",
    "PixelDiscriminator",
    "ResidualSEBlock",
    "ResnetGenerator",
    "SqueezeExcitation",
    "UNetGenerator",
    "build_discriminator",
    "build_generator",
    "init_weights",
    "receptive_field",
]
