"""Vector labels (GeoJSON, GeoPackage, …) burnt per tile window on the photo's grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from rasterio.windows import Window

from p2ptools.cli.main import cli
from p2ptools.errors import InputError
from p2ptools.prep.images import load_rgb8
from p2ptools.prep.labels import load_palette
from p2ptools.prep.vector import VectorMask, vector_spec
from tests.conftest import ATLANTA, CRS, TRANSFORM, linked_scene, photo, shared_path, write_tif

pyogrio = pytest.importorskip("pyogrio")


def write_vector(path, geoms, crs=CRS, **fields):
    """Write shapely geometries (and attribute columns) with pyogrio; the driver follows the extension."""
    names = list(fields)
    pyogrio.raw.write(str(path), geometry=shapely.to_wkb(geoms), field_data=[np.asarray(fields[n]) for n in names],
                      fields=names, crs=crs, geometry_type="Unknown",
                      driver={".geojson": "GeoJSON", ".gpkg": "GPKG", ".fgb": "FlatGeobuf",
                              ".shp": "ESRI Shapefile"}[path.suffix])
    return path


def px(col, row):
    """Map coordinates of pixel corner (col, row) on the generated grid (0.5 m, origin 500000/4000000)."""
    return TRANSFORM * (col, row)


def square(c0, r0, c1, r1):
    (x0, y0), (x1, y1) = px(c0, r0), px(c1, r1)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _mask(path, palette="landcover", field=None, all_touched=False, h=64, w=64):
    pal = load_palette(palette)
    return VectorMask(path, vector_spec(pal, field, all_touched), CRS, tuple(TRANSFORM)[:6], h, w, pal.background,
                      "uint8")


def test_real_spacenet_polygons_give_spacenet_mask(tmp_path):
    """Atlanta's 43 building polygons, tiled: every label tile equals the mask SpaceNet rasterized from them."""
    src = linked_scene(tmp_path / "src", "atlanta", ATLANTA[0], ("spacenet", "geotiff_labels.geojson"), "labels")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["tile", "--images", str(src / "images"), "--labels", str(src / "labels"), str(out),
                                   "--size", "128", "--keep-empty", "1", "--split-by", "scene"])
    assert res.exit_code == 0, res.output
    ref = rasterio.open(shared_path("spacenet", "sample_fp_mask_from_geojson.tif")).read(1)
    man = pd.read_csv(out / "manifest.csv")
    kept = man[man.kept]
    assert len(kept) == 64  # 900 px, 128-px tiles, edge shift: 8 × 8
    agree = [(load_rgb8(out / r.file)[:, :128, 0] == ref[r.y : r.y + 128, r.x : r.x + 128]).mean()
             for r in kept.itertuples()]
    assert min(agree) >= 0.999 and np.mean(agree) > 0.9995, (min(agree), np.mean(agree))
    assert (kept.frac_building > 0).sum() > 10


def test_fields_names_numbers_reprojection_and_burn_order(tmp_path):
    big, small = square(0, 0, 40, 40), square(10, 10, 20, 20)
    path = write_vector(tmp_path / "l.gpkg", [small, big], cls=["building", "2"])  # small first in the file
    m = _mask(path, field="cls")
    lab = m.read(1, window=Window(0, 0, 64, 64))
    assert (lab[12:18, 12:18] == 1).all()  # building (1 in landcover) on top of the larger woodland (2)
    assert (lab[25:38, 25:38] == 2).all() and (lab[45:, :] == 0).all()
    # the same features in another CRS land on the same pixels
    wgs = shapely.transform(np.array([small, big]), lambda xy: np.array(
        rasterio.warp.transform(CRS, "EPSG:4326", xy[:, 0], xy[:, 1])).T)
    m2 = _mask(write_vector(tmp_path / "l84.geojson", wgs, crs="EPSG:4326", cls=[1, 2]), field="cls")
    assert (m2.read(1, window=Window(0, 0, 64, 64)) != lab).mean() < 0.01
    # a window reads only its part, on the same grid
    assert np.array_equal(m.read(1, window=Window(8, 8, 16, 16)), lab[8:24, 8:24])


def test_all_touched_burns_thin_features(tmp_path):
    (x0, y0), (x1, y1) = px(5.3, 30.15), px(60.2, 30.2)  # between pixel centres (row 30 is at 30.5)
    line = shapely.LineString([(x0, y0), (x1, y1)]).buffer(0.05)  # 0.1 m wide on 0.5 m pixels
    path = write_vector(tmp_path / "road.fgb", [line])
    assert _mask(path, palette="inria").read(1).sum() == 0
    assert (_mask(path, palette="inria", all_touched=True).read(1)[30, 6:60] == 255).all()


def test_bad_vector_files(tmp_path):
    box = square(0, 0, 30, 30)
    with pytest.raises(InputError, match="has no CRS"):
        _mask(write_vector(tmp_path / "nocrs.shp", [box], crs=None))  # a shapefile without .prj
    with pytest.raises(InputError, match="cannot reproject .* from EPSG:4326.*read as WGS84"):
        _mask(write_vector(tmp_path / "utm-as-wgs84.geojson", [box], crs=None))  # GeoJSON means WGS84
    with pytest.raises(InputError, match="no field 'kind'.*its fields: cls"):
        _mask(write_vector(tmp_path / "f.geojson", [box], cls=[1]), field="kind")
    with pytest.raises(InputError, match="not classes of the palette \\(7, lake\\)"):
        _mask(write_vector(tmp_path / "v.geojson", [box, box, box], cls=["7", "lake", "water"]), field="cls")
    far = shapely.affinity.translate(box, 10_000, 0)
    with pytest.raises(InputError, match="no feature overlaps scene"):
        _mask(write_vector(tmp_path / "far.geojson", [far]))
    bowtie = shapely.Polygon([px(0, 0), px(20, 20), px(20, 0), px(0, 20)])  # self-intersecting
    m = _mask(write_vector(tmp_path / "bow.geojson", [bowtie, box, shapely.Polygon()]), palette="inria")
    assert (m.repaired, m.skipped) == (1, 1) and m.read(1).sum() > 0


def test_one_bad_scene_does_not_stop_the_others(tmp_path):
    for name in ("good", "nocrs"):
        write_tif(tmp_path / "images" / f"{name}.tif", photo(96, 96))
    (tmp_path / "labels").mkdir()
    write_vector(tmp_path / "labels" / "good.geojson", [square(0, 0, 50, 50)], crs=CRS)
    write_vector(tmp_path / "labels" / "nocrs.shp", [square(0, 0, 50, 50)], crs=None)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["tile", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
                                   str(out), "--size", "32"])
    assert res.exit_code == 1 and "nocrs.shp: has no CRS" in res.output and "Traceback" not in res.output
    man = pd.read_csv(out / "manifest.csv")
    assert set(man.scene) == {"good"} and man.kept.sum() > 0


def test_fractional_class_values_are_refused_naming_the_field(tmp_path):
    path = write_vector(tmp_path / "l.gpkg", [square(0, 0, 10, 10), square(20, 20, 30, 30)], cls=[1.7, 2.0])
    with pytest.raises(InputError, match=r"field 'cls' holds fractional values \(1\.7\)"):
        _mask(path, field="cls").read(1, window=Window(0, 0, 64, 64))
