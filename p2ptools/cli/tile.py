"""``p2ptools tile``."""

from __future__ import annotations

from pathlib import Path

import click

from p2ptools.cli.options import (
    build_config,
    config_option,
    dask_option,
    float_pair_callback,
    fraction_type,
    int_list_callback,
    jpeg_quality_option,
    max_pixels_option,
    overwrite_option,
    seed_option,
    split_option,
    workers_option,
)
from p2ptools.config import DIRECTIONS, EDGE_POLICIES, LAYOUTS, SPLIT_BY, STRETCH_SCOPES, TILE_FORMATS
from p2ptools.runtime.formats import FORMATS


@click.command(short_help="Cut GeoTIFF scenes + label masks into AB tile pairs.")
@click.argument("paths", nargs=-1, metavar="[SRC] OUT", type=click.Path(path_type=Path))
@click.option("--sample", is_flag=True,
              help="Tile the built-in demo's scene as its recipe does (NAIP 2018: its panchromatic band → its "
                   "colour photo, 128-px tiles at stride 64, blocks of 320 px drawn into train/val/test; other "
                   "options override).")
@click.option("--layout", type=click.Choice(LAYOUTS), default=None,
              help="Input layout (default: auto-detect images/+gt/ or images/+masks/).")
@click.option("--images", type=click.Path(exists=True, path_type=Path), default=None,
              help="Photo folder, or a list file (.txt: one path or URL per line; http(s)://, s3://, gs://, "
                   "/vsi… scenes are read with range requests), with --masks.")
@click.option("--masks", "--labels", "masks", type=click.Path(exists=True, path_type=Path),
              default=None, help="Label folder (generic layout), paired with photos by file stem: label rasters, or "
                                 "vector labels (.geojson, .gpkg, .shp, .fgb); or a list file like --images.")
@click.option("--targets", type=click.Path(exists=True, path_type=Path), default=None,
              help="Photo → photo pairs (date → date, sensor → sensor): target photos (folder or list file) paired "
                   "with --images by stem, resampled onto each photo's grid; A = photo, B = target; no --masks.")
@click.option("--mask-suffix", default=None, help="Suffix of mask stems to strip before pairing, e.g. _mask.")
@click.option("--size", type=int, default=None, help="Tile size in pixels, a multiple of 32 (default 256).")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Step between tiles (default: --size, no overlap).")
@click.option("--edge", type=click.Choice(EDGE_POLICIES), default=None,
              help="Scene remainder: drop it, pad the last tile, or shift the last tile back to the edge "
                   "(default shift: every pixel used, none invented).")
@click.option("--min-foreground", type=fraction_type(), default=None,
              help="Keep tiles whose mask foreground fraction is above 0 and at least this (default 0).")
@click.option("--keep-empty", type=fraction_type(), default=None,
              help="Deterministic share of empty tiles to keep anyway (default 0).")
@click.option("--max-nodata", type=fraction_type(), default=None,
              help="Drop tiles with more than this fraction of nodata/transparent photo pixels (default 0.5).")
@click.option("--palette", default=None,
              help="Label palette: inria, binary01, landcover, or a YAML/JSON file (default: by layout).")
@click.option("--direction", type=click.Choice(DIRECTIONS), default=None,
              help="label2photo: A = colorized label, B = photo (default); photo2label swaps them.")
@click.option("--format", type=click.Choice(list(TILE_FORMATS)), default=None,
              help="A|B images: " + "; ".join(f"{f.name} ({f.help})" for f in FORMATS.values()) + "; or tif: "
                   "georeferenced GeoTIFF tiles, OUT/<split>/A/ and "
                   "B/ (labels as class values with the palette as colour table, photos in their own dtype and "
                   "bands), that open in place in QGIS.")
@jpeg_quality_option
@split_option
@click.option("--split-by", type=click.Choice(SPLIT_BY), default=None,
              help="scene: every tile of a scene in one split; block: cut scenes into --block-size squares drawn "
                   "into splits (for one or a few large scenes); auto (default): block for a single scene "
                   "(which would fill one split only), else scene.")
@click.option("--block-size", type=click.IntRange(min=32), default=None,
              help="Block side in pixels for --split-by block (default 4 tiles).")
@click.option("--block-buffer", type=click.IntRange(min=0), default=None,
              help="Pixels kept between tiles of two splits with --split-by block; closer tiles are dropped "
                   "(default one tile).")
@seed_option
@click.option("--bands", callback=int_list_callback, default=None, metavar="B[,G,R]",
              help="1-based photo bands to use (default: RGB of RGB/RGBN, band 1 of single-band).")
@click.option("--stretch", callback=float_pair_callback, default=None, metavar="LOW,HIGH",
              help="Percentiles of the 8-bit stretch for non-8-bit photos (default 2,98).")
@click.option("--stretch-scope", type=click.Choice(STRETCH_SCOPES), default=None,
              help="scene: each scene stretched by its own percentiles (default); dataset: one stretch from all "
                   "scenes pooled, kept in dataset.json and applied by predict.")
@click.option("--label-field", default=None,
              help="Vector labels: attribute holding the class (a value, or a class name of the palette); "
                   "default: every feature is the palette's first non-background class.")
@click.option("--all-touched", is_flag=True, default=None,
              help="Vector labels: burn every pixel a feature touches, not only pixels whose centre it covers.")
@click.option("--http-retries", type=click.IntRange(min=0), default=None,
              help="Remote scenes: retries of a failed range request (default 3; GDAL_HTTP_MAX_RETRY wins).")
@click.option("--http-timeout", type=click.IntRange(min=1), default=None,
              help="Remote scenes: seconds before a request times out (default 30; GDAL_HTTP_TIMEOUT wins).")
@workers_option
@dask_option
@overwrite_option
@config_option
@max_pixels_option
def tile(paths: tuple[Path, ...], sample: bool, config_file: Path | None, **options: object) -> None:
    """Cut GeoTIFF scenes and their label masks into AB pairs.

    SRC is an Inria Aerial Image Labeling folder (images/ + gt/) or a LandCover.ai folder
    (images/ + masks/, with train.txt/val.txt/test.txt when present); use --images and --masks
    for any other two folders (then give OUT only). Writes OUT/{train,val,test}/<scene>_<row>_<col>.png
    (A|B side by side), OUT/manifest.csv and OUT/dataset.json. Scenes are split whole (or by spatial
    blocks with a buffer, --split-by block), so no tile overlaps a tile of another split. Rerunning
    the same command resumes. With --targets instead of --masks, each photo is paired with a second
    photo of the same place (another date or sensor) for photo → photo translation.

    \b
    Examples:
      p2ptools tile --sample sample-tiles
      p2ptools tile AerialImageDataset/train inria-256 --size 256 --workers 4
      p2ptools tile landcover.ai landcover-512 --size 512 --edge drop
      p2ptools tile --images photos --masks labels --mask-suffix _mask out
      p2ptools tile --images naip-2018 --targets naip-2020 naip-18-20 --format tif
    """
    from p2ptools.config import TileConfig
    from p2ptools.errors import SceneFailures
    from p2ptools.prep.tiler import tile_dataset
    if sample:
        if len(paths) != 1:
            raise click.UsageError("with --sample give OUT only")
        from p2ptools.recipe import load_recipe

        # the built-in recipe's data and tiling (its scenes, 128 px, blocks into train/val/test) unless given
        data = load_recipe("sample").data
        src, out = (Path(data["src"]) if data.get("src") else None), paths[0]
        sized = options.get("size") is not None  # another tile size: blocks follow it (--split-by auto)
        for key, value in data.items():
            name = key.replace("-", "_")
            if key in ("images", "targets", "masks"):
                options[name] = Path(value)
            elif key != "src" and options.get(name) is None and not (sized and key in ("block-size", "block-buffer",
                                                                                     "stride")):
                options[name] = tuple(value) if isinstance(value, list) else value
    elif len(paths) == 2:
        src, out = paths
    elif len(paths) == 1 and (options.get("images") or options.get("masks") or options.get("targets")):
        src, out = None, paths[0]
    else:
        raise click.UsageError("give SRC OUT, or OUT with --images/--masks, or OUT with --sample")
    cfg = build_config(TileConfig, config_file, "tile", src=src, out=out, **options)
    report = tile_dataset(cfg, progress=True)
    if report.failures:
        raise SceneFailures(report.failures, report.summary())
    click.echo(report.summary())
