import logging

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from p2ptools.errors import ConfigError, GridMismatchError, InputError, RasterReadError
from p2ptools.prep.raster import (
    ScenePair,
    choose_bands,
    discover_pairs,
    inspect_scene,
    open_raster,
    read_labels,
    read_photo,
    read_valid,
    to_uint8,
    window_geo,
)
from tests.conftest import TRANSFORM, blocks_mask, photo, shared_path, write_tif


def test_detects_inria_and_landcover(inria_root, landcover_root):
    d = discover_pairs(inria_root)
    assert d.layout == "inria" and [p.name for p in d.pairs] == ["city0", "city1"]
    assert all(p.mask is not None and p.mask.parent.name == "gt" for p in d.pairs)
    d = discover_pairs(landcover_root)
    assert d.layout == "landcover" and all(p.mask.parent.name == "masks" for p in d.pairs)


def test_inria_as_unpacked_with_train_folder(tmp_path):
    root = tmp_path / "AerialImageDataset"
    write_tif(root / "train" / "images" / "austin1.tif", photo(64, 64))
    write_tif(root / "train" / "gt" / "austin1.tif", blocks_mask(64, 64, [0, 255]))
    write_tif(root / "test" / "images" / "bellingham1.tif", photo(64, 64))
    d = discover_pairs(root)
    assert d.layout == "inria" and [p.name for p in d.pairs] == ["austin1"]


def test_generic_pairs_by_stem_with_suffix(tmp_path):
    write_tif(tmp_path / "im" / "a.tif", photo(32, 32))
    write_tif(tmp_path / "im" / "b.tif", photo(32, 32))
    write_tif(tmp_path / "lb" / "a_mask.tif", blocks_mask(32, 32, [0, 255]))
    write_tif(tmp_path / "lb" / "z_mask.tif", blocks_mask(32, 32, [0, 255]))
    d = discover_pairs(None, images=tmp_path / "im", masks=tmp_path / "lb", mask_suffix="_mask")
    assert d.layout == "generic"
    assert [(p.name, p.mask.name if p.mask else None) for p in d.pairs] == [("a", "a_mask.tif"), ("b", None)]
    assert [m.name for m in d.orphan_masks] == ["z_mask.tif"]


def test_discovery_errors(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        discover_pairs(tmp_path / "nope")
    with pytest.raises(InputError, match="cannot recognise the layout"):
        discover_pairs(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "gt").mkdir()
    with pytest.raises(InputError, match="no raster files"):
        discover_pairs(tmp_path)
    with pytest.raises(ConfigError, match="--masks"):
        discover_pairs(None, images=tmp_path / "images")


def test_band_choice_on_real_rasters():
    with open_raster(shared_path("rasterio", "RGBA.byte.tif")) as ds:
        assert choose_bands(ds, None) == (1, 2, 3)  # alpha left out
    with open_raster(shared_path("naip", "m_4709963_se_14_1_20200831.tif")) as ds:
        assert ds.count == 4 and choose_bands(ds, None) == (1, 2, 3)  # RGBN keeps RGB
        assert choose_bands(ds, (4, 1, 2)) == (4, 1, 2)
        with pytest.raises(ConfigError, match="does not exist"):
            choose_bands(ds, (5, 1, 2))
        with pytest.raises(ConfigError, match="1 or 3"):
            choose_bands(ds, (1, 2))
    with open_raster(shared_path("rasterio", "shade.tif")) as ds:
        assert choose_bands(ds, None) == (1,)


def test_unreadable_files_fail_with_file_name(tmp_path):
    path = shared_path("rasterio", "corrupt.tif")
    with open_raster(path) as ds:  # the real corrupt file opens...
        with pytest.raises(rasterio.errors.RasterioError):
            ds.read()  # ...but reading fails (the tile tests check that error's message)
    bogus = tmp_path / "not-a-raster.tif"
    bogus.write_text("hello")
    with pytest.raises(RasterReadError, match="not-a-raster.tif: cannot open as a raster"):
        open_raster(bogus)


def test_real_spacenet_mask_without_georeference_is_accepted(caplog):
    pair = ScenePair("atl", shared_path("spacenet", "sample_geotiff.tif"),
                     shared_path("spacenet", "sample_fp_mask_from_geojson.tif"))
    with caplog.at_level(logging.WARNING):
        info = inspect_scene(pair)
    assert "no georeference" in caplog.text
    assert info.crs == "EPSG:32616" and (info.height, info.width) == (900, 900) and info.bands == (1,)
    lo, hi = info.stretch[0]
    assert 54 <= lo < hi <= 6615  # percentiles of the uint16 pan values


def _pair(tmp_path, img_kw=None, mask_kw=None, mask_data=None, h=64, w=64):
    img = write_tif(tmp_path / "img.tif", photo(h, w), **(img_kw or {}))
    m = mask_data if mask_data is not None else blocks_mask(h, w, [0, 255], block=16)
    msk = write_tif(tmp_path / "msk.tif", m, **(mask_kw or {}))
    return ScenePair("s", img, msk)


def test_grid_mismatches_are_errors(tmp_path):
    with pytest.raises(GridMismatchError, match="mask is 64×32 but photo img.tif is 64×64"):
        inspect_scene(_pair(tmp_path, mask_data=blocks_mask(32, 64, [0, 255])))
    with pytest.raises(GridMismatchError, match="geotransform"):
        inspect_scene(_pair(tmp_path, mask_kw={"transform": from_origin(500001.0, 4000000.0, 0.5, 0.5)}))
    with pytest.raises(GridMismatchError, match="CRS"):
        inspect_scene(_pair(tmp_path, mask_kw={"crs": "EPSG:32632"}))
    with pytest.raises(InputError, match="3 bands"):
        inspect_scene(_pair(tmp_path, mask_data=photo(64, 64)))
    with pytest.raises(InputError, match="float32"):
        inspect_scene(_pair(tmp_path, mask_data=np.zeros((64, 64), np.float32)))
    with pytest.raises(InputError, match="no mask"):
        inspect_scene(ScenePair("s", tmp_path / "img.tif", None))


def test_uint16_stretch_is_per_scene_and_ignores_nodata(tmp_path):
    data = np.full((1, 100, 100), 1000, np.uint16)
    data[0, :, 50:] = 3000
    data[0, :10] = 0  # nodata collar
    pair = ScenePair("s", write_tif(tmp_path / "p.tif", data, nodata=0),
                     write_tif(tmp_path / "m.tif", np.zeros((100, 100), np.uint8)))
    info = inspect_scene(pair, percentiles=(0, 100))
    assert info.stretch == ((1000.0, 3000.0),) and info.has_nodata
    with open_raster(pair.image) as ds:
        left = read_photo(ds, info, 20, 0, 32, 32)
        right = read_photo(ds, info, 0, 60, 32, 32)
        valid = read_valid(ds, info, 0, 60, 32, 32)
    assert left.shape == (32, 32, 3) and (left == 0).all()  # the scene minimum → 0
    assert (right[10:] == 255).all()  # the scene maximum → 255
    assert not valid[:10].any() and valid[10:].all()


def test_to_uint8_formula():
    data = np.array([[[0, 100, 150, 200, 400]]], dtype=np.uint16)
    assert to_uint8(data, ((100.0, 200.0),)).tolist() == [[[0, 0, 128, 255, 255]]]


def test_reads_pad_outside_the_scene(tmp_path):
    pair = _pair(tmp_path, h=40, w=50)
    info = inspect_scene(pair)
    with open_raster(pair.image) as ds, open_raster(pair.mask) as ms:
        rgb = read_photo(ds, info, 32, 32, 16, 32)
        valid = read_valid(ds, info, 32, 32, 16, 32)
        labels = read_labels(ms, info, 32, 32, 16, 32, fill=7)
    assert valid[:8, :18].all() and not valid[8:].any() and not valid[:, 18:].any()
    assert (rgb[8:] == 0).all() and (labels[8:] == 7).all() and (labels[:, 18:] == 7).all()


def test_window_geo_matches_rasterio(tmp_path):
    pair = _pair(tmp_path)
    info = inspect_scene(pair)
    transform, bounds = window_geo(info, 16, 32, 16)
    assert transform == (0.5, 0.0, 500016.0, 0.0, -0.5, 3999992.0)
    assert bounds == (500016.0, 3999984.0, 500024.0, 3999992.0)
    assert TRANSFORM.c == 500000.0
