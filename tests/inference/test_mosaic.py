"""Whole-scene prediction: georeference, odd sizes, nodata, seamless blending, bounded windows."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.config import TrainConfig
from p2ptools.inference.mosaic import predict_scene
from p2ptools.inference.options import PredictOptions
from p2ptools.inference.scene_plan import hann_window
from p2ptools.model.config import ModelConfig
from p2ptools.training.train import fit
from tests.conftest import ATLANTA, TRANSFORM, blocks_mask, linked_scene, photo, write_tif


def _train(root, tiles, direction: str):
    out = root / f"run_{direction}"
    fit(ModelConfig(ngf=8, ndf=8, num_downs=5, image_size=32, load_size=36),
        TrainConfig(dataset=tiles, out=out, epochs=1, workers=0, max_steps=20, batch_size=4, direction=direction),
        progress=False)
    return out


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """Generated scenes (RGB uint8 photos, 0/255 masks) tiled at 64 px: label | photo pairs."""
    root = tmp_path_factory.mktemp("mosaic")
    for i in range(2):
        write_tif(root / "src" / "images" / f"s{i}.tif", photo(192, 192, seed=i))
        write_tif(root / "src" / "gt" / f"s{i}.tif", blocks_mask(192, 192, [0, 255], block=16, seed=i))
    res = CliRunner().invoke(cli, ["tile", str(root / "src"), str(root / "tiles"), "--size", "64"])
    assert res.exit_code == 0, res.output
    return root / "tiles"


@pytest.fixture(scope="module")
def run(tiles):
    """A tiny label → photo model (32 px) trained a few steps on generated tiles."""
    return _train(tiles.parent, tiles, "AtoB")


@pytest.fixture(scope="module")
def photo_run(tiles):
    """The same data the other way: photo → label."""
    return _train(tiles.parent, tiles, "BtoA")


def test_hann_weights():
    w = hann_window(8)
    assert w.shape == (8, 8) and w.min() > 0 and np.allclose(w, w.T) and w[3:5, 3:5].min() == w.max()


@pytest.mark.parametrize("h,w", [(100, 77), (33, 250), (20, 20)])
def test_output_matches_input_grid_for_any_size(run, tmp_path, h, w):
    scene = write_tif(tmp_path / "labels.tif", blocks_mask(h, w, [0, 255], block=8))
    out = tmp_path / "out.tif"
    rep = predict_scene(run, scene, out, PredictOptions(progress=False))
    assert rep.input_kind == "labels"
    with rasterio.open(scene) as a, rasterio.open(out) as b:
        assert (b.width, b.height, b.count, b.dtypes[0]) == (a.width, a.height, 3, "uint8")
        assert b.crs == a.crs and b.transform == a.transform == TRANSFORM
        assert b.profile["tiled"] and b.profile["compress"] == "deflate"
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_nodata_stays_nodata(photo_run, tmp_path):
    img = photo(96, 96)
    img[:, :40, :30] = 0
    scene = write_tif(tmp_path / "rgb.tif", img, nodata=0)
    out = tmp_path / "out.tif"
    predict_scene(photo_run, scene, out, PredictOptions(rgb=True, progress=False))
    with rasterio.open(out) as b:
        mask = b.dataset_mask()
        data = b.read()
    assert (mask[:40, :30] == 0).all() and (mask[40:] == 255).all() and (mask[:, 30:] == 255).all()
    assert (data[:, :40, :30] == 0).all()


def _jump(img: np.ndarray, cols: list[int]) -> float:
    """Mean jump of the column-mean profile at ``cols``: |m[c] − median of same-parity neighbours c±2, c±4|
    (same parity, so a 2-px checkerboard of transposed convolutions does not count)."""
    m = img.astype(np.float64).mean(axis=(0, 1))
    return float(np.mean([abs(m[c] - np.median(m[[c - 4, c - 2, c + 2, c + 4]])) for c in cols]))


def test_blending_removes_the_seams_of_a_plain_stitch(run, tmp_path):
    # a uniform scene: any step in the output at the tile period is a seam (the U-Net's border effects)
    scene = write_tif(tmp_path / "labels.tif", np.zeros((320, 320), np.uint8))
    stitched, blended = tmp_path / "stitch.tif", tmp_path / "blend.tif"
    predict_scene(run, scene, stitched, PredictOptions(overlap=0, blend="none", progress=False))
    predict_scene(run, scene, blended, PredictOptions(progress=False))
    # the scene is mirrored by 8 px (a quarter tile): the stitch's tiles start at scene column 32k − 8
    borders = [c for b in range(24, 300, 32) for c in (b - 1, b)]  # both sides of the stitch's tile borders
    inner = [c for b in range(24, 300, 32) for c in (b - 16, b - 15)]  # tile centres
    with rasterio.open(stitched) as a, rasterio.open(blended) as b:
        sa, sb = a.read(), b.read()
    assert _jump(sa, borders) > 3 * _jump(sa, inner)  # the plain stitch steps at every tile border
    assert _jump(sb, borders) < 0.5 * _jump(sa, borders)  # blending removes most of it
    assert _jump(sb, borders) < 2 * max(_jump(sb, inner), 0.05)  # and leaves no seam above the noise
    from p2ptools.prep.tiling import axis_offsets

    own = sorted({c for x in axis_offsets(336, 32, 24, "shift")[1:-1] for c in (x - 8, x + 23) if 4 <= c < 316})
    assert _jump(sb, own) < 2 * max(_jump(sb, inner), 0.05)  # nor at its own window borders


def test_band_processing_equals_one_band(run, tmp_path):
    scene = write_tif(tmp_path / "labels.tif", blocks_mask(70, 150, [0, 255], block=8))
    one, many = tmp_path / "one.tif", tmp_path / "many.tif"
    predict_scene(run, scene, one, PredictOptions(progress=False))
    predict_scene(run, scene, many, PredictOptions(band_width=40, progress=False))  # 4 bands, windows computed twice
    with rasterio.open(one) as a, rasterio.open(many) as b:
        assert np.abs(a.read().astype(int) - b.read().astype(int)).max() <= 1


def test_cli_raster_prediction_and_errors(run, tmp_path):
    scene = write_tif(tmp_path / "labels.tif", blocks_mask(64, 64, [0, 255], block=8))
    res = CliRunner().invoke(cli, ["predict", str(run), str(scene), str(tmp_path / "o.tif"), "--overviews"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "64×64 label raster →" in res.output  # what it read, in words
    bad = write_tif(tmp_path / "bad.tif", blocks_mask(64, 64, [0, 3], block=8))
    res = CliRunner().invoke(cli, ["predict", str(run), str(bad), str(tmp_path / "x.tif")])
    assert res.exit_code == 1 and "values outside palette" in res.output and "3" in res.output
    res = CliRunner().invoke(cli, ["predict", str(run), str(scene), str(tmp_path / "y.tif"), "--dropout", "on"])
    assert res.exit_code == 2 and "for folders" in res.output


def test_raster_output_rules(run, tmp_path):
    scene = write_tif(tmp_path / "labels.tif", blocks_mask(64, 64, [0, 255], block=8), crs=None)
    res = CliRunner().invoke(cli, ["predict", str(run), str(scene), str(tmp_path / "out.png")])
    assert res.exit_code == 1 and "name the output .tif or .tiff" in res.output
    mine = write_tif(tmp_path / "mine.tif", blocks_mask(64, 64, [0], block=8))
    res = CliRunner().invoke(cli, ["predict", str(run), str(scene), str(mine)])
    assert res.exit_code == 1 and "was not written by p2ptools" in res.output
    assert rasterio.open(mine).count == 1  # untouched
    for _ in range(2):  # p2ptools's own output may be replaced by a rerun
        res = CliRunner().invoke(cli, ["predict", str(run), str(scene), str(tmp_path / "out.tif")])
        assert res.exit_code == 0, res.output
    warned = [ln for ln in res.stderr.splitlines() if "georeference" in ln.lower()]
    assert len(warned) == 1 and "labels.tif has no georeference" in warned[0], res.stderr


def test_checkpoint_carries_the_data_contract(run, tiles):
    from p2ptools.model.checkpoints import load_generator
    from p2ptools.runtime.output import read_dataset_json

    _, _, meta = load_generator(run)
    contract = meta["dataset"]["contract"]
    assert contract == read_dataset_json(tiles)["contract"]
    assert (contract["a"], contract["b"], contract["size"]) == ("label", "photo", 64)
    assert contract["photo"]["channels"] == 3 and contract["photo"]["dtypes"] == ["uint8"]
    assert set(contract["scenes"]) == {"s0", "s1"}


def test_photo_to_label_model_writes_a_class_raster(photo_run, tmp_path):
    scene = write_tif(tmp_path / "rgb.tif", photo(80, 100, seed=3))
    out = tmp_path / "classes.tif"
    rep = predict_scene(photo_run, scene, out, PredictOptions(progress=False))
    assert rep.input_kind == "rgb" and rep.what == "3-band photo"
    with rasterio.open(out) as b:
        assert (b.count, b.dtypes[0]) == (1, "uint8")
        assert set(np.unique(b.read(1))) <= {0, 255}  # palette values, never a blend of them
        cmap = b.colormap(1)
        assert cmap[0] == (0, 0, 0, 255) and cmap[255] == (255, 255, 255, 255)
    predict_scene(photo_run, scene, tmp_path / "colours.tif", PredictOptions(rgb=True, progress=False))
    with rasterio.open(tmp_path / "colours.tif") as b:
        assert b.count == 3


def test_nearest_class_decodes_after_blending():
    from p2ptools.prep.labels import load_palette, nearest_class

    pal = load_palette("landcover")
    colors = np.array([c.color for c in pal.classes], np.float32)
    rgb = np.stack([colors[i] + 20 for i in range(len(colors))], axis=1)[:, :, None]  # (3, K, 1), off by 20
    assert nearest_class(rgb, pal)[:, 0].tolist() == [c.value for c in pal.classes]


def test_inputs_that_break_the_contract_are_refused(run, photo_run, tmp_path):
    rgb = write_tif(tmp_path / "rgb.tif", photo(64, 64))
    labels = write_tif(tmp_path / "labels.tif", blocks_mask(64, 64, [0, 255], block=8))
    deep = write_tif(tmp_path / "deep.tif", photo(64, 64, dtype="uint16"))
    cases = [
        (run, rgb, "rgb.tif: 3 band(s) of uint8, not a label raster"),
        (photo_run, labels, "labels.tif: 1 band(s); the model"),
        (photo_run, deep, "deep.tif: uint16 photo; the model"),
    ]
    for model, scene, message in cases:
        res = CliRunner().invoke(cli, ["predict", str(model), str(scene), str(tmp_path / "o.tif")])
        assert res.exit_code == 1 and message in res.output, res.output
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(cli, ["predict", str(run), str(labels), str(tmp_path / "o.tif"), "--input-kind", "rgb"])
    assert res.exit_code == 1 and "reads label rasters" in res.output
    assert not (tmp_path / "o.tif").exists()


def test_folder_prediction_refuses_photos_for_a_label_model(run, tmp_path):
    from tests.conftest import photo as make_photo

    folder = tmp_path / "in"
    folder.mkdir()
    import cv2

    cv2.imwrite(str(folder / "p.png"), np.moveaxis(make_photo(32, 32), 0, -1))
    cv2.imwrite(str(folder / "l.png"), np.repeat(blocks_mask(32, 32, [0, 255], block=8)[..., None], 3, axis=2))
    res = CliRunner().invoke(cli, ["predict", str(run), str(folder), str(tmp_path / "out")])
    assert res.exit_code == 1 and "p.png: not a label map of palette 'inria'" in res.output, res.output
    assert (tmp_path / "out" / "l.png").exists() and not (tmp_path / "out" / "p.png").exists()


def test_mirrored_borders(run, tmp_path):
    from p2ptools.inference.scene_io import read_mirrored

    a = np.arange(20).reshape(4, 5)
    got = read_mirrored(lambda y, x, h, w: a[y : y + h, x : x + w], -2, -1, 8, 7, 4, 5)
    assert np.array_equal(got, np.pad(a, ((2, 2), (1, 1)), mode="symmetric"))
    # on a uniform scene, the border rows come out like the inside when the scene is mirrored
    scene = write_tif(tmp_path / "flat.tif", np.zeros((96, 96), np.uint8))
    dev = {}
    for pad in (0, 8):
        out = tmp_path / f"pad{pad}.tif"
        predict_scene(run, scene, out, PredictOptions(pad=pad, progress=False))
        img = rasterio.open(out).read().astype(float)
        inside = img[:, 40:56, 40:56].mean(axis=(1, 2))[:, None]
        dev[pad] = np.abs(img[:, :, 0] - inside).mean() + np.abs(img[:, 0, :] - inside).mean()
    assert dev[8] < dev[0]


def test_real_spacenet_scene(tmp_path):
    """The real SpaceNet sample (pan uint16 + building mask): tile, train, predict the whole scene."""
    src = linked_scene(tmp_path / "src", "a", *ATLANTA)
    assert CliRunner().invoke(cli, ["tile", str(src), str(tmp_path / "tiles"), "--size", "64"]).exit_code == 0
    model = _train(tmp_path, tmp_path / "tiles", "BtoA")
    out = tmp_path / "buildings.tif"
    rep = predict_scene(model, src / "images" / "a.tif", out, PredictOptions(progress=False))
    with rasterio.open(out) as b, rasterio.open(src / "images" / "a.tif") as a:
        assert (b.width, b.height, b.count) == (a.width, a.height, 1) and b.transform == a.transform
        assert set(np.unique(b.read(1))) <= {0, 255}
    assert rep.input_kind == "rgb"


def test_instance_norm_generator_is_warned_about(tiles, tmp_path, caplog):
    run = tmp_path / "run_in"
    fit(ModelConfig(ngf=8, ndf=8, num_downs=5, image_size=32, load_size=36, g_norm="instance"),
        TrainConfig(dataset=tiles, out=run, epochs=1, workers=0, max_steps=2, batch_size=4), progress=False)
    scene = write_tif(tmp_path / "labels.tif", blocks_mask(64, 64, [0, 255], block=8))
    with caplog.at_level("WARNING"):
        predict_scene(run, scene, tmp_path / "o.tif", PredictOptions(progress=False))
    assert any("instance normalisation" in r.getMessage() for r in caplog.records)


def _scene_raster(run_dir, scene, out, monkeypatch, serial: bool, **options):
    """The raster and mask of ``predict_scene`` (torch fp32 on the CPU), by the pipelined loop or the serial one."""
    from p2ptools.inference import mosaic

    with monkeypatch.context() as m:
        if serial:
            m.setattr(mosaic, "_predict_bands", mosaic._serial_bands)
        predict_scene(run_dir, scene, out, PredictOptions(progress=False, engine="torch", amp="none", device="cpu",
                                                          **options))
    with rasterio.open(out) as ds:
        return ds.read(), ds.dataset_mask(), (ds.crs, ds.transform, ds.profile["dtype"])


@pytest.mark.parametrize("band_width", [4096, 40])
def test_batches_across_rows_give_the_serial_raster_bit_for_bit(run, photo_run, tmp_path, monkeypatch, band_width):
    """The pipelined loop (batches spanning rows and bands, reader and writer threads) writes the raster the
    one-row-at-a-time loop writes, bit for bit, at batch sizes 1, 3 and 64 (64: every window in one batch)."""
    labels = write_tif(tmp_path / "labels.tif", blocks_mask(90, 130, [0, 255], block=8, seed=3))
    img = photo(70, 100, seed=5)
    img[:, :20, :30] = 0
    rgb = write_tif(tmp_path / "rgb.tif", img, nodata=0)
    for model, scene, extra in ((run, labels, {}), (photo_run, rgb, {"rgb": True})):
        ref = _scene_raster(model, scene, tmp_path / "ref.tif", monkeypatch, True, band_width=band_width, **extra)
        for batch in (1, 3, 64):
            got = _scene_raster(model, scene, tmp_path / f"b{batch}.tif", monkeypatch, False, batch_size=batch,
                                band_width=band_width, **extra)
            assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1]) and got[2] == ref[2], batch
    assert not [p for p in tmp_path.glob(".*")]  # no temporary files or sidecars left


def test_batch_size_is_honoured_across_rows(run, tmp_path, monkeypatch):
    """``--batch-size 16`` runs the network on 16 windows at a time, though a row holds only 7."""
    from p2ptools.inference import mosaic

    sizes: list[int] = []
    real = mosaic.make_engine

    def recording(*args, **kwargs):
        engine = real(*args, **kwargs)

        def run_batch(x):
            sizes.append(x.shape[0])
            return engine(x)

        return run_batch

    monkeypatch.setattr(mosaic, "make_engine", recording)
    scene = write_tif(tmp_path / "labels.tif", blocks_mask(90, 150, [0, 255], block=8))
    predict_scene(run, scene, tmp_path / "o.tif", PredictOptions(progress=False, batch_size=16))
    assert sizes[:-1] == [16] * (len(sizes) - 1) and sum(sizes) == 5 * 7


def test_reader_and_writer_errors_reach_the_caller(run, tmp_path, monkeypatch):
    """An unreadable window (reader thread) and a failed write (writer thread) stop the scene with their error,
    and leave no temporary file; no thread is left running."""
    import threading

    from p2ptools.errors import InputError
    from p2ptools.inference import mosaic

    scene = write_tif(tmp_path / "labels.tif", blocks_mask(90, 150, [0, 255], block=8))
    calls = {"n": 0}
    real_read = mosaic.read_window

    def failing_read(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise rasterio.errors.RasterioError("broken block")
        return real_read(*args)

    with monkeypatch.context() as m:
        m.setattr(mosaic, "read_window", failing_read)
        with pytest.raises(InputError, match="broken block"):
            predict_scene(run, scene, tmp_path / "a.tif", PredictOptions(progress=False, batch_size=4))

    def failing_write(*args):
        raise OSError("no space")

    with monkeypatch.context() as m:
        m.setattr(mosaic, "write_rows", failing_write)
        with pytest.raises(OSError, match="no space"):
            predict_scene(run, scene, tmp_path / "b.tif", PredictOptions(progress=False, batch_size=4))
    assert not list(tmp_path.glob(".*")) and not list(tmp_path.glob("[ab].tif"))
    assert not [t for t in threading.enumerate() if t.name.startswith("p2ptools-scene")]


def test_device_blending_gives_the_numpy_raster(run, tmp_path, monkeypatch):
    """The torch accumulator (what a GPU's outputs are blended with, on their device) run here on CPU tensors
    writes the raster the numpy accumulator writes, bit for bit."""
    from p2ptools.inference import mosaic

    scene = write_tif(tmp_path / "labels.tif", blocks_mask(90, 130, [0, 255], block=8, seed=4))
    ref = _scene_raster(run, scene, tmp_path / "np.tif", monkeypatch, False, batch_size=5, band_width=64)
    kinds = set()

    def on_device(outs):  # what _to_blend does with CUDA outputs: a tensor where it is, no copy to numpy
        kinds.add(type(outs))
        return mosaic._on_device(outs)  # the engine's outputs are inference tensors: never changed in place

    monkeypatch.setattr(mosaic, "_to_blend", on_device)
    got = _scene_raster(run, scene, tmp_path / "torch.tif", monkeypatch, False, batch_size=5, band_width=64)
    assert kinds and all(k.__module__.startswith("torch") for k in kinds)
    assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1]) and got[2] == ref[2]
