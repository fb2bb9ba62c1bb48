import numpy as np
import pytest
from PIL import Image

from p2ptools.errors import ConfigError, InputError
from p2ptools.prep.images import fit_square, image_size, list_images, load_rgb8
from tests.conftest import shared_path, write_tif


def _save(path, arr, mode=None, **kw):
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    img.save(path, **kw)
    return path


def test_grayscale_becomes_three_equal_channels(tmp_path):
    g = np.arange(60 * 40, dtype=np.uint32).reshape(40, 60) % 256
    out = load_rgb8(_save(tmp_path / "g.png", g.astype(np.uint8)))
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    assert (out[..., 0] == g).all() and (out[..., 1] == g).all() and (out[..., 2] == g).all()


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200  # red
    rgba[:, :5, 3] = 255  # left opaque, right transparent
    out = load_rgb8(_save(tmp_path / "a.png", rgba))
    assert (out[:, :5] == [200, 0, 0]).all()
    assert (out[:, 5:] == 255).all()


def test_palette_image_with_transparency(tmp_path):
    p = Image.new("P", (8, 8), 1)
    p.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png", transparency=0)
    assert (load_rgb8(tmp_path / "p.png") == [10, 20, 30]).all()


def test_16bit_png_gray_and_rgb_scale_by_257(tmp_path):
    import cv2

    g = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), g)
    assert load_rgb8(tmp_path / "g16.png")[0, :, 0].tolist() == [0, 1, 255, 128]
    rgb = np.zeros((2, 3, 3), np.uint16)
    rgb[..., 2] = 65535  # BGR order for OpenCV: red channel full
    rgb[..., 1] = 257 * 100
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb)
    out = load_rgb8(tmp_path / "rgb16.png")
    assert (out[..., 0] == 255).all() and (out[..., 1] == 100).all() and (out[..., 2] == 0).all()


def test_exif_rotated_phone_photo_is_turned_upright(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = [255, 0, 0]  # left half red as stored
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    img.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = load_rgb8(tmp_path / "phone.jpg")
    assert out.shape == (40, 20, 3)  # upright: portrait
    assert out[:18, :, 0].mean() > 200 and out[22:, :, 0].mean() < 50  # stored left → displayed top
    assert image_size(tmp_path / "phone.jpg") == (20, 40)


def test_webp_bmp_and_geotiff(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (16, 24, 3), dtype=np.uint8)
    assert np.array_equal(load_rgb8(_save(tmp_path / "x.bmp", arr)), arr)
    assert np.array_equal(load_rgb8(_save(tmp_path / "x.webp", arr, lossless=True)), arr)
    data = np.linspace(1000, 3000, 4 * 16 * 24).reshape(4, 16, 24).astype(np.uint16)
    out = load_rgb8(write_tif(tmp_path / "rgbn.tif", data))
    assert out.shape == (16, 24, 3) and out.min() == 0 and out.max() == 255  # stretched, NIR dropped


def test_real_rgba_geotiff_and_real_photo():
    out = load_rgb8(shared_path("rasterio", "RGBA.byte.tif"))
    assert out.shape == (718, 791, 3)
    assert (out[0, 0] == 255).all()  # the transparent collar becomes white
    assert load_rgb8(shared_path("facades", "train", "1.jpg")).shape == (256, 512, 3)


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("empty.jpg", b"", "empty file"),
        ("text.png", b"this is not a png", "cannot decode"),
    ],
)
def test_bad_files(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_rgb8(tmp_path / name)


def test_truncated_jpeg(tmp_path):
    data = shared_path("facades", "train", "1.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.jpg"):
        load_rgb8(tmp_path / "cut.jpg")


def test_corrupt_geotiff_names_file():
    with pytest.raises(InputError, match="corrupt.tif"):
        load_rgb8(shared_path("rasterio", "corrupt.tif"))


def test_fit_square():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255  # the centre square is white
    crop = fit_square(img, 50, "crop")
    assert crop.shape == (50, 50, 3) and (crop == 255).all()
    pad = fit_square(img, 50, "pad")
    assert pad.shape == (50, 50, 3) and (pad[:12] == 0).all() and (pad[25, 13:37] == 255).all()
    stretch = fit_square(img, 50, "stretch")
    assert stretch.shape == (50, 50, 3) and stretch[:, 20:30].min() == 255
    with pytest.raises(ValueError):
        fit_square(img, 50, "squash")


def test_list_images_is_recursive_and_skips_output(tmp_path):
    for rel in ("a.jpg", "sub/b.PNG", "sub/c.txt", ".hidden/d.png", "out/e.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, exclude=tmp_path / "out")]
    assert found == ["a.jpg", "sub/b.PNG"]


def test_fast_path_equals_pillow(tmp_path):
    """JPEG (rotated by EXIF, grayscale) and RGB PNG read by OpenCV give Pillow's pixels exactly."""
    from p2ptools.prep.images import _from_opencv, _from_pillow

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise
    files = [
        _save(tmp_path / "r.jpg", rgb, exif=exif),
        _save(tmp_path / "g.jpg", rgb[..., 0]),
        _save(tmp_path / "c.png", rgb),
    ]
    for f in files:
        fast = _from_opencv(f)
        assert fast is not None, f
        assert np.array_equal(fast, _from_pillow(f)), f
    assert load_rgb8(files[0]).shape == (50, 30, 3)
    assert _from_opencv(_save(tmp_path / "a.png", np.dstack([rgb, rgb[..., :1]]))) is None  # alpha: Pillow path


def test_training_reads_pairs_like_every_other_command(tmp_path):
    """read_ab (training, prediction) = load_rgb8 halves: alpha on white, 16-bit by v / 257."""
    import cv2

    from p2ptools.prep.dataset import read_ab

    ab16 = np.full((8, 16, 3), 65535, np.uint16)
    ab16[:, :8] = 1000  # 1000 / 257 = 3.89 → 4 (÷256 would give 3)
    cv2.imwrite(str(tmp_path / "p16.png"), ab16)
    a, b = read_ab(tmp_path / "p16.png")
    assert (a == 4).all() and (b == 255).all()
    rgba = np.zeros((8, 16, 4), np.uint8)
    rgba[..., :3] = 10
    rgba[:, :8, 3] = 255
    _save(tmp_path / "pa.png", rgba)
    a, b = read_ab(tmp_path / "pa.png")
    assert (a == 10).all() and (b == 255).all()  # transparent → white, as in evaluate and make-inpaint
    assert np.array_equal(np.hstack(read_ab(tmp_path / "pa.png")), load_rgb8(tmp_path / "pa.png"))


TOO_LARGE = r"pixels, more than the limit of"


@pytest.fixture
def limit(monkeypatch):
    """Set ``$P2PTOOLS_MAX_PIXELS`` for one test (restored after it)."""
    return lambda value: monkeypatch.setenv("P2PTOOLS_MAX_PIXELS", str(value))


def test_a_png_bomb_is_refused_from_its_header_naming_the_file(tmp_path, monkeypatch):
    from tests.image_bombs import png_bomb

    monkeypatch.delenv("P2PTOOLS_MAX_PIXELS", raising=False)
    bomb = png_bomb(tmp_path / "bomb.png")  # 20000² 1-bit: 48 KB on disk, 400 MB decoded as gray
    assert bomb.stat().st_size < 100_000
    assert image_size(bomb) == (20000, 20000)  # the header only, without Pillow's DecompressionBombError
    with pytest.raises(InputError, match=rf"bomb.png: 20000×20000 = 400,000,000 {TOO_LARGE} 268,435,456 "
                                         r"\(--max-pixels or P2PTOOLS_MAX_PIXELS raise it\)$"):
        load_rgb8(bomb)


def test_a_sparse_60000_px_geotiff_is_refused_without_reading_it(tmp_path, monkeypatch):
    from tests.image_bombs import sparse_tif

    monkeypatch.delenv("P2PTOOLS_MAX_PIXELS", raising=False)
    big = sparse_tif(tmp_path / "big.tif")  # a few hundred KB; 10 GB decoded
    with pytest.raises(InputError, match=rf"big.tif: 60000×60000 = 3,600,000,000 {TOO_LARGE} .* in windows"):
        load_rgb8(big)


def test_the_environment_sets_the_limit(tmp_path, limit):
    arr = np.zeros((64, 65, 3), np.uint8)
    png, jpg, tif = _save(tmp_path / "x.png", arr), _save(tmp_path / "x.jpg", arr), tmp_path / "x.tif"
    write_tif(tif, np.moveaxis(arr, -1, 0))
    limit(64 * 64)
    for p in (png, jpg, tif):
        with pytest.raises(InputError, match=rf"x.{p.suffix[1:]}: 65×64 = 4,160 {TOO_LARGE} 4,096"):
            load_rgb8(p)
    limit(65 * 64)  # at the limit: read
    for p in (png, jpg, tif):
        assert load_rgb8(p).shape == (64, 65, 3)
    limit("a lot")
    with pytest.raises(ConfigError, match="P2PTOOLS_MAX_PIXELS='a lot': expected a positive whole number"):
        load_rgb8(png)


def test_untiled_scenes_over_the_limit_are_refused_tiled_ones_open(tmp_path, limit):
    from p2ptools.prep.raster import open_raster

    arr = np.zeros((100, 100, 3), np.uint8)
    png = _save(tmp_path / "scene.png", arr)
    tif = write_tif(tmp_path / "scene.tif", np.moveaxis(arr, -1, 0), tiled=True, blockxsize=16, blockysize=16)
    limit(64 * 64)
    with pytest.raises(InputError, match=rf"scene.png: 100×100 = 10,000 {TOO_LARGE} 4,096 .*gdal_translate"):
        open_raster(png)
    with open_raster(tif) as ds:  # read in windows: any size
        assert ds.width == 100
