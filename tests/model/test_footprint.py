"""The analytic sizes that ModelConfig.validate checks equal those of the networks as built."""

from __future__ import annotations

import itertools

import pytest
import torch

from p2ptools.model.nets import DISCRIMINATORS, GENERATORS, build_discriminator, build_generator
from p2ptools.model.nets.blocks import NORMS
from p2ptools.model.nets.footprint import DISCRIMINATOR_SIZES, GENERATOR_SIZES, count, size_of
from p2ptools.model.nets.unet import BLOCKS


def _params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_every_registered_network_has_its_sizes():
    assert set(GENERATOR_SIZES) == set(GENERATORS) and set(DISCRIMINATOR_SIZES) == set(DISCRIMINATORS)


@pytest.mark.parametrize("norm", NORMS)
def test_generator_parameters_are_exact(norm):
    for block, num_downs, ngf in itertools.product(BLOCKS, (2, 5), (3, 8)):
        kw = {"in_channels": 2, "out_channels": 5, "num_downs": num_downs, "ngf": ngf, "norm": norm, "block": block}
        assert GENERATOR_SIZES["unet"][0](**kw) == _params(build_generator("unet", kw)), kw
    for n_blocks, ngf in itertools.product((0, 2), (3, 8)):
        kw = {"in_channels": 4, "out_channels": 1, "ngf": ngf, "n_blocks": n_blocks, "norm": norm, "dropout": 0.5}
        assert GENERATOR_SIZES["resnet"][0](**kw) == _params(build_generator("resnet", kw)), kw


@pytest.mark.parametrize("norm", NORMS)
def test_discriminator_parameters_are_exact(norm):
    for se_res, n_layers, ndf in itertools.product((False, True), (1, 3, 5), (3, 8)):
        kw = {"in_channels": 7, "ndf": ndf, "n_layers": n_layers, "norm": norm, "se_res": se_res}
        assert DISCRIMINATOR_SIZES["patch"][0](**kw) == _params(build_discriminator("patch", kw)), kw
    kw = {"in_channels": 7, "ndf": 8, "norm": norm}
    assert DISCRIMINATOR_SIZES["pixel"][0](**kw) == _params(build_discriminator("pixel", kw))


def test_the_paper_networks_and_readable_sizes():
    assert GENERATOR_SIZES["unet"][0]() == 54_413_955 + 64 + 512  # tests/model/test_nets.py::test_paper_sizes
    assert DISCRIMINATOR_SIZES["patch"][0]() == 2_768_705
    assert count(2_100_000_000_000) == "2.1e12" and count(9999) == "9999"
    assert size_of(4 * 2**40 * 2) == "8.0 TiB" and size_of(10**400).endswith("YiB")  # no float overflow
