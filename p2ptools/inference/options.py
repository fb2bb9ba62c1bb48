"""The options of ``p2ptools predict``: one object that the command builds once and every prediction
path reads (folders, GeoTIFF tile splits, a whole scene, many scenes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: the options that change a whole scene's output (what a rerun compares to keep an output: the
#: device and the batch size do not change it)
SCENE_RESULT_FIELDS: tuple[str, ...] = ("which", "overlap", "blend", "amp", "input_kind", "palette", "bands",
                                        "overviews", "rgb", "engine")


#: the default overlap of whole-scene windows, as a fraction of the tile: the smallest whose seam error is
#: within 0.5 levels (of 255) of the 1/2 overlap's raster on both models measured (``benchmarks/overlap.py``,
#: Hann blending, torch fp32, the NAIP 2018 pan scene 934×724; 2-core Sapphire Rapids Xeon, shared).
#: mad: mean |raster − the 1/2 raster|; seam: mean step across the run's own window borders / everywhere.
#:
#:   overlap   tiny 128 px, 21 epochs (val L1 7.8)      paper U-Net 256 px, 10 steps
#:             windows  mad    p99  seam                 windows  mad    p99  seam
#:   0         56       1.089  14   1.97 (seams)         20       0.366  4    0.83
#:   1/8       63       0.469  3    0.97                 20       0.559  3    1.06
#:   1/4       88       0.297  2    0.96                 30       0.304  2    1.06
#:   3/8       120      0.268  2    0.94                 35       0.391  2    1.06
#:   1/2       180      0      0    0.97                 48       0      0    1.05
#:
#: 1/8 passes on the tiny model only, and barely (0.469); a quarter passes on both with room, so it stays.
DEFAULT_OVERLAP = 0.25


@dataclass(frozen=True)
class PredictOptions:
    """How to predict.

    Args:
        which: checkpoint of a run folder: ``latest``, ``best`` or ``epoch_K``.
        input_kind: ``auto``; a folder: ``a`` (images) or ``ab`` (an aligned split); a raster:
            ``labels`` or ``rgb``.
        batch_size: images or windows per forward pass.
        device: ``auto`` or a torch device string.
        amp: a precision of :data:`p2ptools.runtime.precisions.PRECISIONS`.
        engine: ``auto`` or an engine of :data:`p2ptools.inference.engine.ENGINES`.
        progress: show a progress bar (a line per unit when stderr is not a terminal).
        dropout: folders: keep dropout on (the paper's test-time noise).
        batch_stats: folders: normalise with batch statistics (the paper's test mode).
        side_by_side: folders: also write ``side_by_side/<stem>.png`` = input | output [| target].
        overlap: rasters: pixels shared by neighbouring windows (default: :data:`DEFAULT_OVERLAP` of the tile).
        blend: rasters: ``hann`` or ``none`` (each output pixel from one window).
        palette: rasters of labels: the palette when the checkpoint carries none.
        bands: rasters: the photo's bands (1-based) to read.
        overviews: rasters: build overviews into the output.
        rgb: rasters, a model that writes labels: write its RGB colours instead of classes.
        band_width: rasters: the widest vertical band translated at once (bounds memory).
        pad: rasters: pixels mirrored around the scene (default: a quarter of the tile).
        window_lines: rasters: a line at every tenth of the windows (off when many scenes share a log).
    """

    which: str = "latest"
    input_kind: str = "auto"
    batch_size: int = 8
    device: str = "auto"
    amp: str = "auto"
    engine: str = "auto"
    progress: bool = True
    dropout: bool = False
    batch_stats: bool = False
    side_by_side: bool = False
    overlap: int | None = None
    blend: str = "hann"
    palette: str | None = None
    bands: tuple[int, ...] | None = None
    overviews: bool = False
    rgb: bool = False
    band_width: int = 4096
    pad: int | None = None
    window_lines: bool = True

    @property
    def training_layers(self) -> bool:
        """Whether dropout or batch statistics stay in training mode."""
        return self.dropout or self.batch_stats

    def scene_result(self) -> dict[str, Any]:
        """The options that change a whole scene's output (:data:`SCENE_RESULT_FIELDS`; ``pad`` when set)."""
        fields = asdict(self)
        out = {k: fields[k] for k in SCENE_RESULT_FIELDS}
        if self.pad is not None:
            out["pad"] = self.pad
        return out
