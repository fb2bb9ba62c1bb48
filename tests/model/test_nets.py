import pytest
import torch

from p2ptools.config import PRESET_NAMES, load_preset
from p2ptools.errors import ConfigError
from p2ptools.model.config import ModelConfig
from p2ptools.model.nets import (
    PatchDiscriminator,
    PixelDiscriminator,
    UNetGenerator,
    build_discriminator,
    build_generator,
    receptive_field,
)


def _official_unet_params(num_downs: int, ngf: int, c: int = 3) -> int:
    """Parameters of the official unet_256 with BatchNorm (UnetSkipConnectionBlock: 4×4 convs without
    bias, except the outermost transposed conv), counted block by block."""
    def block(outer: int, inner: int, sub: int, input_nc: int | None = None, where: str = "") -> int:
        n = (input_nc or outer) * inner * 16  # down conv
        if where == "outermost":
            return n + inner * 2 * outer * 16 + outer + sub  # up conv with bias
        if where == "innermost":
            return n + inner * outer * 16 + 2 * outer  # up conv + its BatchNorm
        return n + 2 * inner + inner * 2 * outer * 16 + 2 * outer + sub
    n = block(ngf * 8, ngf * 8, 0, where="innermost")
    for _ in range(num_downs - 5):
        n = block(ngf * 8, ngf * 8, n)
    for mult in (4, 2, 1):
        n = block(ngf * mult, ngf * mult * 2, n)
    return block(c, ngf, n, input_nc=c, where="outermost")


def test_paper_sizes():
    """unet_256 = the official count + the biases of the two down convs that no BatchNorm follows
    (outermost 64, innermost 512: p2ptools gives them a bias); the 70×70 PatchGAN equals the official."""
    g = UNetGenerator(num_downs=8, ngf=64)
    d = PatchDiscriminator(n_layers=3, ndf=64)
    assert _official_unet_params(8, 64) == 54_413_955
    assert sum(p.numel() for p in g.parameters()) == 54_413_955 + 64 + 512
    assert sum(p.numel() for p in UNetGenerator(num_downs=9, ngf=64).parameters()) == \
        _official_unet_params(9, 64) + 64 + 512
    assert sum(p.numel() for p in d.parameters()) == 2_768_705


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_preset_builds_and_keeps_shapes(preset):
    model, _ = load_preset(preset)
    cfg = ModelConfig(**{**model, "ngf": 4, "ndf": 4})
    g = build_generator(cfg.generator, cfg.generator_kwargs())
    d = build_discriminator(cfg.discriminator, cfg.discriminator_kwargs())
    x = torch.randn(1, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        y = g(x)
        p = d(torch.cat([x, y], 1))
    assert y.shape == x.shape and y.abs().max() <= 1
    assert p.shape[:2] == (1, 1)


def test_unet_structure():
    g = UNetGenerator(num_downs=8, ngf=8)
    drops = [k for k, blk in enumerate(g.up) if any(isinstance(m, torch.nn.Dropout) for m in blk)]
    assert drops == [0, 1, 2]  # the three innermost decoder blocks
    first = g.down[0]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in first)  # no norm on the first layer
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in g.down[-1])  # nor on the innermost


def test_unet_input_size_error_is_actionable():
    g = UNetGenerator(num_downs=8, ngf=4)
    with pytest.raises(ConfigError, match="multiples of 256; resize or crop to 256×256"):
        g(torch.randn(1, 3, 300, 256))


def _empirical_rf(d: torch.nn.Module, size: int) -> int:
    """Width of the input region that influences one central output logit."""
    x = torch.randn(1, 6, size, size, requires_grad=True)
    out = d(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    cols = (x.grad.abs().sum(dim=(0, 1, 2)) > 0).nonzero()
    return int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("n_layers,rf,size", [(1, 16, 64), (3, 70, 160), (5, 286, 320)])
def test_patchgan_receptive_fields(n_layers, rf, size):
    d = PatchDiscriminator(ndf=4, n_layers=n_layers, norm="none")
    assert receptive_field(d) == rf
    # padding clips the field at the borders, so look at a central output of a large enough input
    assert _empirical_rf(d, size) == rf


def test_pixelgan_sees_one_pixel():
    d = PixelDiscriminator(ndf=4, norm="none")
    assert receptive_field(d) == 1 and _empirical_rf(d, 16) == 1


def test_registry_errors_list_names():
    with pytest.raises(ConfigError, match="choose one of resnet, unet"):
        build_generator("resnet_9blocks", {})
    with pytest.raises(ConfigError, match="patch, pixel"):
        build_discriminator("global", {})


def test_weight_init_is_normal_002():
    g = build_generator("unet", {"num_downs": 6, "ngf": 16})
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002


def test_se_res_variant_differs_and_runs():
    plain = UNetGenerator(num_downs=5, ngf=8)
    se = UNetGenerator(num_downs=5, ngf=8, block="se_res")
    assert sum(p.numel() for p in se.parameters()) > sum(p.numel() for p in plain.parameters())
    assert se(torch.randn(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    d = PatchDiscriminator(ndf=8, se_res=True)
    assert d(torch.randn(1, 6, 64, 64)).shape == (1, 1, 6, 6)


def test_model_config_errors():
    with pytest.raises(ConfigError, match="use num_downs=8 or fewer for 768-px"):
        ModelConfig(image_size=768, num_downs=9, load_size=800)
    with pytest.raises(ConfigError, match="load_size"):
        ModelConfig(load_size=200)
    with pytest.raises(ConfigError, match="g_norm"):
        ModelConfig(g_norm="group")


def test_batchnorm_folding_keeps_outputs():
    torch.manual_seed(0)
    g = UNetGenerator(num_downs=5, ngf=8).eval()
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = g(x)
        after = g.fold_batchnorm()(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    assert torch.allclose(before, after, atol=1e-5)


def _ramp(size: int = 64) -> torch.Tensor:
    return torch.linspace(-1, 1, size * size).reshape(1, 1, size, size).expand(1, 3, size, size).contiguous()


@pytest.mark.parametrize("name", ["unet", "resnet"])
def test_output_layer_runs_in_fp32_under_bf16_autocast(name):
    """Under bf16 autocast a bf16 tanh has 128 levels per binade: at most 512 in 0.25 ≤ |y| < 1. The output
    layer in fp32 keeps the levels a 16-bit or float target needs."""
    torch.manual_seed(0)
    kwargs = {"ngf": 8, "num_downs": 5} if name == "unet" else {"ngf": 8, "n_blocks": 1}
    G = build_generator(name, kwargs).eval()
    with torch.no_grad():
        if name == "unet":  # outputs over the whole of (-1, 1), not only near 0 (instance norm does it for resnet)
            G.up[-1][1].weight.mul_(100)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = G(_ramp())
        y32 = G(_ramp())
    assert y.dtype == torch.float32
    wide = y[y.abs() >= 0.25]
    assert wide.numel() > 2000 and wide.unique().numel() > 512
    assert (y - y32).abs().mean() < 0.01  # the rest of the network still ran in bf16: close, not equal


def test_fp32_output_keeps_keys_and_the_fp32_graph():
    from p2ptools.model.nets.blocks import FP32Output

    torch.manual_seed(0)
    G = UNetGenerator(num_downs=5, ngf=8).eval()
    assert isinstance(G.up[-1], FP32Output) and {"up.4.1.weight", "up.4.1.bias"} <= set(G.state_dict())
    plain = UNetGenerator(num_downs=5, ngf=8).eval()
    plain.up[-1] = torch.nn.Sequential(*G.up[-1])
    assert list(plain.state_dict()) == list(G.state_dict())
    plain.load_state_dict(G.state_dict())
    with torch.no_grad():
        assert torch.equal(plain(_ramp(32)), G(_ramp(32)))  # no autocast: exactly the plain Sequential


def test_fp32_output_runs_where_torch_has_no_autocast_for_the_device(monkeypatch):
    """torch before 2.5 raises for ``is_autocast_enabled('mps')``: the output layer then runs as it is."""
    G = build_generator("unet", {"ngf": 8, "num_downs": 5})
    want = G(torch.rand(1, 3, 32, 32))

    def raises(device_type=None):
        raise RuntimeError("unknown device type for autocast")

    monkeypatch.setattr(torch, "is_autocast_enabled", raises)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    assert G(x).shape == want.shape and G(x).dtype == torch.float32
