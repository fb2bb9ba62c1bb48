"""The data contract: round trip, fallbacks for runs without one, and the checks predict applies."""

from __future__ import annotations

import numpy as np
import pytest

from p2ptools.contract import DataContract, PhotoSpec, check_label_image, check_scene_input, from_checkpoint, generic
from p2ptools.errors import InputError

PALETTE = {"name": "inria", "background": 0, "classes": [{"value": 0, "name": "background", "color": [0, 0, 0]},
                                                          {"value": 255, "name": "building", "color": [255, 255, 255]}]}


def test_round_trip_and_roles():
    c = DataContract("tiles", "label", "photo", 256, PALETTE, PhotoSpec((3, 2, 1), 3, ("uint16",), (1.0, 99.0)),
                     {"s": {"bands": [3, 2, 1], "dtype": "uint16", "stretch": [[1, 2]] * 3}})
    back = DataContract.from_dict(c.to_dict())
    assert back == c
    assert c.roles("AtoB") == ("label", "photo") and c.roles("BtoA") == ("photo", "label")


def test_runs_without_a_contract_fall_back():
    assert from_checkpoint(None) == generic(None) == DataContract("folder", "image", "image")
    old_pair = {"kind": "pairs", "A": "/data/photos", "B": "/data/maps"}  # older pair outputs stored folder paths
    assert generic(old_pair).a == "image" and generic(old_pair).b == "image"
    old_tiles = {"kind": "tiles", "A": "label", "B": "photo", "palette": PALETTE}
    assert from_checkpoint(old_tiles).roles("AtoB") == ("label", "photo") and from_checkpoint(old_tiles).photo is None


def test_scene_checks():
    c = DataContract("tiles", "label", "photo", 256, PALETTE, PhotoSpec(None, 3, ("uint8",)))
    assert check_scene_input(c, "AtoB", "l.tif", 1, "uint8", "m.pt") == "labels"
    assert check_scene_input(c, "AtoB", "l.tif", 1, "uint16", "m.pt") == "labels"  # many classes
    with pytest.raises(InputError, match="l.tif: 1 band\\(s\\) of float32, not a label raster"):
        check_scene_input(c, "AtoB", "l.tif", 1, "float32", "m.pt")
    assert check_scene_input(c, "BtoA", "p.tif", 4, "uint8", "m.pt") == "rgb"  # RGB of RGBN
    with pytest.raises(InputError, match="trained on 3-band \\(RGB\\) photos"):
        check_scene_input(c, "BtoA", "pan.tif", 1, "uint8", "m.pt")
    with pytest.raises(InputError, match="uint16 photo; the model m.pt was trained on uint8 photos"):
        check_scene_input(c, "BtoA", "p.tif", 3, "uint16", "m.pt")


def test_label_image_check_forgives_jpeg_noise_but_not_photos():
    rng = np.random.default_rng(0)
    labels = np.where(rng.random((64, 64, 1)) > 0.5, 255, 0).astype(np.uint8).repeat(3, axis=2)
    noisy = np.clip(labels.astype(int) + rng.integers(-12, 13, labels.shape), 0, 255).astype(np.uint8)
    check_label_image(noisy, PALETTE, "l.jpg", "m.pt")
    photo = rng.integers(40, 200, (64, 64, 3)).astype(np.uint8)
    with pytest.raises(InputError, match="p.png: not a label map of palette 'inria'"):
        check_label_image(photo, PALETTE, "p.png", "m.pt")


def test_mixed_band_counts_accept_rgb_and_gray_scenes():
    from p2ptools.contract import DataContract, PhotoSpec, check_scene_input

    photo_spec = PhotoSpec(bands=None, channels=0, dtypes=("uint8",))
    contract = DataContract(kind="tiles", a="label", b="photo", photo=photo_spec)
    assert check_scene_input(contract, "BtoA", "rgb.tif", 3, "uint8", "m.pt") == "rgb"
    assert check_scene_input(contract, "BtoA", "gray.tif", 1, "uint8", "m.pt") == "rgb"


def test_a_gray_photo_without_a_contract_is_told_input_kind_rgb():
    from p2ptools.contract import generic
    from p2ptools.errors import ConfigError
    from p2ptools.inference.scene_plan import scene_palette

    with pytest.raises(ConfigError, match="grayscale photo, pass --input-kind rgb"):
        scene_palette(generic(None), None)
