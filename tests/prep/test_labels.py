import json

import numpy as np
import pytest

from p2ptools.errors import PaletteError
from p2ptools.prep.labels import (
    check_values,
    colorize,
    decolorize,
    load_palette,
    palette_from_dict,
)


@pytest.mark.parametrize("name,values", [("landcover", [0, 1, 2, 3, 4]), ("inria", [0, 255]), ("binary01", [0, 1])])
def test_builtin_palettes_round_trip_exactly(name, values):
    pal = load_palette(name)
    labels = np.random.default_rng(1).choice(values, size=(40, 50)).astype(np.uint8)
    rgb = colorize(labels, pal)
    assert rgb.shape == (40, 50, 3) and rgb.dtype == np.uint8
    assert np.array_equal(decolorize(rgb, pal), labels)


def test_landcover_colours_are_distinct_and_readable():
    pal = load_palette("landcover")
    assert pal.names == ["background", "building", "woodland", "water", "road"]
    colors = pal.colors.astype(int)
    # every pair of class colours is far apart (readable, and robust to JPEG)
    d = np.sqrt(((colors[:, None] - colors[None]) ** 2).sum(-1))
    assert d[np.triu_indices(5, 1)].min() > 100


def test_nearest_decoding_survives_noise():
    pal = load_palette("landcover")
    labels = np.random.default_rng(2).integers(0, 5, (30, 30)).astype(np.uint8)
    noisy = colorize(labels, pal).astype(int) + np.random.default_rng(3).integers(-20, 21, (30, 30, 3))
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    with pytest.raises(PaletteError, match="outside palette"):
        decolorize(noisy, pal)
    assert np.array_equal(decolorize(noisy, pal, nearest=True), labels)


def test_unknown_values_are_listed():
    pal = load_palette("landcover")
    with pytest.raises(PaletteError, match=r"outside palette 'landcover' .*: 7, 9"):
        check_values(np.array([[0, 7], [9, 1]], dtype=np.uint8), pal)
    with pytest.raises(PaletteError, match="7"):
        colorize(np.array([[0, 7]], dtype=np.uint8), pal)


def test_palette_files_yaml_and_json(tmp_path):
    yml = tmp_path / "pal.yaml"
    yml.write_text("name: roofs\nbackground: 0\nclasses:\n"
                   "  - {value: 0, name: ground, color: '#000000'}\n"
                   "  - {value: 3, name: roof, color: [200, 10, 10]}\n")
    pal = load_palette(str(yml))
    assert pal.name == "roofs" and pal.values == [0, 3] and pal.classes[1].color == (200, 10, 10)
    js = tmp_path / "pal.json"
    js.write_text(json.dumps(pal.to_dict()))
    assert load_palette(js) == pal


@pytest.mark.parametrize(
    "doc,match",
    [
        ({"classes": [{"value": 0, "color": [0, 0, 0]}, {"value": 0, "color": [1, 1, 1]}]}, "repeats class values"),
        ({"classes": [{"value": 0, "color": "#zzzzzz"}]}, "colour"),
        ({"classes": [{"value": 0, "color": [0, 0, 300]}]}, "RGB 0..255"),
        ({"classes": [{"value": 1, "color": [0, 0, 0]}], "background": 5}, "background value 5"),
        ({"classes": "nope"}, "classes"),
        ({"classes": [{"name": "x"}]}, "value"),
    ],
)
def test_malformed_palettes(doc, match):
    with pytest.raises(PaletteError, match=match):
        palette_from_dict(doc, "test")


def test_missing_palette_names_the_builtins():
    with pytest.raises(PaletteError, match="inria"):
        load_palette("no-such-palette")


def test_uint16_palette_values():
    pal = palette_from_dict({"classes": [{"value": 0, "color": [0, 0, 0]}, {"value": 1000, "color": [9, 9, 9]}]})
    labels = np.array([[0, 1000]], dtype=np.uint16)
    out = decolorize(colorize(labels, pal), pal)
    assert out.dtype == np.uint16 and np.array_equal(out, labels)
