"""Label masks from polygons: GeoJSON, GeoPackage, Shapefile, FlatGeobuf → class values per tile.

SpaceNet, OpenStreetMap, national cadastres and building-footprint releases ship labels as vector
features. ``tile`` accepts such a file wherever a label raster goes (paired with its photo by file
stem). The features are read with pyogrio (GDAL/OGR), repaired when invalid (shapely's
``make_valid``; empty or unrepairable ones are skipped and counted), reprojected once to the
photo's CRS, indexed in an STR-tree, and burnt with ``rasterio.features.rasterize`` **per tile
window** on the photo's pixel grid, so no whole-scene mask is ever held in memory.

Class of a feature: ``--label-field NAME`` takes it from an attribute, either a number (the class
value) or a class name resolved through the palette; without a field every feature gets the
palette's first non-background class (``building`` in the Inria palette). Pixels no feature covers
are the palette's background.

Burn order: larger features first, so smaller ones end on top (a building inside a land-use polygon
keeps its own class); features of equal area keep their file order (the later on top). A pixel
belongs to a feature when its centre lies inside it, or, with ``--all-touched``, when the feature
touches the pixel at all (thin roads survive at coarse resolutions).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from p2ptools.errors import InputError

log = logging.getLogger(__name__)

VECTOR_EXTENSIONS: frozenset[str] = frozenset({".geojson", ".gpkg", ".shp", ".fgb"})


def is_vector(path: Path | str) -> bool:
    """Whether ``path`` names a vector label file (by extension)."""
    return Path(path).suffix.lower() in VECTOR_EXTENSIONS


@dataclass(frozen=True)
class VectorSpec:
    """How vector features become class values.

    Args:
        field: attribute holding the class (a value, or a class name of the palette); None: every
            feature is ``default_value``.
        names: class name → value (from the palette).
        values: the palette's class values.
        default_value: the class of every feature when ``field`` is None.
        all_touched: burn every pixel a feature touches, not only those whose centre it covers.
    """

    field: str | None
    names: dict[str, int]
    values: tuple[int, ...]
    default_value: int
    all_touched: bool = False


class VectorMask:
    """The label features of one scene, reprojected to its grid, burnt window by window.

    Reads like a one-band rasterio dataset: ``read(1, window=Window(...))`` returns the class values
    of that window (background where no feature is).

    Raises:
        InputError: a file without CRS, a missing field, a class the palette lacks, no usable
            feature, or no feature overlapping the scene (each naming the file).
    """

    def __init__(self, path: Path, spec: VectorSpec, crs: str, transform: tuple[float, ...], height: int, width: int,
                 background: int, dtype: str) -> None:
        import rasterio

        self.path, self.spec, self.background, self.dtype = Path(path), spec, background, dtype
        self.transform = rasterio.Affine(*transform[:6])
        self.height, self.width = height, width
        src_crs, geoms, field_data = self._read()
        if not crs:
            raise InputError(f"{self.path}: vector labels need a georeferenced photo, and this scene has no CRS")
        kept_geoms, kept_classes = self._repair(geoms, self._classes(field_data, len(geoms)))
        if str(src_crs) != str(crs) and kept_geoms:
            kept_geoms = self._reproject(kept_geoms, src_crs, crs)
        order = sorted(range(len(kept_geoms)), key=lambda i: -kept_geoms[i].area)  # smaller on top (burnt last)
        self.geoms = [kept_geoms[i] for i in order]
        self.classes = [kept_classes[i] for i in order]
        self._index(crs)
        if self.repaired or self.skipped:
            log.warning("%s: %d invalid geometries repaired, %d empty skipped", self.path, self.repaired, self.skipped)

    def _read(self) -> tuple[Any, Any, Any]:
        """The file's CRS, its geometries (shapely) and its class field's values (None without a field).

        Raises:
            InputError: for an unreadable file, a missing field, or a file without CRS.
        """
        import pyogrio
        import pyogrio.raw
        import shapely

        spec = self.spec
        try:
            info = pyogrio.read_info(self.path)
            columns = [spec.field] if spec.field else []
            if spec.field and spec.field not in list(info["fields"]):
                fields = ", ".join(map(str, info["fields"][:30]))
                raise InputError(f"{self.path}: no field {spec.field!r} (--label-field); its fields: {fields}")
            _, _, wkb, field_data = pyogrio.raw.read(self.path, columns=columns)
        except InputError:
            raise
        except Exception as exc:  # pyogrio/GDAL raise several kinds for unreadable files
            raise InputError(f"{self.path}: cannot read as vector labels: {exc}") from exc
        if not info.get("crs"):
            raise InputError(f"{self.path}: has no CRS; p2ptools cannot place its features on the photo "
                             "(set one, e.g. ogr2ogr -a_srs EPSG:XXXX)")
        return info["crs"], shapely.from_wkb(wkb), field_data[0] if spec.field else None

    def _repair(self, geoms: Any, classes: list[int]) -> tuple[list[Any], list[int]]:
        """The usable geometries and their classes: invalid ones repaired, empty ones skipped (both counted)."""
        import shapely

        self.repaired = self.skipped = 0
        kept_geoms, kept_classes = [], []
        for g, c in zip(geoms, classes, strict=True):
            if g is None or g.is_empty:
                self.skipped += 1
                continue
            if not g.is_valid:
                g = shapely.make_valid(g)
                self.repaired += 1
                if g.is_empty:
                    self.skipped += 1
                    continue
            kept_geoms.append(g)
            kept_classes.append(c)
        return kept_geoms, kept_classes

    def _reproject(self, geoms: list[Any], src_crs: Any, crs: str) -> list[Any]:
        """``geoms`` from the file's CRS to the photo's.

        Raises:
            InputError: when PROJ cannot transform them (coordinates outside the source CRS's range).
        """
        import shapely
        from rasterio.warp import transform_geom

        try:
            mapped = transform_geom(src_crs, crs, [shapely.geometry.mapping(g) for g in geoms])
        except Exception as exc:  # PROJ errors for coordinates outside the source CRS's range
            raise InputError(f"{self.path}: cannot reproject its features from {src_crs} to the photo's {crs} "
                             f"({exc}); are its coordinates really in {src_crs}? (a GeoJSON file without "
                             "a 'crs' member is read as WGS84 longitude/latitude)") from exc
        return [shapely.geometry.shape(m) for m in mapped]

    def _index(self, crs: str) -> None:
        """The STR-tree of ``self.geoms``.

        Raises:
            InputError: when there is no usable feature, or none overlaps the scene.
        """
        import shapely

        left, top = self.transform.c, self.transform.f
        right, bottom = self.transform * (self.width, self.height)
        scene = shapely.box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        if not self.geoms:
            raise InputError(f"{self.path}: no usable features ({self.skipped} empty or unrepairable)")
        self.tree = shapely.STRtree(self.geoms)
        if not len(self.tree.query(scene, predicate="intersects")):
            b = shapely.total_bounds(self.geoms)
            raise InputError(f"{self.path}: no feature overlaps scene {tuple(round(v, 2) for v in scene.bounds)} "
                             f"(features cover {tuple(round(float(v), 2) for v in b)} in {crs})")

    def _classes(self, data: Any, n: int) -> list[int]:
        spec = self.spec
        if data is None:
            return [spec.default_value] * n
        out, unknown, fractional = [], set(), set()
        for v in data:
            if v is None or (isinstance(v, float) and np.isnan(v)):
                unknown.add("(empty)")
                out.append(spec.default_value)
                continue
            if isinstance(v, (float, np.floating)) and float(v) != round(float(v)):
                fractional.add(repr(float(v)))  # int(1.7) would silently be class 1
                out.append(spec.default_value)
                continue
            try:
                value = int(v) if not isinstance(v, str) else (spec.names[v] if v in spec.names else int(v))
            except (KeyError, ValueError):
                unknown.add(str(v))
                out.append(spec.default_value)
                continue
            if value not in spec.values:
                unknown.add(str(v))
            out.append(value)
        if fractional:
            raise InputError(f"{self.path}: field {spec.field!r} holds fractional values "
                             f"({', '.join(sorted(fractional)[:10])}), which are no class numbers; round them in the "
                             "file, or pick the field that holds the classes with --label-field")
        if unknown:
            raise InputError(f"{self.path}: field {spec.field!r} holds values that are not classes of the palette "
                             f"({', '.join(sorted(unknown)[:10])}); palette classes: "
                             f"{', '.join(f'{k}={v}' for k, v in spec.names.items())}")
        return out

    def read(self, band: int = 1, window: Any = None) -> np.ndarray:
        """The class values of ``window`` (the whole scene when None): ``(h, w)`` of ``self.dtype``."""
        import shapely
        from rasterio import features
        from rasterio.windows import Window, bounds
        from rasterio.windows import transform as window_transform

        window = window or Window(0, 0, self.width, self.height)
        h, w = int(window.height), int(window.width)
        box = shapely.box(*bounds(window, self.transform))
        hits = sorted(self.tree.query(box, predicate="intersects"))  # indexes in burn order
        if not hits:
            return np.full((h, w), self.background, dtype=self.dtype)
        return features.rasterize(((self.geoms[i], self.classes[i]) for i in hits), out_shape=(h, w),
                                  transform=window_transform(window, self.transform), fill=self.background,
                                  all_touched=self.spec.all_touched, dtype=self.dtype)

    def close(self) -> None:
        """Nothing to release (the interface of a rasterio dataset)."""


def vector_spec(palette: Any, field: str | None = None, all_touched: bool = False) -> VectorSpec:
    """The :class:`VectorSpec` of a palette (:class:`p2ptools.prep.labels.Palette`) and the options."""
    fg = [c.value for c in palette.classes if c.value != palette.background]
    return VectorSpec(field=field, names={c.name: c.value for c in palette.classes},
                      values=tuple(c.value for c in palette.classes),
                      default_value=fg[0] if fg else palette.background, all_touched=all_touched)
