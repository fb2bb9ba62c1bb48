"""Model configurations are bounded and spelt exactly, in one place (ModelConfig.validate), whatever
they come from: a preset, --set, a checkpoint (tests/model/test_checkpoints.py, with unknown keys)
or an official train_opt.txt (tests/model/test_official.py)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.errors import ConfigError
from p2ptools.model.config import ModelConfig
from tests.conftest import small_pairs


@pytest.fixture
def no_fit(monkeypatch):
    """Training must be refused before it starts: reaching fit() fails the test (nothing is allocated)."""
    import p2ptools.training.train as train

    def fit(*args, **kwargs):
        raise AssertionError("fit() was reached: the configuration was not refused")

    monkeypatch.setattr(train, "fit", fit)


def _train(tmp_path, *sets):
    data = small_pairs(tmp_path / "ds", n_train=1, n_val=0)
    args = ["train", str(data), "--out", str(tmp_path / "run"), "--model", "tiny"]
    for s in sets:
        args += ["--set", s]
    return CliRunner().invoke(cli, args)


def _one_line_refusal(res) -> str:
    assert res.exit_code == 1 and (res.exception is None or isinstance(res.exception, SystemExit)), res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]


def test_a_huge_ngf_is_refused_with_what_it_would_need(tmp_path, no_fit):
    line = _one_line_refusal(_train(tmp_path, "model.ngf=100000"))
    assert "ngf=100000: the unet generator would have" in line and "parameters" in line and "TiB of weights" in line
    assert "activations for one 128-px image" in line and "at most ngf=" in line


def test_a_huge_image_size_is_refused_with_what_it_would_need(tmp_path, no_fit):
    line = _one_line_refusal(_train(tmp_path, f"model.image_size={2**22}", f"model.load_size={2**22}"))
    assert f"image_size={2**22}" in line and "PiB of activations" in line and "at most image_size=8192" in line


def test_a_number_too_large_for_a_float_is_one_line(tmp_path, no_fit):
    line = _one_line_refusal(_train(tmp_path, "model.ngf=1e400"))
    assert "ngf must be int" in line


@pytest.mark.parametrize("change, message", [
    ({"generator": "Unet"}, "generator must be one of unet, resnet, got 'Unet'"),
    ({"discriminator": "PatchGAN"}, "discriminator must be one of patch, pixel"),
    ({"g_block": "se"}, "g_block must be one of conv, se_res"),
    ({"ngf": "8"}, "ngf must be int, got '8'"),
    ({"image_size": 0}, "image_size must be positive"),
    ({"num_downs": 40}, "num_downs=40: .* at most num_downs=13"),
    ({"n_layers": 7}, r"n_layers=7: .*at least 3·2\*\*7 = 384 px.* at most n_layers=6"),
    ({"n_layers": 10**18}, r"n_layers=1\.0e18: .* at most n_layers=11"),  # refused without computing 3 << 10**18
    ({"generator": "resnet", "n_blocks": 10**6}, "at most n_blocks=64"),
    ({"in_channels": 10**6}, "at most in_channels=1024"),
    ({"ndf": 5000}, r"ndf=5000: the patch discriminator would have 1\.7e10 parameters, 62\.6 GiB of weights"),
    ({"ngf": 1024}, r"ngf=1024: .*51\.9 GiB of weights.*at most ngf=568 with these settings \(a generator of at most"),
    ({"load_size": 10**6}, "load_size=1000000: .* at most load_size=8192"),
    ({"generator": "resnet", "ngf": 10**400}, r"ngf=1\.0e400: the resnet generator would have 2\.8e803 parameters"),
])
def test_model_settings_out_of_bounds_or_vocabulary(change, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**change)


def test_the_largest_network_offered_is_accepted():
    with pytest.raises(ConfigError, match=r"at most ngf=\d+") as refused:
        ModelConfig(ngf=1024)
    offered = int(str(refused.value).split("at most ngf=")[1].split()[0])
    ModelConfig(ngf=offered)
    with pytest.raises(ConfigError, match=f"ngf={offered + 1}: "):
        ModelConfig(ngf=offered + 1)
    ModelConfig(generator="resnet", ngf=1024, image_size=8192, load_size=8192)  # the bounds themselves
