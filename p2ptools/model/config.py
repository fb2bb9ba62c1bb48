"""The networks' configuration, stored in every checkpoint so that a checkpoint alone rebuilds its model,
and validated in one place (:meth:`ModelConfig.validate`) before anything is built: the registries'
names, upper bounds (filters, image size, depth, parameters) and depth against size. A refusal says
what the network would need in memory (counted without building it: :mod:`p2ptools.model.nets.footprint`).

It lives on the model floor because it checks names against the networks' registries; the options
of the other commands, and the vocabularies every ``click.Choice`` reads, are in :mod:`p2ptools.config`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from p2ptools.config import NORMS, TrainConfig, check_types
from p2ptools.errors import ConfigError

log = logging.getLogger(__name__)

#: Upper bounds of a model configuration (:meth:`ModelConfig.validate`). Filters: 16× the paper's 64.
MAX_FILTERS = 1024
#: Bands of an image: more than multispectral sensors have (hyperspectral ones have ~200–400).
MAX_CHANNELS = 1024
#: Training crop and load size: one 8192-px image already takes ~50 GiB of activations in the paper's
#: U-Net (~400 GiB in the ResNet generator); beyond it no GPU holds one image.
MAX_IMAGE_SIZE = 8192
#: Residual blocks of the ResNet generator (the official ones have 6 or 9).
MAX_BLOCKS = 64
#: Parameters of one network: 16 GiB of float32 weights, 64 GiB with the gradients and Adam's two
#: moments that training adds: the most one large GPU holds (the paper's U-Net has 5.4e7).
MAX_PARAMETERS = 4 * 2**30


@dataclass
class ModelConfig:
    """The networks of a pix2pix model (stored in every checkpoint to rebuild it).

    Args:
        name: the preset's name.
        generator: registered generator name: ``unet`` (the paper) or ``resnet`` (Johnson et al.,
            the official ``resnet_9blocks``/``resnet_6blocks``).
        in_channels: channels of A.
        out_channels: channels of B.
        num_downs: U-Net downsamplings (8 for 256-px images, 9 for 512).
        ngf: generator filters in the first layer.
        g_norm: generator normalisation: ``batch`` (paper), ``instance``, ``none``.
        dropout: dropout in the innermost decoder blocks.
        g_block: ``conv`` (paper) or ``se_res`` (residual squeeze-and-excitation blocks).
        n_blocks: residual blocks of the ``resnet`` generator (9 for 256 px, 6 for 128).
        discriminator: registered discriminator name: ``patch`` or ``pixel`` (1×1).
        ndf: discriminator filters in the first layer.
        n_layers: PatchGAN stride-2 layers: 1 → 16×16 patches, 3 → 70×70, 5 → 286×286.
        d_norm: discriminator normalisation.
        d_se_res: residual SE blocks in the discriminator.
        image_size: training crop (and inference) size.
        load_size: images are resized to this before the random crop (286 for 256, 572 for 512).
    """

    name: str = "pix2pix"
    generator: str = "unet"
    in_channels: int = 3
    out_channels: int = 3
    num_downs: int = 8
    ngf: int = 64
    g_norm: str = "batch"
    dropout: float = 0.5
    g_block: str = "conv"
    n_blocks: int = 9
    discriminator: str = "patch"
    ndf: int = 64
    n_layers: int = 3
    d_norm: str = "batch"
    d_se_res: bool = False
    image_size: int = 256
    load_size: int = 286

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field: its type, its vocabulary (the registries of :mod:`p2ptools.model.nets`),
        its range, the depths against the image size, and the size of both networks.

        Every model configuration passes here before a network is built: presets, ``--set``,
        ``--config``, recipes, checkpoints (:func:`~p2ptools.model.checkpoints.load_checkpoint`) and
        official ``train_opt.txt`` files. The sizes are counted from the settings
        (:mod:`p2ptools.model.nets.footprint`), so a network too big to allocate is refused with
        what it would need, not attempted.

        Raises:
            ConfigError: naming the first invalid field, with what to do.
        """
        check_types(self)
        self._check_names()
        self._check_ranges()
        self._check_depths()
        self._check_network("generator", "ngf")
        self._check_network("discriminator", "ndf")

    def _check_names(self) -> None:
        from p2ptools.model.nets import DISCRIMINATORS, GENERATORS
        from p2ptools.model.nets.unet import BLOCKS

        names = {"generator": tuple(GENERATORS), "discriminator": tuple(DISCRIMINATORS), "g_norm": NORMS,
                 "d_norm": NORMS, "g_block": BLOCKS}
        for name, valid in names.items():
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}")

    def _check_ranges(self) -> None:
        """Lower bounds, and the upper bounds that keep the size counts below cheap."""
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("ngf", "ndf", "in_channels", "out_channels", "n_layers", "image_size", "load_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_blocks < 0:
            raise ConfigError(f"n_blocks must not be negative, got {self.n_blocks}")
        if self.num_downs < 2:
            raise ConfigError(f"num_downs must be at least 2, got {self.num_downs}")
        for name in ("in_channels", "out_channels"):
            if getattr(self, name) > MAX_CHANNELS:
                raise ConfigError(f"{name}={_shown(getattr(self, name))}: at most {name}={MAX_CHANNELS} (image bands)")
        most = MAX_IMAGE_SIZE.bit_length() - 1
        if self.generator == "unet" and self.num_downs > most:
            raise ConfigError(f"num_downs={_shown(self.num_downs)}: a U-Net of that many downsamplings needs images "
                              f"of 2**num_downs px or more; at most num_downs={most} "
                              f"({MAX_IMAGE_SIZE}-px images)")
        most = (MAX_IMAGE_SIZE // 3).bit_length() - 1  # 3·2**n_layers px at least (see _check_depths)
        if self.discriminator == "patch" and self.n_layers > most:
            raise ConfigError(f"n_layers={_shown(self.n_layers)}: a PatchGAN of that many stride-2 layers needs images "
                              f"of 3·2**n_layers px or more; at most n_layers={most} ({MAX_IMAGE_SIZE}-px images)")
        if self.generator == "resnet" and self.n_blocks > MAX_BLOCKS:
            raise ConfigError(f"n_blocks={_shown(self.n_blocks)}: at most n_blocks={MAX_BLOCKS} (the official ResNet "
                              "generators have 6 or 9)")
        if self.image_size > MAX_IMAGE_SIZE:
            raise ConfigError(f"image_size={_shown(self.image_size)}: {self._footprint('generator', self.image_size)}"
                              f"; at most image_size={MAX_IMAGE_SIZE}")
        if self.load_size > MAX_IMAGE_SIZE:
            raise ConfigError(f"load_size={_shown(self.load_size)}: images are resized to it before the random crop "
                              f"(one float32 RGB image: {_image_bytes(self.load_size)}); at most "
                              f"load_size={MAX_IMAGE_SIZE}")

    def _check_depths(self) -> None:
        """The networks' depths against the image size."""
        if self.generator == "resnet":
            if self.image_size % 4:
                raise ConfigError(f"image_size {self.image_size} is not a multiple of 4 (the ResNet generator "
                                  "downsamples twice)")
        elif self.image_size % 2**self.num_downs:
            raise ConfigError(
                f"image_size {self.image_size} is not a multiple of 2**num_downs = {2**self.num_downs}; "
                f"use num_downs={(self.image_size & -self.image_size).bit_length() - 1} or fewer for "
                f"{self.image_size}-px images (8 for 256, 9 for 512), or another image_size"
            )
        if self.discriminator == "patch" and self.image_size < 3 << self.n_layers:
            raise ConfigError(f"n_layers={self.n_layers}: a PatchGAN of {self.n_layers} stride-2 layers needs images "
                              f"of at least 3·2**{self.n_layers} = {3 << self.n_layers} px (no patch is left below); "
                              f"image_size is {self.image_size}: at most n_layers="
                              f"{max(1, (self.image_size // 3).bit_length() - 1)} for it")
        if self.load_size < self.image_size:
            raise ConfigError(f"load_size {self.load_size} is smaller than image_size {self.image_size}")

    def _sizes(self, kind: str, size: int, **change: int) -> tuple[int, int]:
        """Parameters and activation values (one ``size``-px image) of the generator or discriminator."""
        from p2ptools.model.nets.footprint import DISCRIMINATOR_SIZES, GENERATOR_SIZES

        if kind == "generator":
            params, acts = GENERATOR_SIZES[self.generator]
            kwargs = {**self.generator_kwargs(), **change}
        else:
            params, acts = DISCRIMINATOR_SIZES[self.discriminator]
            kwargs = {**self.discriminator_kwargs(), **change}
        return params(**kwargs), acts(size, **kwargs)

    def _footprint(self, kind: str, size: int) -> str:
        """``the unet generator would have 1.3e14 parameters, 483.1 TiB of weights and …``."""
        from p2ptools.model.nets.footprint import FLOAT_BYTES, count, size_of

        params, acts = self._sizes(kind, size)
        name = self.generator if kind == "generator" else self.discriminator
        return (f"the {name} {kind} would have {count(params)} parameters, {size_of(FLOAT_BYTES * params)} of "
                f"weights and about {size_of(FLOAT_BYTES * acts)} of activations for one {size}-px image")

    def _check_network(self, kind: str, field: str) -> None:
        """Refuse ``ngf``/``ndf`` above :data:`MAX_FILTERS` or making a network of more than
        :data:`MAX_PARAMETERS` parameters, saying what it would need and the largest that fits."""
        value = getattr(self, field)
        if value <= MAX_FILTERS and self._sizes(kind, self.image_size)[0] <= MAX_PARAMETERS:
            return
        lo, hi = 0, MAX_FILTERS  # the largest value in 1…MAX_FILTERS that fits (the count grows with it)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self._sizes(kind, self.image_size, **{field: mid})[0] <= MAX_PARAMETERS \
                else (lo, mid - 1)
        from p2ptools.model.nets.footprint import FLOAT_BYTES, count, size_of

        cap = f" (a {kind} of at most {count(MAX_PARAMETERS)} parameters, {size_of(FLOAT_BYTES * MAX_PARAMETERS)})"
        advice = f"at most {field}={lo} with these settings" + (cap if lo < MAX_FILTERS else "") if lo else \
            f"no {field} fits: this {kind} has more than {count(MAX_PARAMETERS)} parameters at {field}=1"
        raise ConfigError(f"{field}={_shown(value)}: {self._footprint(kind, self.image_size)}; {advice}")

    def generator_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the generator (each generator takes its own)."""
        common = {"in_channels": self.in_channels, "out_channels": self.out_channels, "ngf": self.ngf,
                  "norm": self.g_norm, "dropout": self.dropout}
        if self.generator == "resnet":
            return {**common, "n_blocks": self.n_blocks}
        return {**common, "num_downs": self.num_downs, "block": self.g_block}

    def discriminator_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the discriminator (it sees A and B concatenated)."""
        kw: dict[str, Any] = {"in_channels": self.in_channels + self.out_channels, "ndf": self.ndf,
                              "norm": self.d_norm}
        if self.discriminator == "patch":
            kw.update(n_layers=self.n_layers, se_res=self.d_se_res)
        return kw


def _shown(value: int) -> str:
    """An integer for a message: as it is, or ``1.0e400`` when it is too long to read."""
    from p2ptools.model.nets.footprint import count

    return str(value) if value < 10**12 else count(value)


def _image_bytes(size: int) -> str:
    """Bytes of one ``size × size`` float32 RGB image, readable."""
    from p2ptools.model.nets.footprint import FLOAT_BYTES, size_of

    return size_of(FLOAT_BYTES * 3 * size * size)


def check_model_and_training(mcfg: ModelConfig, tcfg: TrainConfig) -> None:
    """Cross-field checks between the networks and the training options.

    Raises:
        ConfigError: in one line, saying what to change.
    """
    if tcfg.gan_loss == "wgangp" and mcfg.d_norm == "batch":
        raise ConfigError("gan_loss wgangp penalises each sample's gradient, which a BatchNorm critic mixes across "
                          "the batch: use --set model.d_norm=instance (or none) with wgangp")
    if tcfg.gan_loss == "wgan" and tcfg.optimizer == "adam" and tcfg.n_critic == 1:
        log.warning("gan_loss wgan with Adam and one critic step per generator step is not the WGAN recipe "
                    "(RMSProp, n_critic 5): see the wgan preset")
